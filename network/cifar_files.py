"""Finding and reading the CIFAR-10 "python version" batch files (folder or .tar.gz archive).

Reading only: every file is checked (safe unpickling, keys, dtype, shapes, label range) and
comes back as raw uint8 rows and labels; splitting and standardising live in ``network.data``.
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from kmlp.network.download import ARCHIVE_NAME
from kmlp.network.errors import DataError
from kmlp.network.safe_pickle import safe_loads

FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
REQUIRED_FILES = (*TRAIN_FILES, TEST_FILE)
META_FILE = "batches.meta"  # label names only; not needed to train, so not read
N_FEATURES = 3072  # 32 x 32 pixels x 3 colour planes
N_CLASSES = 10
# Official batches are ~31 MB; refuse anything far bigger before reading it into memory.
_MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """Where the batch files are: a folder holding them, or a tar archive containing them."""

    path: Path
    is_archive: bool


@dataclass(frozen=True)
class Batch:
    """One checked batch file: ``data`` uint8 (n, 3072), ``labels`` int64 (n,) in 0..9."""

    data: np.ndarray
    labels: np.ndarray
    sha256: str  # of the raw file bytes


def find_source(root: Path) -> Source | None:
    """Locate CIFAR-10 at ``root``: the folder itself, its ``cifar-10-batches-py`` child,
    its ``cifar-10-python.tar.gz``, or ``root`` being an archive. None if nothing is there."""
    if root.is_file():
        return Source(root, is_archive=True)
    if not root.is_dir():
        return None
    if any((root / name).exists() for name in (*REQUIRED_FILES, META_FILE)):
        return Source(root, is_archive=False)
    if (root / FOLDER_NAME).is_dir():
        return Source(root / FOLDER_NAME, is_archive=False)
    if (root / ARCHIVE_NAME).is_file():
        return Source(root / ARCHIVE_NAME, is_archive=True)
    return None


def read_batches(source: Source) -> dict[str, Batch]:
    """Read and check all of ``REQUIRED_FILES`` from ``source``; keyed by file name.

    Raises:
        DataError: a file is missing, too big, unreadable, unsafe, or has the wrong content.
    """
    raw_files = _archive_members(source.path) if source.is_archive else _folder_files(source.path)
    batches: dict[str, Batch] = {}
    for name, raw, where in raw_files:
        digest = hashlib.sha256(raw).hexdigest()
        data, labels = _check_batch(safe_loads(raw, where=where), where=where)
        del raw  # the raw bytes are the biggest transient; let them go before the next file
        batches[name] = Batch(data=data, labels=labels, sha256=digest)
    missing = [name for name in REQUIRED_FILES if name not in batches]
    if missing:
        raise DataError(f"{source.path}: no {', '.join(missing)} in the archive")
    return batches


def _folder_files(folder: Path) -> Iterator[tuple[str, bytes, str]]:
    paths = [folder / name for name in REQUIRED_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:  # check all before reading any, so the error is immediate and complete
        raise DataError(f"{folder}: missing CIFAR-10 file(s) {', '.join(missing)}")
    for path in paths:
        try:
            if path.stat().st_size > _MAX_FILE_BYTES:
                raise DataError(f"{path}: too big for a CIFAR-10 batch file")
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
        yield path.name, raw, str(path)


def _archive_members(archive: Path) -> Iterator[tuple[str, bytes, str]]:
    # Streaming mode ("r|*") reads members in archive order without seeking back, so the
    # gzip stream is decompressed exactly once.
    seen: set[str] = set()
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if name not in REQUIRED_FILES or name in seen:
                    continue
                where = f"{archive}:{member.name}"
                if not member.isfile():
                    raise DataError(f"{where}: not a regular file")
                if member.size > _MAX_FILE_BYTES:
                    raise DataError(f"{where}: too big for a CIFAR-10 batch file")
                extracted = tar.extractfile(member)
                assert extracted is not None  # isfile() members always extract
                seen.add(name)
                yield name, extracted.read(), where
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{archive}: not a readable CIFAR-10 .tar.gz archive ({reason})") from None


def _get(batch: dict, key: str) -> object:
    # Official files have byte-string keys; a Python 3 re-pickle would have str keys.
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def _check_batch(obj: object, *, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one unpickled batch; return (uint8 (n, 3072) data, int64 (n,) labels)."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict, found {type(obj).__name__}")
    try:
        data, labels = _get(obj, "data"), _get(obj, "labels")
    except KeyError as exc:
        raise DataError(f"{where}: no {exc.args[0]!r} entry; not a CIFAR-10 batch") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: 'data' is {kind}, expected a uint8 array")
    if data.ndim != 2 or data.shape[1] != N_FEATURES or data.shape[0] == 0:
        raise DataError(f"{where}: 'data' has shape {data.shape}, expected (n, {N_FEATURES})")
    try:
        y = np.asarray(labels)
    except (ValueError, TypeError):
        y = np.empty(0, dtype=object)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{where}: 'labels' is not a list of integers")
    if len(y) != len(data):
        raise DataError(f"{where}: {len(y)} labels for {len(data)} images")
    if y.min() < 0 or y.max() >= N_CLASSES:
        raise DataError(f"{where}: labels outside 0..{N_CLASSES - 1}")
    return np.ascontiguousarray(data), y.astype(np.int64, copy=False)
