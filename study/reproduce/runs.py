"""Fixed training runs as Optuna trials: claim, train (alone or in lockstep), record, tell.

A run's trial is created under the storage lock with its parameters and run key, beats
a heartbeat while it trains, reports the validation accuracy at each checkpoint, gets
its results as user attributes and its curves through the ``on_trial_end`` hook (the
dashboards' publisher), and is told COMPLETE with its test accuracy, or PRUNED when its
loss diverged. An interrupt or error fails the trials still running, and the next
reproduction redoes them: a trial is reused only when finished.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from kmlp.network import (
    DEFAULT_BLAS_THREADS,
    Checkpoint,
    Dataset,
    DivergenceError,
    TrainResult,
    blas_limit,
    train,
    train_lockstep,
)
from kmlp.storage import storage_lock
from kmlp.study.heartbeat import Heartbeat
from kmlp.study.reaper import mark_alive, reap_stale_trials
from kmlp.study.reproduce.plan import RunSpec
from kmlp.study.reproduce.record import PARAMS, RUN_KEY, ask_fixed, fail, run_params


class Hooks(Protocol):
    """What a reproduction calls to publish (``kmlp.dashboards.hooks.Publisher`` fits)."""

    def on_trial_end(self, study: optuna.Study, trial: optuna.Trial, result: TrainResult) -> None:
        """After training, before the trial is told: upload its curves."""

    def on_trial_told(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """After a search trial is told: refresh the search figure and note."""

    def on_stage_end(self, study: optuna.Study) -> None:
        """When a search stage ends."""


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: test accuracy (fraction; None if it diverged) and seconds."""

    spec: RunSpec
    trial: int
    test_accuracy: float | None
    seconds: float
    note: str = ""


def run_group(
    *,
    study: optuna.Study,
    rdb: optuna.storages.RDBStorage,
    specs: Sequence[RunSpec],
    data: Dataset,
    hooks: Hooks | None,
    heartbeat_interval: int,
    blas_threads: int = DEFAULT_BLAS_THREADS,
) -> list[RunOutcome]:
    """Train ``specs`` (one run, or several in lockstep) as trials of ``study``.

    ``specs`` must share what lockstep members share (``plan.lockstep_key``).
    """
    trials: list[optuna.Trial] = []
    told: set[int] = set()
    try:
        for spec in specs:
            trials.append(claim(study, rdb, spec, members=len(specs)))
        callbacks = [_reporter(t) for t in trials]
        with contextlib.ExitStack() as stack:
            for trial in trials:
                stack.enter_context(Heartbeat(rdb, [trial._trial_id], heartbeat_interval))
            results = _train(specs, data, callbacks, blas_threads)
        outcomes = []
        # Trained runs are recorded whole: an interrupt now waits the seconds it takes,
        # rather than throwing trained networks away.
        with _interrupts_deferred():
            for spec, trial, result in zip(specs, trials, results, strict=True):
                outcomes.append(_finish(study, trial, spec, result, data, hooks, blas_threads))
                told.add(trial.number)
        return outcomes
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        for trial in trials:
            if trial.number not in told:
                with contextlib.suppress(Exception):
                    trial.set_user_attr("fail_reason", reason)
                fail(study, trial)
        # and a trial claimed when the interrupt came, before it reached ``trials``
        with contextlib.suppress(Exception):
            fail_own(study)
        raise


def claim(
    study: optuna.Study, rdb: optuna.storages.RDBStorage, spec: RunSpec, *, members: int
) -> optuna.Trial:
    """Create the RUNNING trial of ``spec``, its parameters fixed, under the storage lock.

    First fails the study's stale trials: those whose heartbeat stopped, and those of a
    process on this machine that no longer exists (a killed reproduction).
    """
    config = spec.config
    params = run_params(
        layers=len(config.hidden) + 1,
        batch_norm=config.batch_norm,
        init=config.init,
        lam=config.lam,
        cycles=config.cycles,
    )
    attrs = {
        RUN_KEY: spec.key(),
        "figure": spec.figure,
        "label": spec.label,
        "architecture": spec.architecture,
        "config": config.to_dict(),
        "data": spec.data.options(),
        "worker": worker_id(),
        "lockstep": members,
    }
    with storage_lock(rdb, name=study.study_name):
        fail_stale(study, rdb)
        trial = ask_fixed(study, params=params, distributions=PARAMS, user_attrs=attrs)
        mark_alive(rdb, trial._trial_id)
    return trial


def worker_id() -> str:
    """``host:pid`` of this process, as recorded on the trials it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_stale(study: optuna.Study, rdb: optuna.storages.BaseStorage) -> list[int]:
    """Fail RUNNING trials whose heartbeat stopped (``study.reaper``, through any storage)
    or whose process here is gone; returns the numbers of the latter."""
    reap_stale_trials(study, rdb)
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get("worker", ""))
        name, _, pid = owner.rpartition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            if fail(study, trial.number):
                failed.append(trial.number)
    return failed


def fail_own(study: optuna.Study) -> list[int]:
    """Fail this process's RUNNING trials of ``study``."""
    me = worker_id()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") == me and fail(study, trial.number):
            failed.append(trial.number)
    return failed


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the body is done (main thread of a process only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _reporter(trial: optuna.Trial) -> Callable[[Checkpoint], bool]:
    def report(point: Checkpoint) -> bool:
        if not math.isnan(point.val_accuracy):
            trial.report(point.val_accuracy, point.step)
        return False

    return report


def _train(
    specs: Sequence[RunSpec],
    data: Dataset,
    callbacks: list[Callable[[Checkpoint], bool]],
    blas_threads: int,
) -> list[TrainResult | DivergenceError]:
    """Each run's result, or the DivergenceError it stopped with."""
    if len(specs) == 1:
        try:
            return [
                train(
                    data=data,
                    config=specs[0].config,
                    callback=callbacks[0],
                    blas_threads=blas_threads,
                )
            ]
        except DivergenceError as exc:
            return [exc]
    group = train_lockstep(
        data=data,
        configs=[s.config for s in specs],
        callbacks=callbacks,
        blas_threads=blas_threads,
    )
    return [m.error if m.error is not None else m for m in group.members]


def _finish(
    study: optuna.Study,
    trial: optuna.Trial,
    spec: RunSpec,
    result: TrainResult | DivergenceError,
    data: Dataset,
    hooks: Hooks | None,
    blas_threads: int,
) -> RunOutcome:
    trial.set_user_attr(
        "data",
        {
            **spec.data.options(),
            "train_size": len(data.train.y),
            "val_size": len(data.val.y),
            "test_size": len(data.test.y),
            "fingerprint": data.fingerprint,
        },
    )
    if isinstance(result, DivergenceError):
        trial.set_user_attr("diverged_at_step", int(result.step))
        study.tell(trial, state=TrialState.PRUNED)
        return RunOutcome(spec, trial.number, None, math.nan, f"diverged at step {result.step}")
    with blas_limit(blas_threads):
        test_accuracy = float(result.net.accuracy(data.test.X, data.test.y))
    attrs: dict[str, Any] = {
        "test_accuracy": test_accuracy,
        "val_accuracy": float(result.val_accuracy),
        "train_accuracy": float(result.train_accuracy),
        "seconds": float(result.seconds),
        "epochs": float(result.epochs),
        "steps": int(result.steps),
        "blas_threads": result.blas_threads,
        # the training loss at the first and the last checkpoint: did training move?
        "train_loss_first": float(result.history[0].train_loss) if result.history else None,
        "train_loss_last": float(result.history[-1].train_loss) if result.history else None,
    }
    for name, value in attrs.items():
        trial.set_user_attr(name, value)
    if hooks is not None:
        try:
            hooks.on_trial_end(study, trial, result)
        except Exception as exc:  # publishing must not lose a trained run
            print(
                f"kmlp: warning: could not publish the curves of trial {trial.number}: {exc}",
                file=sys.stderr,
                flush=True,
            )
    study.tell(trial, test_accuracy)
    return RunOutcome(spec, trial.number, test_accuracy, float(result.seconds))
