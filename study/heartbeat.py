"""A thread that proves a worker's running trials alive, through any storage.

kmlp runs trials with ask/tell (to create them under its lock), so it beats itself. One
thread beats every trial a worker holds (one, or a lockstep group of several): every
``interval`` seconds it counts up each trial's liveness attribute (``study.reaper``:
``kmlp:alive``), which the stale-trial reaper of any other worker watches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

import optuna

from kmlp.study.reaper import mark_alive


class Heartbeat:
    """``with Heartbeat(storage, trial_ids, interval):`` beats each trial every ``interval`` s.

    ``trial_ids``: an iterable of trial ids (storage ids, not numbers); ``drop(trial_id)``
    stops beating one (a member that finished before the others).
    """

    def __init__(
        self, storage: optuna.storages.BaseStorage, trial_ids: Iterable[int], interval: float
    ):
        self._storage = storage
        self._ids = list(trial_ids)
        self._lock = threading.Lock()
        self._interval = interval
        self._stop = threading.Event()
        self._count = 0
        name = "heartbeat-" + ",".join(str(i) for i in self._ids[:4])
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def drop(self, trial_id: int) -> None:
        """Stop beating ``trial_id`` (it was told)."""
        with self._lock:
            if trial_id in self._ids:
                self._ids.remove(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = list(self._ids)
            self._count += 1
            for trial_id in ids:
                try:
                    mark_alive(self._storage, trial_id, self._count)
                except Exception:  # told meanwhile, or storage gone: next interval
                    continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
