"""Saving and loading a network as .npz arrays plus a JSON config (no pickle)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kmlp.network import checks
from kmlp.network.errors import ConfigError, DataError, KmlpNetworkError
from kmlp.network.layers import RunningStats
from kmlp.network.model import MLP

_FORMAT = "kmlp-model-1"


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _npz_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_suffix(".npz")


def check_model_path(path: str | Path, *, name: str = "model path") -> Path:
    """The .npz path ``save_model`` would write for ``path``, if it and its .json can be
    written; ConfigError (naming the setting ``name``) otherwise. Call it before training."""
    text = os.fspath(path)
    try:
        folder = text.endswith(os.sep) or Path(text).is_dir()
    except OSError:
        folder = False  # writable_file below says why the path is unusable
    if folder:
        checks.writable_file(name, text)  # refuses, naming the folder
    npz = _npz_path(text)
    checks.writable_file(name, npz)
    checks.writable_file(name, _meta_path(npz))
    return npz


def save_model(net: MLP, path: str | Path, *, config: Any | None = None) -> Path:
    """Write ``path`` (.npz: parameters and BN running statistics) and ``path`` with .json.

    ``config`` (a TrainConfig or dict) is stored in the JSON for the record. Returns the
    .npz path. DataError if the files cannot be written.
    """
    path = _npz_path(path)
    arrays = dict(net.params)
    for layer, stats in net.running.items():
        arrays[f"running_mean{layer}"] = stats.mean
        arrays[f"running_var{layer}"] = stats.var
    meta = {
        "format": _FORMAT,
        "layer_sizes": net.layer_sizes,
        "batch_norm": net.batch_norm,
        "init": net.init,
        "dtype": str(net.dtype),
        "bn_alpha": net.bn_alpha,
        "bn_eps": net.bn_eps,
        "config": config.to_dict() if hasattr(config, "to_dict") else config,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        _meta_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    except OSError as exc:
        raise DataError(f"cannot save the model to {path}: {exc.strerror or exc}") from None
    return path


def load_model(path: str | Path) -> MLP:
    """Load a network saved by ``save_model``; DataError if the files are not one."""
    path = Path(path)
    try:
        meta = json.loads(_meta_path(path).read_text())
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise DataError(f"{_meta_path(path)} is not a kmlp model description")
        net = MLP(
            layer_sizes=meta["layer_sizes"],
            batch_norm=meta["batch_norm"],
            init=meta["init"],
            dtype=meta["dtype"],
            bn_alpha=meta["bn_alpha"],
            bn_eps=meta["bn_eps"],
        )
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except KmlpNetworkError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, ConfigError) as exc:
        raise DataError(f"cannot load model {path}: {exc}") from None
    for key, value in net.params.items():
        if key not in arrays or arrays[key].shape != value.shape:
            raise DataError(f"model {path}: parameter {key} is missing or has the wrong shape")
        net.params[key] = arrays[key].astype(net.dtype, copy=False)
    net.running = {
        layer: RunningStats(arrays[f"running_mean{layer}"], arrays[f"running_var{layer}"])
        for layer in range(1, net.k)
        if f"running_mean{layer}" in arrays
    }
    return net
