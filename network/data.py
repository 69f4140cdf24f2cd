"""CIFAR-10 as the method uses it: 45000 train / 5000 validation / 10000 test, standardised.

Where the data is looked for: the ``data_dir`` argument (``--data DIR``), else ``$KMLP_DATA``,
else the per-user cache folder (``default_cache_dir()``), which is filled by
``download_cifar10`` on first use.
"""

from __future__ import annotations

import hashlib
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from kmlp.network.checks import show
from kmlp.network.cifar_files import (
    ARCHIVE_NAME,
    FOLDER_NAME,
    REQUIRED_FILES,
    TEST_FILE,
    TRAIN_FILES,
    Batch,
    Source,
    find_source,
    read_batches,
)
from kmlp.network.download import default_cache_dir, download_cifar10
from kmlp.network.errors import ConfigError, DataError

__all__ = [
    "Dataset",
    "Split",
    "default_cache_dir",
    "download_cifar10",
    "load_cifar10",
    "resolve_data_dir",
]

N_TRAIN_MAX = 45000
N_VAL_MAX = 5000
# The validation images are the last tenth of the five training batches (5000 of 50000);
# a fraction rather than a count so that small test copies of the files split the same way.
_VAL_DIVISOR = 10
_DTYPES = ("float32", "float64")
_ZERO_STD = 1e-8  # below this a feature is constant on the training set
_BLOCK_ROWS = 2048  # rows per block when summing squares, bounds the temporary to ~25 MB


@dataclass(frozen=True)
class Split:
    """One part of the data.

    Attributes:
        X: (n, 3072) float32 or float64, standardised with the training mean and std.
        y: (n,) int64 class labels 0..9.
    """

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits plus what identifies them.

    Attributes:
        fingerprint: hex sha256 of the raw batch files' contents and the subset sizes; equal
            for the same files and (n_train, n_val), whether read from a folder or an archive.
        source: the folder or archive the files were read from.
    """

    train: Split
    val: Split
    test: Split
    fingerprint: str
    source: str


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Where CIFAR-10 is looked for: ``data_dir``, else ``$KMLP_DATA``, else the cache folder.

    The path may be the folder of batch files, a folder containing ``cifar-10-batches-py/``
    or ``cifar-10-python.tar.gz``, or the archive itself. Nothing is checked here.
    """
    return _resolve(data_dir)[0]


def _resolve(data_dir: str | Path | None) -> tuple[Path, str | None]:
    """(path, what named it) -- the second is None for the default cache folder."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "given with --data / data_dir"
    env = os.environ.get("KMLP_DATA")
    if env:
        return Path(env).expanduser(), "$KMLP_DATA"
    return default_cache_dir(), None


def load_cifar10(
    *,
    data_dir: str | Path | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    val_pool: int | None = None,
    dtype: str = "float32",
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load, split and standardise CIFAR-10.

    The five training batches are concatenated (50000 images); the last 5000 are the
    validation pool and the first 45000 the training pool. ``n_train`` / ``n_val`` take the
    first images of each pool. The test set is all of ``test_batch`` (10000). Every split is
    standardised per feature with the mean and (population) std of the training images
    used; a feature constant on them keeps std 1, i.e. is only centred.

    Args:
        data_dir: see ``resolve_data_dir``. If given (or ``$KMLP_DATA`` is set) and no data
            is there, that is an error; nothing is downloaded.
        n_train: training images, 1..45000; default all 45000.
        n_val: validation images, 1..5000; default all 5000.
        val_pool: how many of the last training-batch images form the validation pool
            (default 5000, the method's split for the search; its final training holds out
            only 1000 and trains on the other 49000).
        dtype: "float32" or "float64" for X.
        download: if the cache folder has no data, download it there first.
        progress: show a progress bar while downloading.

    Raises:
        ConfigError: bad n_train, n_val or dtype.
        DataError: data missing, unreadable, unsafe or malformed; download failed.
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    if val_pool is not None:
        val_pool = _check_count("val_pool", val_pool, N_TRAIN_MAX + N_VAL_MAX - 1)
    max_train = N_TRAIN_MAX if val_pool is None else N_TRAIN_MAX + N_VAL_MAX - val_pool
    n_train = _check_count("n_train", n_train, max_train)
    n_val = _check_count("n_val", n_val, N_VAL_MAX if val_pool is None else val_pool)

    root, named_by = _resolve(data_dir)
    source = find_source(root)
    if source is None:
        source = _fetch_or_explain(root, named_by, download=download, progress=progress)
    batches = read_batches(source)

    train_parts = [batches[name].data for name in TRAIN_FILES]
    label_parts = [batches[name].labels for name in TRAIN_FILES]
    total = sum(len(part) for part in train_parts)
    default_pool = val_pool is None
    if val_pool is None:
        val_pool = total // _VAL_DIVISOR
    elif val_pool >= total:
        raise ConfigError(f"val_pool={val_pool} but only {total} training-batch images exist")
    train_pool = total - val_pool
    if val_pool < 1:
        raise DataError(f"{source.path}: only {total} training images; not CIFAR-10")
    n_train = train_pool if n_train is None else n_train
    n_val = val_pool if n_val is None else n_val
    if n_train > train_pool:
        raise ConfigError(f"n_train={n_train} but only {train_pool} training images exist")
    if n_val > val_pool:
        raise ConfigError(f"n_val={n_val} but only {val_pool} validation images exist")

    rows = {"train": (0, n_train), "val": (train_pool, train_pool + n_val)}
    X = {k: _gather(train_parts, a, b, dtype) for k, (a, b) in rows.items()}
    y = {k: _gather(label_parts, a, b, np.int64) for k, (a, b) in rows.items()}
    test: Batch = batches[TEST_FILE]
    X["test"] = test.data.astype(dtype)
    y["test"] = test.labels
    fingerprint = _fingerprint(
        {name: b.sha256 for name, b in batches.items()},
        n_train,
        n_val,
        val_pool=None if default_pool else val_pool,
    )
    del batches, train_parts, label_parts, test  # the uint8 copies are no longer needed

    mean, std = _moments(X["train"])
    for part in X.values():  # in place: no second float copy of 45000 x 3072
        part -= mean.astype(dtype)
        part /= std.astype(dtype)

    return Dataset(
        train=Split(X["train"], y["train"]),
        val=Split(X["val"], y["val"]),
        test=Split(X["test"], y["test"]),
        fingerprint=fingerprint,
        source=str(source.path.resolve()),
    )


def _check_count(name: str, value: int | None, maximum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {show(value)}")
    value = int(value)
    if not 1 <= value <= maximum:
        raise ConfigError(f"{name} must be between 1 and {maximum}, got {show(value)}")
    return value


def check_data_location(data_dir: str | Path | None = None) -> None:
    """DataError, the one ``load_cifar10`` would raise, if ``data_dir`` (else
    ``$KMLP_DATA``) names a place that holds no CIFAR-10; the files themselves are checked
    when read. Nothing is read or downloaded: commands call it before any other work.
    (The default cache folder may be empty: loading downloads into it.)"""
    root, named_by = _resolve(data_dir)
    if named_by is not None and find_source(root) is None:
        _explain_missing(root, named_by)


def _explain_missing(root: Path, named_by: str) -> NoReturn:
    expected = f"the files {', '.join(REQUIRED_FILES)}, a {FOLDER_NAME} folder or {ARCHIVE_NAME}"
    state = "does not exist" if not root.exists() else f"has no CIFAR-10 ({expected})"
    raise DataError(f"{root} ({named_by}) {state}")


def _fetch_or_explain(
    root: Path, named_by: str | None, *, download: bool, progress: bool
) -> Source:
    """Download into the cache folder, or say why not; returns the new source."""
    if named_by is not None:
        _explain_missing(root, named_by)
    if not download:
        raise DataError(
            f"no CIFAR-10 in the cache folder {root}; run 'kmlp data download', "
            "or point kmlp at a local copy with --data DIR or KMLP_DATA=DIR"
        )
    download_cifar10(dest=root, progress=progress)
    source = find_source(root)
    if source is None:  # pragma: no cover - download_cifar10 wrote the archive just now
        raise DataError(f"no CIFAR-10 in {root} after downloading it")
    return source


def _gather(parts: list[np.ndarray], start: int, stop: int, dtype: object) -> np.ndarray:
    """Rows [start, stop) of the concatenation of ``parts``, converted to ``dtype``.

    Copies straight from each part into the result, so neither the concatenated uint8 array
    nor a second float array is ever made.
    """
    out = np.empty((stop - start, *parts[0].shape[1:]), dtype=dtype)
    offset = filled = 0
    for part in parts:
        lo, hi = max(start, offset), min(stop, offset + len(part))
        if lo < hi:
            out[filled : filled + hi - lo] = part[lo - offset : hi - offset]
            filled += hi - lo
        offset += len(part)
    return out


def _moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and population std of X, (3072,) float64 each, std 1 if constant.

    X still holds the integer pixel values 0..255, and both float32 and float64 hold their
    squares exactly, so the float64 sums below are exact integers and the result is the
    correctly rounded mean and std whatever X's dtype (no catastrophic cancellation).
    """
    n = len(X)
    s1 = X.sum(axis=0, dtype=np.float64)
    s2 = np.zeros(X.shape[1], dtype=np.float64)
    for start in range(0, n, _BLOCK_ROWS):
        block = X[start : start + _BLOCK_ROWS]
        s2 += np.square(block).sum(axis=0, dtype=np.float64)
    mean = s1 / n
    std = np.sqrt((n * s2 - s1 * s1) / (float(n) * n))
    # A feature constant on the training set would otherwise blow up (x - mean) / ~0 on
    # validation and test; leaving it centred but unscaled is harmless.
    std[std < _ZERO_STD] = 1.0
    return mean, std


def _fingerprint(
    file_sha256: dict[str, str], n_train: int, n_val: int, *, val_pool: int | None
) -> str:
    """sha256 over the batch files' own sha256 (fixed order) and the subset sizes."""
    h = hashlib.sha256(b"kmlp cifar10 v1\n")
    for name in REQUIRED_FILES:
        h.update(f"{name} {file_sha256[name]}\n".encode())
    h.update(f"n_train {n_train}\nn_val {n_val}\n".encode())
    if val_pool is not None:  # only when not the default, so default fingerprints stay put
        h.update(f"val_pool {val_pool}\n".encode())
    return h.hexdigest()
