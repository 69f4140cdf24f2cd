"""The coarse-to-fine λ search on Optuna: launch, workers, resume, export and retrain.

Public API (keyword-only arguments)::

    launch(study_name=, storage_url=, train_config=, search=SearchConfig(...),
           data_source= | data=, data_options=, workers=, blas_threads=, heartbeat=,
           on_trial_end=, on_stage_end=, artifact_store=) -> optuna.Study
    run_worker(study_name=, storage_url=, data_source= | data=, ...) -> WorkerStats
    export_best(study_name=, storage_url=, path=) -> dict
    retrain(export_path=, cycles=, data_dir=, save=, storage_url=) -> RetrainResult
    study_table(study) -> str ; study_rows(storage) -> list[StudyRow]
    narrow(low=, high=, trials=, top_k=, margin=) -> Narrowed      (pure)

Hooks (the CLI wires the dashboards' functions in; this package never imports them):

- ``on_trial_end(study: optuna.Study, trial: optuna.Trial, result: network.TrainResult)``
  is called inside the objective after training and after the trial's user attributes
  are set, before the trial is told its outcome, so it can upload artifacts to the live
  ``trial``. Called for completed and pruned trials (not diverged ones). An exception in
  it is printed as a warning; the trial is kept.
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
Pruning (``study.pruning``) calls ``trial.should_prune()`` at each checkpoint; when it
says so the objective stops training and tells PRUNED (the ask/tell form of raising
``optuna.TrialPruned``).

What the study records (names dashboards and scripts rely on): the parameter is
``log10_lambda`` (λ = 10**log10_lambda); trial user attributes ``stage`` (0 = coarse),
``lambda``, ``val_accuracy``, ``train_accuracy``, ``seconds`` (also ``epochs``,
``steps``, ``worker``, ``blas_threads``, and ``pruned_at_step`` / ``diverged_at_step`` /
``fail_reason``); intermediate values: validation accuracy at each checkpoint, step =
update steps done; study user attributes ``config`` (``TrainConfig.to_dict()``; its
``lam`` is a placeholder), ``data`` (n_train, n_val, train_size, val_size, dtype,
fingerprint, source), ``search`` (``SearchConfig.to_dict()``), ``stages`` (one dict per
stage: stage, low, high, n_trials, derived_from "coarse" | "manual" | "top-k" with
top_k, top_k_trials, top_k_span, margin, capped; created_at; once finished completed,
completed_at, best_trial, best_value, best_lambda), ``retrain`` (list of results),
``kmlp_version``, ``created_at``. See ``study.records`` and ``study.plan``.
"""

from __future__ import annotations

from kmlp.study.config import SearchConfig, parse_ranges, parse_trials
from kmlp.study.data import CifarSource
from kmlp.study.errors import StudyError
from kmlp.study.export import RetrainResult, export_best, retrain
from kmlp.study.launch import launch
from kmlp.study.narrowing import narrow
from kmlp.study.summary import study_rows, study_table
from kmlp.study.worker import WorkerStats, run_worker

__all__ = [
    "CifarSource",
    "RetrainResult",
    "SearchConfig",
    "StudyError",
    "WorkerStats",
    "export_best",
    "launch",
    "narrow",
    "parse_ranges",
    "parse_trials",
    "retrain",
    "run_worker",
    "study_rows",
    "study_table",
]
