"""The coarse-to-fine λ search on Optuna: launch, workers, resume, export and retrain.

Public API (keyword-only arguments)::

    launch(study_name=, storage_url=, train_config=, search=SearchConfig(...),
           data_source= | data=, data_options=, workers=, blas_threads=, lockstep=,
           heartbeat=, on_trial_end=, on_trial_told=, on_stage_end=,
           artifact_store=) -> optuna.Study
    run_worker(study_name=, storage_url=, data_source= | data=, lockstep=, ...) -> WorkerStats
    export_best(study_name=, storage_url=, path=) -> dict
    retrain(export_path=, cycles=, n_train=, val_size=, as_searched=, ...) -> RetrainResult
    study_summary(study) -> StudySummary ; storage_summaries(storage) -> [StudySummary]
    format_summary(summary) -> str ; best_trial(trials, stage=None) -> TrialInfo | None
    narrow(low=, high=, trials=, top_k=, margin=) -> Narrowed      (pure)

Hooks (the CLI wires the dashboards' functions in; this package never imports them):

- ``on_trial_end(study: optuna.Study, trial: optuna.Trial, result: network.TrainResult)``
  is called inside the objective after training and after the trial's user attributes
  are set, before the trial is told its outcome, so it can upload artifacts to the live
  ``trial``. Called for completed and pruned trials (not diverged ones). An exception in
  it is printed as a warning; the trial is kept.
- ``on_trial_told(study: optuna.Study, trial: optuna.trial.FrozenTrial)`` is called by
  the worker after each trial it ran was told its outcome, so that readers see it
  finished (the dashboards refresh the search figure and note here).
- ``on_stage_end(study: optuna.Study)`` is called by the worker that closes a stage, and
  once more by ``launch`` at its end.
- ``artifact_store`` is accepted and passed through to the worker processes unused; bind
  it into the hooks (``functools.partial``). With ``workers > 1`` hooks and store must
  be picklable.

How it runs: workers create trials with ask/tell under a storage-wide lock (see
``study.worker`` and ``study.plan``), so each stage gets exactly its budget of COMPLETE +
PRUNED trials however many workers race; a FAILED trial (interrupted, or failed by the
heartbeat of a dead worker, which queues a WAITING retry with the same λ) frees its
slot. ``log10_lambda`` is drawn uniformly in the stage range from a stream per
(seed, stage), so the random sampler tries the same λs with any number of workers.
With ``lockstep=K`` a worker claims up to K trials of the current stage at once and
trains them together (``study.group``, ``network.train_lockstep``); each is still its own
trial, told as soon as it ends.
Pruning (``study.pruning``) calls ``trial.should_prune()`` at each checkpoint; when it
says so the objective stops training and tells PRUNED (the ask/tell form of raising
``optuna.TrialPruned``).

What the study records (names dashboards and scripts rely on) is defined in one place,
``study.record``: the parameter ``log10_lambda``, the objective's name "validation
accuracy", the user attributes, the stage record (``StageRecord``), the retrain record
and the one rule for the best trial. ``study.summary`` computes a study's summary from it
once; the CLI, the progress lines and ``kmlp.dashboards`` all show that summary.
"""

from __future__ import annotations

from kmlp.study.config import SearchConfig, parse_ranges, parse_trials
from kmlp.study.data import CifarSource
from kmlp.study.errors import StudyError
from kmlp.study.export import export_best
from kmlp.study.launch import launch
from kmlp.study.narrowing import narrow
from kmlp.study.record import PARAM, StageRecord, TrialInfo, best_trial
from kmlp.study.retrain import RetrainResult, retrain
from kmlp.study.summary import StageSummary, StudySummary, storage_summaries, study_summary
from kmlp.study.tables import format_studies, format_summary
from kmlp.study.worker import WorkerStats, run_worker

__all__ = [
    "PARAM",
    "CifarSource",
    "RetrainResult",
    "SearchConfig",
    "StageRecord",
    "StageSummary",
    "StudyError",
    "StudySummary",
    "TrialInfo",
    "WorkerStats",
    "best_trial",
    "export_best",
    "format_studies",
    "format_summary",
    "launch",
    "narrow",
    "parse_ranges",
    "parse_trials",
    "retrain",
    "run_worker",
    "storage_summaries",
    "study_summary",
]
