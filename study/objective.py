"""Running one claimed trial: train with its λ, report checkpoints, record, tell.

The trial was created (and its ``log10_lambda`` drawn) by the worker under the storage
lock; here it trains, reports the validation accuracy at each checkpoint as an
intermediate value (step = update steps done), stops early when the pruner says so,
calls the ``on_trial_end`` hook, and tells Optuna the outcome:

- COMPLETE with the final validation accuracy;
- PRUNED when the pruner stopped it (Optuna records the last intermediate value) or the
  loss diverged (user attribute ``diverged_at_step``);
- FAIL on any other exception or an interrupt, which is then re-raised; the failed
  trial frees its budget slot.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from kmlp.network import (
    DEFAULT_BLAS_THREADS,
    Checkpoint,
    Dataset,
    DivergenceError,
    TrainConfig,
    TrainResult,
    blas_limit,
    train,
)
from kmlp.storage.urls import redact
from kmlp.study.pruning import median_reason, stage_peers
from kmlp.study.record import PARAM

TrialHook = Callable[[optuna.Study, optuna.Trial, TrainResult], None]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a trial ended: its state, value (None if none) and final trial record."""

    state: TrialState
    value: float | None
    trial: FrozenTrial | None
    note: str = ""


def run_trial(
    *,
    study: optuna.Study,
    trial: optuna.Trial,
    data: Dataset,
    base_config: TrainConfig,
    prune: bool,
    on_trial_end: TrialHook | None = None,
    err: TextIO | None = None,
    blas_threads: int | None = DEFAULT_BLAS_THREADS,
) -> Outcome:
    """Train ``trial`` (its ``log10_lambda`` already set) and tell the study the outcome.

    Trains with ``blas_threads`` BLAS threads (None: as BLAS is set up).
    """
    log10_lambda = float(trial.params[PARAM])
    lam = 10.0**log10_lambda
    config = dataclasses.replace(base_config, lam=lam)
    reported: set[int] = set()
    pruned_at: list[int] = []
    last_step = 2 * config.half_cycle(len(data.train.y)) * config.cycles

    def on_checkpoint(point: Checkpoint) -> bool:
        if point.step in reported or math.isnan(point.val_accuracy):
            return False
        reported.add(point.step)
        trial.report(point.val_accuracy, point.step)
        # A trial at its last checkpoint has finished: it is complete, never pruned.
        if prune and point.step < last_step and trial.should_prune():
            pruned_at.append(point.step)
            peers = stage_peers(study, trial.user_attrs.get("stage"))
            reason = median_reason(value=point.val_accuracy, step=point.step, peers=peers)
            trial.set_user_attr("pruned_by", reason)
            return True
        return False

    start = time.perf_counter()
    try:
        trial.set_user_attr("lambda", lam)
        # float32 sums differ with the BLAS thread count; retrain uses the same count.
        with blas_limit(blas_threads) as threads:
            trial.set_user_attr("blas_threads", threads)
        trial.set_user_attr("lockstep", 1)  # trained alone
        try:
            result = train(
                data=data,
                config=config,
                callback=on_checkpoint,
                progress=False,
                blas_threads=blas_threads,
            )
        except DivergenceError as exc:
            return diverged(study, trial, step=exc.step, seconds=time.perf_counter() - start)
        return conclude(
            study,
            trial,
            result,
            pruned_at=pruned_at[0] if pruned_at else None,
            on_trial_end=on_trial_end,
            err=err,
        )
    except optuna.exceptions.UpdateFinishedTrialError:
        return _lost(study, trial)
    except BaseException as exc:
        try:
            trial.set_user_attr("fail_reason", redact(f"{type(exc).__name__}: {exc}")[:500])
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except Exception:  # storage gone too; the heartbeat will fail the trial
            pass
        raise


def conclude(
    study: optuna.Study,
    trial: optuna.Trial,
    result: TrainResult,
    *,
    pruned_at: int | None,
    on_trial_end: TrialHook | None,
    err: TextIO | None,
) -> Outcome:
    """Record a trained trial's results, call ``on_trial_end``, and tell its outcome:
    PRUNED if it was stopped at step ``pruned_at``, else COMPLETE with its validation
    accuracy (FAIL without one). Lone and lockstep trials both end here."""
    trial.set_user_attr("val_accuracy", float(result.val_accuracy))
    trial.set_user_attr("train_accuracy", float(result.train_accuracy))
    trial.set_user_attr("seconds", float(result.seconds))
    trial.set_user_attr("epochs", float(result.epochs))
    trial.set_user_attr("steps", int(result.steps))
    if pruned_at is not None:
        trial.set_user_attr("pruned_at_step", pruned_at)
    if on_trial_end is not None:
        _call_hook(on_trial_end, study, trial, result, err=err)
    if pruned_at is not None:
        return _tell(study, trial, state=TrialState.PRUNED, note=f"pruned at step {pruned_at}")
    if not math.isfinite(result.val_accuracy):
        return _tell(study, trial, state=TrialState.FAIL, note="no validation accuracy")
    return _tell(study, trial, value=float(result.val_accuracy))


def diverged(study: optuna.Study, trial: optuna.Trial, *, step: int, seconds: float) -> Outcome:
    """Record and tell a trial whose loss diverged at ``step``: PRUNED, not FAIL (its λ
    is a result: too weak a penalty for the learning rate), so its slot is not rerun."""
    trial.set_user_attr("diverged_at_step", int(step))
    trial.set_user_attr("seconds", float(seconds))
    return _tell(study, trial, state=TrialState.PRUNED, note=f"diverged at step {step}")


def lost(study: optuna.Study, trial: optuna.Trial) -> Outcome:
    """The outcome of a trial failed meanwhile by another worker (stale heartbeat)."""
    return _lost(study, trial)


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    *,
    value: float | None = None,
    state: TrialState | None = None,
    note: str = "",
) -> Outcome:
    try:
        frozen = study.tell(trial, value, state=state, skip_if_finished=True)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        return _lost(study, trial)
    expected = state or TrialState.COMPLETE
    if frozen.state != expected:
        return _lost(study, trial)
    return Outcome(state=frozen.state, value=frozen.value, trial=frozen, note=note)


def _lost(study: optuna.Study, trial: optuna.Trial) -> Outcome:
    """The trial was failed meanwhile (its heartbeat looked stale): the result is discarded."""
    return Outcome(
        state=TrialState.FAIL,
        value=None,
        trial=None,
        note="failed by the heartbeat while running (worker stalled?); result discarded",
    )


def _call_hook(
    hook: TrialHook,
    study: optuna.Study,
    trial: optuna.Trial,
    result: TrainResult,
    *,
    err: TextIO | None,
) -> None:
    # A failing hook (e.g. an artifact upload) must not throw away a trained trial.
    try:
        hook(study, trial, result)
    except Exception as exc:
        stream = err or sys.stderr
        print(
            f"kmlp: warning: on_trial_end hook failed for trial #{trial.number}: "
            f"{type(exc).__name__}: {redact(str(exc))}",
            file=stream,
            flush=True,
        )
        if os.environ.get("KMLP_DEBUG"):
            traceback.print_exc(file=stream)
