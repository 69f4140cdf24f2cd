"""kmlp's stale-trial reaper: fail a dead worker's RUNNING trial and queue its rerun.

Works through any storage kmlp opens (SQLite, PostgreSQL, MySQL, the gRPC storage proxy),
unlike Optuna's heartbeat (RDB only), which it replaces:

- Liveness: each RUNNING trial carries a counter in its system attribute ``kmlp:alive``,
  written when the worker creates (or takes) the trial (``mark_alive``, under the lock)
  and counted up every ``interval`` seconds by the trial's heartbeat thread
  (``study.heartbeat.Heartbeat``). A counter, not a timestamp: no clocks are compared
  across machines (``storage.liveness``).
- Reaping: a worker, under the study's storage lock, reads the RUNNING trials and fails
  those whose counter it has read unchanged for ``grace_period`` seconds of its own
  monotonic clock. A trial created but never beaten (its worker killed between creating
  it and its first beat) has no counter; "no counter" unchanged for the grace period is
  just as stale, so that window is closed too.
- Rerun: a failed trial gets a WAITING copy (same λ, same ``stage`` attribute) through
  Optuna's ``RetryHeartbeatStaleTrialCallback``, at most ``max_retry`` times per budget
  slot; the plan pops WAITING trials first.
- Outages: an observer whose own storage calls failed (or whose read took over a quarter
  of the grace period) forgets what it watched, so an outage everybody shared (which
  stopped every heartbeat) fails no trial; the grace period is watched anew.

Observers are per process (``reap_stale_trials`` keeps one per storage and study), so a
trial is failed only after one process has watched it for a whole grace period.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
import weakref
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from kmlp.storage import HeartbeatSettings, Liveness

ALIVE_KEY = "kmlp:alive"


def mark_alive(storage: BaseStorage, trial_id: int, count: int = 0) -> None:
    """Write liveness ``count`` of ``trial_id`` (creation: 0; the heartbeat counts up)."""
    storage.set_trial_system_attr(trial_id, ALIVE_KEY, [_me(), count])


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Reaper:
    """Watches the RUNNING trials of one study and fails those gone silent.

    ``settings``: ``grace_period`` (seconds a liveness value must stand still) and
    ``max_retry`` (reruns per slot).
    """

    def __init__(self, storage: BaseStorage, study_name: str, settings: HeartbeatSettings):
        self.settings = settings
        self._storage = storage
        self._study_name = study_name
        self._study_id: int | None = None
        self._watch = Liveness(float(settings.grace_period))
        self._failures = getattr(storage, "failures", 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._rerun = optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=settings.max_retry
            )

    def reap(self, study: optuna.Study, *, rerun: bool = True, dry_run: bool = False) -> list[int]:
        """Fail the stale RUNNING trials of ``study``; returns their numbers.

        Call it under the study's storage lock (so that the rerun it queues is counted
        by the same lock holder's plan). ``rerun``: queue WAITING copies (False: only fail).
        ``dry_run``: only watch and return the stale trials' numbers (no lock needed): a
        waiting worker looks without the lock and takes it when there is work.
        """
        if self._study_id is None:
            self._study_id = self._storage.get_study_id_from_name(self._study_name)
        started = time.monotonic()
        running = _running(self._storage, self._study_id)
        ended = time.monotonic()
        failures = getattr(self._storage, "failures", 0)
        if failures != self._failures or ended - started > self.settings.grace_period / 4:
            self._watch.reset()  # we were not watching: silence proves nothing
            self._failures = failures
        self._watch.keep_only(t._trial_id for t in running)
        stale = [
            t
            for t in running
            if self._watch.observe(
                t._trial_id, _value(t.system_attrs.get(ALIVE_KEY)), started=started, ended=ended
            )
        ]
        if dry_run:
            return [t.number for t in stale]
        failed = []
        for trial in stale:
            try:
                if not self._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:
                continue  # told by its worker, or failed by another reaper, meanwhile
            failed.append(trial.number)
            _say(trial, self.settings)
            if rerun:
                self._rerun(study, self._storage.get_trial(trial._trial_id))
        return failed


def _value(value: Any) -> Any:
    # JSON lists come back as lists: make the value hashable-comparable as a tuple.
    return tuple(value) if isinstance(value, list) else value


def _running(storage: BaseStorage, study_id: int) -> list[FrozenTrial]:
    read = getattr(storage, "running_trials", None)  # ResilientStorage: fresh, no cache
    if read is not None:
        return list(read(study_id))
    return storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))


def _say(trial: FrozenTrial, settings: HeartbeatSettings) -> None:
    owner = trial.system_attrs.get(ALIVE_KEY)
    who = owner[0] if isinstance(owner, list) and owner else "an unknown worker"
    print(
        f"kmlp: warning: trial {trial.number} of {who} showed no sign of life for "
        f"{settings.grace_period} s; failed it (a WAITING copy reruns it, up to "
        f"{settings.max_retry} times)",
        file=sys.stderr,
        flush=True,
    )


_REAPERS: weakref.WeakKeyDictionary[BaseStorage, dict[str, Reaper]] = weakref.WeakKeyDictionary()


def reap_stale_trials(
    study: optuna.Study,
    storage: BaseStorage,
    *,
    settings: HeartbeatSettings | None = None,
    rerun: bool = True,
    dry_run: bool = False,
) -> list[int]:
    """Fail (and queue reruns of) ``study``'s stale trials; call under its storage lock.
    ``dry_run``: only say which are stale (see ``Reaper.reap``).

    ``storage`` is the study's storage. ``settings``: default the ones ``storage`` was
    opened with (``ResilientStorage.heartbeat``), else ``HeartbeatSettings.from_env()``.
    The process keeps one ``Reaper`` per storage and study, so repeated calls watch on.
    """
    settings = settings or getattr(storage, "heartbeat", None) or HeartbeatSettings.from_env()
    reapers = _REAPERS.setdefault(storage, {})
    reaper = reapers.get(study.study_name)
    if reaper is None or reaper.settings != settings:
        reaper = reapers[study.study_name] = Reaper(storage, study.study_name, settings)
    return reaper.reap(study, rerun=rerun, dry_run=dry_run)
