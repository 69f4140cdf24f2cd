"""Claiming trials: the part of the worker loop that runs under the storage lock.

Under the lock (``storage.storage_lock``) a worker fails stale trials (dead workers'
trials, ``study.reaper``; a WAITING copy is queued), reads the stage records and trials,
and applies ``plan.next_action``: it writes a new stage's record, closes a finished stage,
or creates its next trials, each with its ``stage`` attribute, its ``log10_lambda`` and
its first liveness mark, before releasing the lock. So the count it checked is still true
when the trials exist: budgets are exact. ``lock.check()`` runs before each write, so a
holder paused past its lease writes nothing on stale reads.

With ``lockstep=K`` a worker claims up to K trials of the current stage in one hold of
the lock: it asks ``plan.next_action`` again after each trial it creates and stops at the
first answer that is not a claim of that stage (budget reached, or only other workers'
trials left), so a group never crosses a stage's budget or boundary. Each trial is
created exactly as a lone one (its λ is the index-th draw of the stage), so the λ values
do not depend on K or on the number of workers.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import warnings
from typing import Any, TextIO

import numpy as np
import optuna
from optuna.trial import TrialState

from kmlp.storage import LockLost, storage_lock
from kmlp.study import plan, progress
from kmlp.study.config import SearchConfig
from kmlp.study.interrupts import deferred_interrupts
from kmlp.study.reaper import mark_alive, reap_stale_trials
from kmlp.study.record import (
    PARAM,
    StageRecord,
    TrialInfo,
    now,
    stage_records,
    stages_attr,
    trial_infos,
)
from kmlp.study.summary import StageSummary, summarize


def still_waiting(study: optuna.Study, rdb: optuna.storages.RDBStorage, search: Any) -> bool:
    """True if, read without the lock, the plan still says Wait and no trial is stale.

    Waiting workers poll; taking the lock for each poll queues every one of them behind
    the others (tens of workers: the worker with work waits seconds for its turn).
    """
    stages = stage_records(study.user_attrs.get("stages"))
    action = plan.next_action(stages=stages, trials=trial_infos(study), search=search)
    return isinstance(action, plan.Wait) and not reap_stale_trials(study, rdb, dry_run=True)


def next_under_lock(
    study: optuna.Study,
    rdb: optuna.storages.RDBStorage,
    search: SearchConfig,
    *,
    claimed: list[optuna.Trial],
    out: TextIO,
    prefix: str,
    lockstep: int = 1,
) -> tuple[Any, list[int]]:
    """Apply plan actions under the lock until one is Claim, Wait or Done.

    Returns (Done | Wait | ([trials], stage record)), and the stages this call closed. On
    a claim it creates up to ``lockstep`` trials of that stage, as long as the plan says
    to claim one more of it. A created trial is appended to ``claimed`` at once (for the
    caller's interrupt handling).
    """
    closed: list[int] = []
    while True:
        try:
            return _apply_under_lock(study, rdb, search, claimed, closed, out, prefix, lockstep)
        except LockLost as exc:  # paused past the lease: nothing written on stale reads
            print(f"kmlp: warning: {prefix}{exc}; taking the lock again", file=sys.stderr)


def _apply_under_lock(
    study: optuna.Study,
    rdb: optuna.storages.RDBStorage,
    search: SearchConfig,
    claimed: list[optuna.Trial],
    closed: list[int],
    out: TextIO,
    prefix: str,
    lockstep: int,
) -> tuple[Any, list[int]]:
    """One holding of the lock for ``_next_under_lock``; LockLost if its lease ran out.

    ``lock.check()`` before each write; after creating a trial too (a holder paused
    between the check and the creation): a trial created without the lock is failed.
    """
    with storage_lock(rdb, name=study.study_name) as lock:
        reap_stale_trials(study, rdb)
        while True:
            stages = stage_records(study.user_attrs.get("stages"))
            infos = trial_infos(study)
            action = plan.next_action(stages=stages, trials=infos, search=search)
            if isinstance(action, plan.OpenStage):
                stages = [*stages, dataclasses.replace(action.record, created_at=now())]
                lock.check()
                study.set_user_attr("stages", stages_attr(stages))
                line = _stage_summary(study, stages, infos)
                progress.stage_opened(line, out=out, prefix=prefix)
            elif isinstance(action, plan.CloseStage):
                stages = [*stages[:-1], stages[-1].closed(best=action.best, at=now())]
                lock.check()
                study.set_user_attr("stages", stages_attr(stages))
                closed.append(action.stage)
                progress.stage_closed(_stage_summary(study, stages, infos), out=out, prefix=prefix)
            elif isinstance(action, plan.Claim):
                record = stages[action.stage]
                group: list[optuna.Trial] = []
                while True:
                    lock.check()
                    trial = _create_trial(study, rdb, action, record, search, infos, claimed)
                    try:
                        lock.check()
                    except LockLost:
                        for t in [*group, trial]:
                            study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
                            claimed.remove(t)
                        raise
                    group.append(trial)
                    if len(group) >= lockstep:
                        break
                    infos = trial_infos(study)
                    more = plan.next_action(stages=stages, trials=infos, search=search)
                    if not (isinstance(more, plan.Claim) and more.stage == action.stage):
                        break
                    action = more
                return (group, record), closed
            else:
                return action, closed


def _create_trial(
    study: optuna.Study,
    rdb: optuna.storages.RDBStorage,
    action: plan.Claim,
    record: StageRecord,
    search: SearchConfig,
    infos: list[TrialInfo],
    claimed: list[optuna.Trial],
) -> optuna.Trial:
    """Create (or pop the queued retry of) a trial of the claimed stage; lock held."""
    s = action.stage
    low, high = record.low, record.high
    index = sum(1 for t in infos if t.stage == s)  # unique per stage: we hold the lock
    with warnings.catch_warnings():
        # ask() warns that heartbeats are meant for optimize(); kmlp beats itself.
        warnings.simplefilter("ignore", UserWarning)
        if not action.waiting and search.sampler == "random":
            study.enqueue_trial({PARAM: draw(search.seed, s, index, low, high)}, {"stage": s})
        elif not action.waiting:
            study.sampler = optuna.samplers.TPESampler(seed=_seed(search.seed, s, index))
        with deferred_interrupts():  # a trial created is a trial claimed
            trial = study.ask()
            claimed.append(trial)
    try:
        mark_alive(rdb, trial._trial_id)
        if "stage" not in trial.user_attrs:
            trial.set_user_attr("stage", s)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.suggest_float(PARAM, low, high)
    except BaseException:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    return trial


def draw(seed: int, stage: int, index: int, low: float, high: float) -> float:
    """log10 λ of the ``index``-th trial of ``stage``: uniform in [low, high), reproducible."""
    # The index-th draw of one stream per (seed, stage): i.i.d. uniform, whichever worker
    # creates the trial.
    u = np.random.default_rng([seed, stage]).random(index + 1)[index]
    return low + (high - low) * float(u)


def _seed(seed: int, stage: int, index: int) -> int:
    return int(np.random.default_rng([seed, stage, index]).integers(2**31))


def _stage_summary(
    study: optuna.Study, stages: list[StageRecord], infos: list[TrialInfo]
) -> StageSummary:
    """The summary of the last of ``stages``, as just written (no further read)."""
    summary = summarize(
        name=study.study_name, user_attrs={"stages": stages_attr(stages)}, trials=infos
    )
    return summary.stages[-1]
