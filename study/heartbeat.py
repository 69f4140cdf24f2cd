"""A thread that records running trials' heartbeats, as Study.optimize does.

kmlp runs trials with ask/tell (to create them under its lock), so it beats itself. One
thread beats every trial a worker holds (one, or a lockstep group of several).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

import optuna


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
            for trial_id in ids:
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception:  # a missed beat is retried next interval
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
