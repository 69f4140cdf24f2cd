"""The k-layer fully connected network on CIFAR-10: data, layers, model, gradient check,
training. Imports nothing else of kmlp's."""

from __future__ import annotations

from network.config import TrainConfig
from network.curves import curve_data, plot_curves
from network.data import (
    Dataset,
    Split,
    default_cache_dir,
    download_cifar10,
    load_cifar10,
    resolve_data_dir,
)
from network.errors import ConfigError, DataError, DivergenceError, KmlpNetworkError
from network.model import MLP
from network.persist import load_model, save_model
from network.schedule import cyclical_lr
from network.training import Checkpoint, TrainResult, train

__all__ = [
    "MLP",
    "Checkpoint",
    "ConfigError",
    "DataError",
    "Dataset",
    "DivergenceError",
    "KmlpNetworkError",
    "Split",
    "TrainConfig",
    "TrainResult",
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
]
