"""kmlp: coarse-to-fine search of the L2 strength λ of a k-layer NumPy MLP on CIFAR-10.

The packages, each importable on its own:

- ``kmlp.network``: data, layers, the MLP, gradient check, training (imports nothing
  else of kmlp's but :mod:`kmlp.errors`);
- ``kmlp.storage``: storage URLs, opening SQLite / PostgreSQL, locks, export files;
- ``kmlp.study``: the coarse-to-fine search on Optuna, workers, and the record of what
  a study stores;
- ``kmlp.dashboards``: optuna-dashboard, figures and reports, read through the study
  record;
- ``kmlp.cli``: the ``kmlp`` command.

The names below are the public API; they are imported on first use, so that
``import kmlp`` stays cheap (Optuna is only loaded for the study entry points).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kmlp.errors import KmlpError

# public name -> module that defines it
_API = {
    "MLP": "kmlp.network",
    "TrainConfig": "kmlp.network",
    "TrainResult": "kmlp.network",
    "Checkpoint": "kmlp.network",
    "Dataset": "kmlp.network",
    "Split": "kmlp.network",
    "train": "kmlp.network",
    "load_cifar10": "kmlp.network",
    "load_model": "kmlp.network",
    "save_model": "kmlp.network",
    "cyclical_lr": "kmlp.network",
    "SearchConfig": "kmlp.study",
    "launch": "kmlp.study",
    "run_worker": "kmlp.study",
    "export_best": "kmlp.study",
    "retrain": "kmlp.study",
}

__all__ = [
    "MLP",
    "Checkpoint",
    "Dataset",
    "KmlpError",
    "SearchConfig",
    "Split",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "cyclical_lr",
    "export_best",
    "launch",
    "load_cifar10",
    "load_model",
    "retrain",
    "run_worker",
    "save_model",
    "train",
]

if TYPE_CHECKING:
    __version__: str
    from kmlp.network import (
        MLP,
        Checkpoint,
        Dataset,
        Split,
        TrainConfig,
        TrainResult,
        cyclical_lr,
        load_cifar10,
        load_model,
        save_model,
        train,
    )
    from kmlp.study import SearchConfig, export_best, launch, retrain, run_worker


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("kmlp")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0+unknown"


def __getattr__(name: str) -> Any:
    # __version__ too is looked up on first use: importlib.metadata takes ~20 ms, and the
    # ``kmlp`` command imports this package before it can catch a Ctrl-C.
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'kmlp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API) | {"__version__"})
