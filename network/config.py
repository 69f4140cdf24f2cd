"""The training configuration: network shape, regularisation, schedule and seed."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from kmlp.network.errors import ConfigError
from kmlp.network.init import parse_init
from kmlp.network.model import check_dtype


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that determines a training run, given the data.

    ``n_s`` is the half-cycle length in update steps; None means 5 * n_train / batch_size
    (2250 for 45000 images in batches of 100). ``monitor_size`` is how many training
    images (the first ones) the checkpoints score; the final train accuracy uses all.
    """

    hidden: tuple[int, ...] = (50, 50)
    batch_norm: bool = False
    lam: float = 0.005
    batch_size: int = 100
    eta_min: float = 1e-5
    eta_max: float = 1e-1
    n_s: int | None = None
    cycles: int = 2
    init: str = "he"
    seed: int = 0
    dtype: str = "float32"
    bn_alpha: float = 0.9
    checkpoints_per_cycle: int = 10
    monitor_size: int = 10000

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths {list(self.hidden)}: each must be >= 1")
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ConfigError(f"lambda {self.lam}: must be a finite number >= 0")
        if self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size}: must be >= 1")
        if not 0 < self.eta_min <= self.eta_max:
            raise ConfigError(f"learning rates {self.eta_min}..{self.eta_max}: need 0 < min <= max")
        if self.n_s is not None and self.n_s < 1:
            raise ConfigError(f"n_s {self.n_s}: must be >= 1")
        if self.cycles < 1:
            raise ConfigError(f"cycles {self.cycles}: must be >= 1")
        if self.checkpoints_per_cycle < 1:
            raise ConfigError("checkpoints_per_cycle must be >= 1")
        if self.monitor_size < 1:
            raise ConfigError("monitor_size must be >= 1")
        if not 0.0 <= self.bn_alpha < 1.0:
            raise ConfigError(f"bn_alpha {self.bn_alpha}: must be in [0, 1)")
        parse_init(self.init)
        check_dtype(self.dtype)

    def half_cycle(self, n_train: int) -> int:
        """n_s for a training set of n_train images."""
        return self.n_s if self.n_s is not None else max(1, 5 * n_train // self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``hidden`` as a list)."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; ConfigError on unknown keys or bad values."""
        if not isinstance(data, dict):
            raise ConfigError("a training configuration must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training configuration keys: {', '.join(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"bad training configuration: {exc}") from None
