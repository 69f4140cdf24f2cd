"""What lockstep training returns, and which settings its members must share."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from kmlp.network.config import TrainConfig
from kmlp.network.errors import ConfigError, DivergenceError
from kmlp.network.training import Checkpoint, TrainResult

SHARED_FIELDS = ("hidden", "batch_norm", "batch_size", "seed", "dtype", "bn_alpha", "monitor_size")
StopReason = Literal["completed", "stopped", "pruned", "diverged"]
GroupCallback = Callable[[Mapping[int, Checkpoint]], "Iterable[int] | None"]


@dataclass(frozen=True, kw_only=True)
class MemberResult(TrainResult):
    """One member's ``TrainResult``, and why it left the group.

    ``member`` is its index in ``configs``. ``reason``: "completed" (ran all its steps),
    "stopped" (its callback returned True), "pruned" (the group callback named it) or
    "diverged" (its loss became NaN or inf; ``error`` is the DivergenceError ``train``
    raises, its ``step`` the 0-based failing update, and accuracies are NaN). ``seconds``
    is its share of the group's wall time: each step's time split evenly among the
    members it served.
    """

    member: int
    reason: StopReason
    error: DivergenceError | None = None


@dataclass(frozen=True)
class LockstepResult:
    """All members' results (in ``configs`` order) and the group's timing in seconds.

    ``seconds`` is the wall time of the loop (updates, gathers, checkpoints), like
    ``TrainResult.seconds`` without the final train-set accuracies; ``checkpoint_seconds``
    the part of it spent evaluating at checkpoints; ``member_epochs`` the epochs summed
    over members; ``steps`` the updates of the longest-running member.
    """

    members: tuple[MemberResult, ...]
    seconds: float
    checkpoint_seconds: float
    member_epochs: float
    steps: int
    blas_threads: int | None

    @property
    def seconds_per_member_epoch(self) -> float:
        """Wall time per epoch of one member: the cost of a trial-epoch in lockstep."""
        return self.seconds / self.member_epochs if self.member_epochs else math.nan


def check_configs(configs: list[TrainConfig]) -> None:
    """ConfigError unless there is a configuration and all agree on ``SHARED_FIELDS``."""
    if not configs:
        raise ConfigError("lockstep training needs at least one configuration")
    first = configs[0]
    for i, config in enumerate(configs[1:], start=1):
        for name in SHARED_FIELDS:
            if getattr(config, name) != getattr(first, name):
                raise ConfigError(
                    f"lockstep members must share {name}: member 0 has "
                    f"{getattr(first, name)!r}, member {i} has {getattr(config, name)!r}"
                )
