"""The training configuration: network shape, regularisation, schedule and seed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from kmlp.network import checks
from kmlp.network.cifar_files import N_CLASSES, N_FEATURES
from kmlp.network.errors import ConfigError
from kmlp.network.init import parse_init
from kmlp.network.model import EVAL_CHUNK, check_dtype

# Checkpoints kept in a run's history (cycles x checkpoints per cycle): each is a small
# record, but a run asking for 10^12 of them would exhaust memory before its first step.
MAX_CHECKPOINTS = 100_000


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
        # Exports and study records arrive through from_dict, so types are checked here, not
        # assumed: a float batch size, a string seed or hidden "55" are one-line errors.
        checked = {
            "hidden": checks.widths("hidden widths", self.hidden),
            "batch_norm": checks.flag("batch_norm", self.batch_norm),
            "lam": checks.real("lambda", self.lam, low=0.0),
            "batch_size": checks.whole("batch size", self.batch_size, low=1),
            "eta_min": checks.real("eta_min", self.eta_min, low=0.0, low_open=True),
            "eta_max": checks.real("eta_max", self.eta_max, low=0.0, low_open=True),
            "n_s": None if self.n_s is None else checks.whole("n_s", self.n_s, low=1),
            "cycles": checks.whole("cycles", self.cycles, low=1),
            "seed": checks.whole("seed", self.seed, low=0, high=checks.MAX_SEED),
            "bn_alpha": checks.real("bn_alpha", self.bn_alpha, low=0.0, high=1.0, high_open=True),
            "checkpoints_per_cycle": checks.whole(
                "checkpoints_per_cycle", self.checkpoints_per_cycle, low=1
            ),
            "monitor_size": checks.whole("monitor_size", self.monitor_size, low=1),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        if self.eta_min > self.eta_max:
            raise ConfigError(f"learning rates {self.eta_min}..{self.eta_max}: need min <= max")
        if self.cycles * self.checkpoints_per_cycle > MAX_CHECKPOINTS:
            raise ConfigError(
                f"{self.cycles} cycles x {self.checkpoints_per_cycle} checkpoints per cycle: "
                f"at most {MAX_CHECKPOINTS} checkpoints are kept"
            )
        for name, value in (("init", self.init), ("dtype", self.dtype)):
            if not isinstance(value, str):
                raise ConfigError(f"{name} must be a string, got {checks.show(value)}")
        parse_init(self.init)
        check_dtype(self.dtype)

    def memory_needed(
        self, *, n_features: int = N_FEATURES, n_classes: int = N_CLASSES, n_images: int = 60000
    ) -> int:
        """Bytes training this network on ``n_images`` images (all splits, default CIFAR-10's
        60000) of ``n_features`` needs at least: the images as floats, plus
        ``checks.network_bytes`` for a batch or an evaluation chunk, whichever is larger."""
        itemsize = np.dtype(self.dtype).itemsize
        rows = max(min(self.batch_size, n_images), min(EVAL_CHUNK, n_images))
        network = checks.network_bytes(
            layer_sizes=[n_features, *self.hidden, n_classes], itemsize=itemsize, rows=rows
        )
        return n_images * n_features * itemsize + network

    def check_memory(self, **sizes: int) -> None:
        """ConfigError, with the estimate, if ``memory_needed(**sizes)`` exceeds this
        machine's memory; call it before loading data."""
        checks.check_fits(
            f"training with hidden widths {checks.show(list(self.hidden))}",
            self.memory_needed(**sizes),
        )

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
        unknown = sorted(checks.show(key) for key in set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training configuration keys: {', '.join(unknown[:5])}")
        try:
            return cls(**data)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad training configuration: {checks.show(str(exc))}") from None
