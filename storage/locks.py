"""The storage lock: a lease lock built from Optuna storage operations alone.

kmlp must count a stage's trials and create the next one as one step, so that a stage
never exceeds its budget however many workers race. The lock for that must work through
every storage kmlp accepts (SQLite, PostgreSQL, MySQL, and the gRPC storage proxy, whose
workers have no database connection of their own), and a frozen holder must not stall
everyone. So it uses only public storage calls, and holders hold a lease.

How: a ticket lock with leases.

- Lock ``name`` lives in the study ``kmlp-lock:<name>``, made on first use and hidden from
  kmlp's study lists. Each acquisition creates a trial there, a ticket. Optuna numbers a
  study's trials atomically (under a row lock of the study), so tickets are ordered.
- The holder is the owner of the lowest-numbered RUNNING ticket; releasing COMPLETEs it.
- Every live ticket, waiting or holding, is renewed by a thread of its owner, which counts
  its ``beat`` attribute up every ``lease / 6`` seconds.
- A waiter that reads the same beat on a ticket ahead of it for a whole lease of its own
  clock (``storage.liveness``) FAILs that ticket. A finished trial cannot change again, so
  one waiter breaks it, and a broken ticket is never revived.
- ``lock.check()``, called right before each write, renews the ticket and reads it back:
  RUNNING, no waiter can break it for another lease from that renewal; FAILed, ``LockLost``.

What holds:

- Exclusion: two processes never both pass ``check()`` on the same lock, since both
  tickets would be the lowest RUNNING one. Writes retried after a connection error are
  fenced (``check()`` runs again before each retry).
- Leases: a holder stopped (SIGSTOP, frozen VM, cut network) for longer than the lease
  loses the lock, and the next waiter has it about one lease after the holder's last
  renewal. When the old holder resumes, its renewal thread or its next ``check()`` finds
  its ticket FAILed: ``lock.lost`` turns True and ``check()`` raises ``LockLost``.
- Outages: a waiter whose own storage calls failed (or whose read took over lease / 4)
  forgets what it watched, so an outage everybody shared breaks no lease.
- The remaining window: a holder paused between a passing ``check()`` and the write it
  guards, for longer than the lease minus that check's duration, still makes that one
  write after another process took the lock. A caller closes it for trial creation by
  checking again after creating and failing the trial it made if the lock was lost.
- Clocks: each process's monotonic clock only; their rates are assumed equal.

Cost per acquisition: one ticket (a trial row and three attribute rows) and about five
short transactions (about 12 ms on a local SQLite or PostgreSQL); waiters poll every 10
to 500 ms. A worker that only waits should read without the lock first and take it only
when it has something to write.

Use (a worker's claim step)::

    with storage_lock(storage, name=study.study_name) as lock:
        ...                                     # read stages and trials, decide
        lock.check()                            # before each write
        study.set_user_attr("stages", records)
        trial = study.ask()
        try:
            lock.check()                        # after creating: still ours?
        except LockLost:
            study.tell(trial, state=TrialState.FAIL)   # frees the slot; decide again
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from kmlp.storage.errors import LockLost, StorageError
from kmlp.storage.liveness import Liveness

LOCK_PREFIX = "kmlp-lock:"
ENV_LEASE = "KMLP_LOCK_LEASE"
BEAT = "beat"
OWNER = "owner"


def lock_study_name(name: str) -> str:
    """The study holding the tickets of lock ``name`` (hashed when ``name`` is long)."""
    if len(name) <= 200:
        return LOCK_PREFIX + name
    return f"{LOCK_PREFIX}{name[:120]}#{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def is_internal_study(study_name: str) -> bool:
    """True for kmlp's own bookkeeping studies (lock tickets), which no list shows."""
    return study_name.startswith(LOCK_PREFIX)


@dataclass(frozen=True, kw_only=True)
class LockSettings:
    """Lease seconds (``$KMLP_LOCK_LEASE``, default 30) and the waiters' polling bounds."""

    lease: float = 30.0
    poll_min: float = 0.01
    poll_max: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.lease < float("inf") and 0 < self.poll_min <= self.poll_max):
            raise StorageError(f"bad lock settings {self}")

    @property
    def renew_every(self) -> float:
        return self.lease / 6

    @classmethod
    def from_env(cls) -> LockSettings:
        text = os.environ.get(ENV_LEASE)
        if not text:
            return cls()
        try:
            lease = float(text)
        except ValueError:
            lease = 0.0
        if not 0 < lease < float("inf"):
            raise StorageError(f"${ENV_LEASE} must be a number of seconds > 0, got {text!r}")
        return cls(lease=lease)


class LeasedLock:
    """A lock held through a ticket; ``check()`` before each write under it."""

    def __init__(
        self, storage: BaseStorage, name: str, study_id: int, settings: LockSettings
    ) -> None:
        self.name = name
        self.settings = settings
        self._storage = storage
        self._study_id = study_id
        self._beats = 0
        self._guard = threading.Lock()
        self._lost = False
        self._stop = threading.Event()
        self.ticket_id = self._new_ticket()
        self.number: int | None = None  # the ticket's place in line, read while waiting
        self.renewed_at = time.monotonic()
        self.acquired_at: float | None = None

    @property
    def lost(self) -> bool:
        """True once this process saw its ticket broken (the lease ran out)."""
        return self._lost

    def check(self) -> None:
        """Renew the lease and confirm it is still held; raise LockLost otherwise."""
        if not self._lost:
            self._renew()
        if not self._lost:
            state = self._storage.get_trial(self.ticket_id).state
            self._lost = state != TrialState.RUNNING
        if self._lost:
            held = time.monotonic() - (self.acquired_at or self.renewed_at)
            raise LockLost(
                f"lost the storage lock {self.name!r} after {held:.1f} s: it was not renewed "
                f"for {self.settings.lease:g} s (process paused or cut off) and another "
                f"process may hold it now"
            )

    # --- tickets ------------------------------------------------------------------

    def _new_ticket(self) -> int:
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING,
            user_attrs={BEAT: 0},
            system_attrs={OWNER: f"{socket.gethostname()}:{os.getpid()}"},
        )
        return self._storage.create_new_trial(self._study_id, template)

    def _renew(self, stop: threading.Event | None = None) -> None:
        """Count the ticket's beat up; ``stop`` set: a renewal thread told to stop."""
        with self._guard:
            self._beats += 1
            beat = self._beats
            ticket = self.ticket_id
        started = time.monotonic()
        try:
            self._storage.set_trial_user_attr(ticket, BEAT, beat)
        except UpdateFinishedTrialError:
            if stop is None or not stop.is_set():  # not our own release racing us
                self._lost = True
            return
        self.renewed_at = max(self.renewed_at, started)

    def _renew_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.renew_every) and not self._lost:
            with contextlib.suppress(StorageError):  # the storage gave up: try next time
                self._renew(stop)

    def _start_renewing(self) -> None:
        # One event per renewal thread: stopping needs no join (releasing stays fast), and
        # a renewal still in flight when the ticket is finished is ignored.
        self._stop = threading.Event()
        threading.Thread(
            target=self._renew_forever,
            args=(self._stop,),
            name=f"kmlp-lock-{self.ticket_id}",
            daemon=True,
        ).start()

    def _requeue(self) -> None:
        """Our waiting ticket was broken (we looked dead): queue again at the back."""
        self._stop.set()
        self._lost = False
        self.ticket_id, self.number = self._new_ticket(), None
        self._start_renewing()

    def _finish(self, state: TrialState) -> None:
        self._stop.set()
        values = [0.0] if state == TrialState.COMPLETE else None
        try:
            self._storage.set_trial_state_values(self.ticket_id, state, values)
        except UpdateFinishedTrialError:
            self._lost = True


def _running(storage: BaseStorage, study_id: int) -> list[FrozenTrial]:
    read = getattr(storage, "running_trials", None)
    if read is not None:
        trials = read(study_id)
    else:
        trials = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    return sorted(trials, key=lambda t: t.number)


_STUDY_IDS: weakref.WeakKeyDictionary[BaseStorage, dict[str, int]] = weakref.WeakKeyDictionary()


def _lock_study(storage: BaseStorage, name: str, *, fresh: bool = False) -> int:
    ids = _STUDY_IDS.setdefault(storage, {})
    if name in ids and not fresh:
        return ids[name]
    study_name = lock_study_name(name)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        try:
            study_id = storage.create_new_study([StudyDirection.MINIMIZE], study_name)
            storage.set_study_user_attr(study_id, "kmlp", f"tickets of the kmlp lock {name!r}")
        except DuplicatedStudyError:
            study_id = storage.get_study_id_from_name(study_name)
    ids[name] = study_id
    return study_id


def _take_over(storage: BaseStorage, ticket: FrozenTrial, lock: LeasedLock) -> None:
    """Break a ticket whose beat stood still for a lease."""
    try:
        broke = storage.set_trial_state_values(ticket._trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return  # finished meanwhile, by its owner or another waiter
    if broke:
        print(
            f"kmlp: warning: storage lock {lock.name!r}: {ticket.system_attrs.get(OWNER)} "
            f"did not renew its lease for {lock.settings.lease:g} s; taking over",
            file=sys.stderr,
            flush=True,
        )


def _acquire(storage: BaseStorage, name: str, settings: LockSettings) -> LeasedLock:
    try:
        lock = LeasedLock(storage, name, _lock_study(storage, name), settings)
    except KeyError:  # the lock study was deleted under us
        lock = LeasedLock(storage, name, _lock_study(storage, name, fresh=True), settings)
    lock._start_renewing()
    try:
        watch = Liveness(settings.lease)
        failures = getattr(storage, "failures", 0)
        delay, head = settings.poll_min, None
        while True:
            started = time.monotonic()
            running = _running(storage, lock._study_id)
            ended = time.monotonic()
            mine = [t for t in running if t._trial_id == lock.ticket_id]
            if lock.lost or not mine:
                lock._requeue()
                continue
            lock.number = mine[0].number
            ahead = [t for t in running if t.number < lock.number]
            if not ahead:
                lock.acquired_at = ended
                return lock
            now_failures = getattr(storage, "failures", 0)
            if now_failures != failures or ended - started > settings.lease / 4:
                watch.reset()  # we were not watching: silence proves nothing
                failures = now_failures
            watch.keep_only(t._trial_id for t in ahead)
            stale = [
                t
                for t in ahead
                if watch.observe(t._trial_id, t.user_attrs.get(BEAT), started=started, ended=ended)
            ]
            for ticket in stale:
                _take_over(storage, ticket, lock)
            if stale or ahead[0]._trial_id != head:
                delay, head = settings.poll_min, ahead[0]._trial_id
                if stale:
                    continue
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(settings.poll_max, delay * 2)
    except BaseException:
        with contextlib.suppress(Exception):
            lock._finish(TrialState.FAIL)
        raise


@contextlib.contextmanager
def storage_lock(
    storage: BaseStorage, *, name: str, settings: LockSettings | None = None
) -> Iterator[LeasedLock]:
    """Hold the lock ``name`` of ``storage`` for the ``with`` body; yields the LeasedLock.

    Blocks until the lock is held. Call ``lock.check()`` right before each write under
    it (it raises LockLost if the lease was lost); writes retried after a connection
    error are checked by themselves. Leaving the body releases the lock; a lock found
    lost then is reported on stderr (the body's checks are what protect its writes).
    """
    settings = settings or LockSettings.from_env()
    lock = _acquire(storage, name, settings)
    fenced = getattr(storage, "fenced", None)
    try:
        with fenced(lock.check) if fenced is not None else contextlib.nullcontext():
            yield lock
    except BaseException:
        with contextlib.suppress(Exception):  # keep the body's error, not a release error
            lock._finish(TrialState.COMPLETE)
        raise
    lock._finish(TrialState.COMPLETE)
    if lock.lost:
        print(
            f"kmlp: warning: storage lock {name!r} was taken over while held "
            f"(lease {settings.lease:g} s)",
            file=sys.stderr,
            flush=True,
        )
