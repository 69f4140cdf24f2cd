"""Judging another process gone from a value it stopped renewing, on our own clock only.

Processes on several machines share nothing but the storage, and their clocks disagree.
So a process proves it is alive by changing a value (a counter in an attribute) every
few seconds, and an observer calls it stale only when it has read the *same* value for
at least ``lease`` seconds of the observer's own monotonic clock: from the moment a read
returned the value to the start of a later read that returned it again. No timestamps
are compared across machines.

An observer that could not read for a while (its own outage, a read that hung) has not
watched: ``reset()`` forgets what it saw, so a holder cut off together with everyone
else is not declared dead the moment the storage comes back.

Used by the storage lock (tickets renewed by their holders) and meant for the stale-trial
reaper (trials renewed by their workers' heartbeat threads).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any


class Liveness:
    """Tracks renewed values of keys (e.g. trial ids); ``lease`` in seconds."""

    def __init__(self, lease: float) -> None:
        if lease <= 0:
            raise ValueError(f"lease must be > 0, got {lease}")
        self.lease = lease
        self._seen: dict[Hashable, tuple[Any, float]] = {}

    def observe(self, key: Hashable, value: Any, *, started: float, ended: float) -> bool:
        """Record ``value`` of ``key`` read by a read spanning [started, ended] (monotonic s).

        Returns True if ``key`` is stale: the same value was returned by a read that ended
        at least ``lease`` seconds before this read started.
        """
        previous = self._seen.get(key)
        if previous is None or previous[0] != value:
            self._seen[key] = (value, ended)
            return False
        return started - previous[1] >= self.lease

    def silent_for(self, key: Hashable, now: float) -> float:
        """Seconds since ``key``'s current value was first seen (0 if never seen)."""
        previous = self._seen.get(key)
        return max(0.0, now - previous[1]) if previous is not None else 0.0

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget keys not in ``keys`` (finished tickets or trials)."""
        wanted = set(keys)
        for key in [k for k in self._seen if k not in wanted]:
            del self._seen[key]

    def reset(self) -> None:
        """Forget everything: this observer was not watching (its own outage)."""
        self._seen.clear()
