"""Heartbeat settings: how fast a trial of a dead worker is failed and retried.

Each running trial records a heartbeat every ``interval`` seconds; a trial whose
last heartbeat is older than ``grace_period`` seconds is failed by the next worker
that looks, and a WAITING copy (same λ, same stage) is queued to run its budget
slot again, at most ``max_retry`` times (after that the slot is simply sampled anew).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kmlp.storage.errors import StorageError

ENV_INTERVAL = "KMLP_HEARTBEAT_INTERVAL"
ENV_GRACE = "KMLP_HEARTBEAT_GRACE"


@dataclass(frozen=True, kw_only=True)
class HeartbeatSettings:
    """Seconds between heartbeats, seconds of silence before a trial is failed, retries."""

    interval: int = 10
    grace_period: int = 30
    max_retry: int = 3

    def __post_init__(self) -> None:
        # Optuna requires positive integers for both.
        if self.interval < 1 or self.grace_period < 1:
            raise StorageError(
                f"heartbeat interval and grace period must be >= 1 s "
                f"(got {self.interval}, {self.grace_period})"
            )
        if self.grace_period <= self.interval:
            raise StorageError(
                f"heartbeat grace period ({self.grace_period} s) must exceed the interval "
                f"({self.interval} s), or live trials would be failed"
            )
        if self.max_retry < 0:
            raise StorageError(f"max_retry must be >= 0 (got {self.max_retry})")

    @classmethod
    def from_env(cls) -> HeartbeatSettings:
        """Defaults, overridden by ``$KMLP_HEARTBEAT_INTERVAL`` and ``$KMLP_HEARTBEAT_GRACE``."""
        interval = _env_int(ENV_INTERVAL, cls.interval)
        grace = _env_int(ENV_GRACE, max(cls.grace_period, 3 * interval))
        return cls(interval=interval, grace_period=grace)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise StorageError(f"${name} must be an integer number of seconds, got {text!r}") from None
