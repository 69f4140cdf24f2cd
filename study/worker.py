"""The worker loop: claim trials under the storage lock, train them, repeat until done.

Any number of workers, in processes on any machines sharing the storage, run this loop
on one study: ``study.claims`` creates the next trials (one, or up to K of a stage for
lockstep) under the lock, with exact budgets; a group trains in lockstep
(``study.group``), a group of one alone (``study.objective``); each trial is told as soon
as it ends. Waiting workers poll the plan without the lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from kmlp.network import DEFAULT_BLAS_THREADS, Dataset, TrainConfig, blas_limit
from kmlp.storage import HeartbeatSettings, open_storage
from kmlp.storage.urls import redact
from kmlp.study import plan, progress
from kmlp.study.access import load
from kmlp.study.claims import next_under_lock, still_waiting
from kmlp.study.config import SearchConfig
from kmlp.study.data import DataSource
from kmlp.study.errors import StudyError
from kmlp.study.group import Pruning, run_group
from kmlp.study.heartbeat import Heartbeat
from kmlp.study.objective import Outcome, TrialHook, run_trial
from kmlp.study.pruning import StageMedianPruner
from kmlp.study.summary import study_summary

StageHook = Callable[[optuna.Study], None]
ToldHook = Callable[[optuna.Study, FrozenTrial], None]
# Trials per worker trained in lockstep, by default. Measured (benchmarks/search_speed.py,
# 1 BLAS thread, seconds per trial-epoch): AVX2 kernels 0.33 (K=8), 0.33-0.34 (4), 0.50
# for train(); AVX-512 kernels 0.35 (8), 0.40 (4), 0.48 (2), 0.85 for train(); 16 is no
# cheaper than 8. A stage of 20 on 2 workers runs as groups of 8, 8 and 4.
DEFAULT_LOCKSTEP = 8
MAX_LOCKSTEP = 64


@dataclasses.dataclass
class WorkerStats:
    """What one worker did: trials it ran, by final state name, and stages it closed."""

    trials: dict[str, int] = dataclasses.field(default_factory=dict)
    closed_stages: list[int] = dataclasses.field(default_factory=list)


def run_worker(
    *,
    study_name: str,
    storage_url: str | None = None,
    data: Dataset | None = None,
    data_source: DataSource | None = None,
    heartbeat: HeartbeatSettings | None = None,
    label: str = "",
    on_trial_end: TrialHook | None = None,
    on_trial_told: ToldHook | None = None,
    on_stage_end: StageHook | None = None,
    artifact_store: Any = None,
    out: TextIO | None = None,
    poll_seconds: float | None = None,
    max_trials: int | None = None,
    blas_threads: int | None = DEFAULT_BLAS_THREADS,
    clock: progress.Clock | None = None,
    lockstep: int = 1,
) -> WorkerStats:
    """Work on ``study_name`` until every stage is finished (or ``max_trials`` ran).

    ``lockstep``: claim up to that many trials of the current stage at once and train
    them together (``kmlp.network.train_lockstep``); 1 trains each trial alone.

    ``data`` or ``data_source`` gives the data; it must have the fingerprint stored in the
    study. ``blas_threads`` limits BLAS threads while training (default one; None: no
    limit). ``clock``: when the launch started, for the elapsed time and ETA of the
    progress lines (default: now).
    ``artifact_store`` is not used here; hooks that need it get it bound (e.g.
    ``functools.partial``); it is accepted so that callers can pass one object through.
    """
    del artifact_store
    if not 1 <= lockstep <= MAX_LOCKSTEP:
        raise StudyError(f"lockstep must be from 1 to {MAX_LOCKSTEP}, got {lockstep}")
    with blas_limit(blas_threads):
        return _work(
            study_name=study_name,
            storage_url=storage_url,
            data=data,
            data_source=data_source,
            heartbeat=heartbeat,
            label=label,
            on_trial_end=on_trial_end,
            on_trial_told=on_trial_told,
            on_stage_end=on_stage_end,
            out=out,
            poll_seconds=poll_seconds,
            max_trials=max_trials,
            blas_threads=blas_threads,
            clock=clock,
            lockstep=lockstep,
        )


def _work(
    *,
    study_name: str,
    storage_url: str | None,
    data: Dataset | None,
    data_source: DataSource | None,
    heartbeat: HeartbeatSettings | None,
    label: str,
    on_trial_end: TrialHook | None,
    on_trial_told: ToldHook | None,
    on_stage_end: StageHook | None,
    out: TextIO | None,
    poll_seconds: float | None,
    max_trials: int | None,
    blas_threads: int | None,
    clock: progress.Clock | None,
    lockstep: int,
) -> WorkerStats:
    heartbeat = heartbeat or HeartbeatSettings.from_env()
    out = out or sys.stdout
    rdb = open_storage(storage_url, heartbeat=heartbeat, create=False)
    study = load(study_name, storage=rdb)
    attrs = study.user_attrs
    base_config = TrainConfig.from_dict(attrs["config"])
    search = SearchConfig.from_dict(attrs["search"])
    prefix = f"[{label}] " if label else ""
    summary = study_summary(study)
    if summary.finished:  # before loading data: say so at once
        print(f"{prefix}study {study_name!r} is finished; nothing to run", file=out, flush=True)
        return WorkerStats()
    if data is None:
        if data_source is None:
            raise StudyError("run_worker needs data or data_source")
        data = data_source()
    _check_data(data, attrs.get("data", {}), study_name)
    n_s = base_config.half_cycle(len(data.train.y))
    pruning = Pruning(
        rule="halving" if search.pruner == "auto" else search.pruner,
        warmup_steps=round(search.prune_warmup_cycles * 2 * n_s),
        cycle_steps=2 * n_s,
    )
    if search.pruner in ("median", "auto"):
        study.pruner = StageMedianPruner(
            n_startup=search.prune_startup,
            warmup_steps=pruning.warmup_steps,
            cycle_steps=pruning.cycle_steps,
        )
    else:  # halving is applied by the lockstep group itself
        study.pruner = optuna.pruners.NopPruner()
    poll = poll_seconds if poll_seconds is not None else min(1.0, heartbeat.interval / 2)
    stats = WorkerStats()
    clock = clock or progress.Clock.start(summary.trials_done)
    ran = 0
    waiting = False
    claimed: list[optuna.Trial] = []  # trials this worker created and has not yet told
    try:
        while max_trials is None or ran < max_trials:
            claimed.clear()
            k = lockstep if max_trials is None else min(lockstep, max_trials - ran)
            if waiting and still_waiting(study, rdb, search):
                time.sleep(poll)  # nothing to write: do not queue for the lock
                continue
            action, closed = next_under_lock(
                study, rdb, search, claimed=claimed, out=out, prefix=prefix, lockstep=k
            )
            for s in closed:
                stats.closed_stages.append(s)
                if on_stage_end is not None:
                    _call_hook("on_stage_end", on_stage_end, study)
            if isinstance(action, plan.Done):
                break
            if isinstance(action, plan.Wait):
                if not waiting:
                    progress.waiting(action.stage, action.running, out=out, prefix=prefix)
                waiting = True
                time.sleep(poll)
                continue
            waiting = False
            group, stage_record = action

            def told(
                trial: optuna.Trial,
                outcome: Outcome,
                beat: Heartbeat,
                stage: int = stage_record.stage,
            ) -> None:
                nonlocal ran, summary
                beat.drop(trial._trial_id)
                if trial in claimed:
                    claimed.remove(trial)
                ran += 1
                name = outcome.state.name
                stats.trials[name] = stats.trials.get(name, 0) + 1
                summary = study_summary(study)
                progress.trial_done(
                    summary,
                    stage,
                    trial.number,
                    outcome,
                    clock=clock,
                    out=out,
                    prefix=prefix,
                )
                if on_trial_told is not None and outcome.trial is not None:
                    _call_hook("on_trial_told", on_trial_told, study, outcome.trial)

            with Heartbeat(rdb, [t._trial_id for t in group], heartbeat.interval) as beat:
                if len(group) == 1:
                    (trial,) = group
                    outcome = run_trial(
                        study=study,
                        trial=trial,
                        data=data,
                        base_config=base_config,
                        prune=search.pruner in ("median", "auto"),
                        on_trial_end=on_trial_end,
                        blas_threads=blas_threads,
                    )
                    told(trial, outcome, beat)
                else:
                    run_group(
                        study=study,
                        trials=group,
                        data=data,
                        base_config=base_config,
                        pruning=pruning,
                        on_told=lambda trial, outcome: told(trial, outcome, beat),
                        on_trial_end=on_trial_end,
                        blas_threads=blas_threads,
                    )
            claimed.clear()  # told (or failed) by run_trial / run_group
    except BaseException:
        # Interrupted between creating trials and training them (training fails its own
        # untold trials): fail them here so that their budget slots free at once.
        for trial in claimed:
            with contextlib.suppress(Exception):
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    return stats


def _check_data(data: Dataset, stored: dict[str, Any], study_name: str) -> None:
    fingerprint = stored.get("fingerprint")
    if fingerprint and fingerprint != data.fingerprint:
        raise StudyError(
            f"the data differs from study {study_name!r}'s (fingerprint {data.fingerprint[:12]} "
            f"vs stored {fingerprint[:12]}): point --data at the same CIFAR-10 copy"
        )


def _call_hook(name: str, hook: Callable[..., None], *args: Any) -> None:
    try:
        hook(*args)
    except Exception as exc:  # a figure failing must not stop the search
        print(
            f"kmlp: warning: {name} hook failed: {type(exc).__name__}: {redact(str(exc))}",
            file=sys.stderr,
            flush=True,
        )
