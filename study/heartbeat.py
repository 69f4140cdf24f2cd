"""A thread that records a running trial's heartbeat, as Study.optimize does.

kmlp runs trials with ask/tell (to create them under its lock), so it beats itself.
"""

from __future__ import annotations

import threading
from types import TracebackType

import optuna


class Heartbeat:
    """``with Heartbeat(storage, trial_id, interval):`` beats every ``interval`` seconds."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int, interval: float):
        self._storage = storage
        self._trial_id = trial_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
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
