"""The k-layer fully connected network on CIFAR-10: data, layers, model, gradient check,
training, and lockstep training of networks that differ only in λ (``train_lockstep``).
Imports nothing else of kmlp's but the error root, ``kmlp.errors``."""

from __future__ import annotations

from kmlp.network.config import TrainConfig
from kmlp.network.curves import curve_data, plot_curves
from kmlp.network.data import (
    Dataset,
    Split,
    default_cache_dir,
    download_cifar10,
    load_cifar10,
    resolve_data_dir,
)
from kmlp.network.errors import ConfigError, DataError, DivergenceError, KmlpNetworkError
from kmlp.network.lockstep import train_lockstep
from kmlp.network.lockstep_result import (
    SHARED_FIELDS,
    GroupCallback,
    LockstepResult,
    MemberResult,
)
from kmlp.network.model import MLP
from kmlp.network.persist import load_model, save_model
from kmlp.network.schedule import cyclical_lr
from kmlp.network.threads import DEFAULT_BLAS_THREADS, blas_limit, blas_threads
from kmlp.network.training import Checkpoint, TrainResult, train

__all__ = [
    "DEFAULT_BLAS_THREADS",
    "MLP",
    "SHARED_FIELDS",
    "Checkpoint",
    "ConfigError",
    "DataError",
    "Dataset",
    "DivergenceError",
    "GroupCallback",
    "KmlpNetworkError",
    "LockstepResult",
    "MemberResult",
    "Split",
    "TrainConfig",
    "TrainResult",
    "blas_limit",
    "blas_threads",
    "curve_data",
    "cyclical_lr",
    "default_cache_dir",
    "download_cifar10",
    "load_cifar10",
    "load_model",
    "plot_curves",
    "resolve_data_dir",
    "save_model",
    "train",
    "train_lockstep",
]
