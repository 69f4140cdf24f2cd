"""Finding and reading the CIFAR-10 "python version" batch files (folder or .tar.gz archive).

Reading only: every file must have the official layout -- a pickled dict whose ``data`` is
exactly ``BATCH_ROWS`` x 3072 uint8 and whose ``labels`` are ``BATCH_ROWS`` ints in 0..9 --
and is checked while its pickle is walked (``network.safe_pickle``), before anything the
file declares is allocated. Each file is read once into one buffer; the images come back as
a view of it, so reading needs little more memory than the data itself. Splitting and
standardising live in ``network.data``.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

from kmlp.network.checks import show_path
from kmlp.network.download import ARCHIVE_NAME
from kmlp.network.errors import DataError
from kmlp.network.safe_pickle import read_batch_pickle

FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
REQUIRED_FILES = (*TRAIN_FILES, TEST_FILE)
META_FILE = "batches.meta"  # label names only; not needed to train, so not read
N_FEATURES = 3072  # 32 x 32 pixels x 3 colour planes
N_CLASSES = 10
# Images per batch file in the official release. Read at call time, so that tests can
# check the layout on small copies of the files (they lower it); kmlp never changes it.
BATCH_ROWS = 10000
# Besides its pixels an official batch holds ~24 bytes per image (label, file name); a
# re-pickle a few more. Anything bigger is refused before it is read.
_EXTRA_BYTES_PER_ROW = 256
_EXTRA_BYTES = 64 * 1024


@dataclass(frozen=True)
class Source:
    """Where the batch files are: a folder holding them, or a tar archive containing them."""

    path: Path
    is_archive: bool


@dataclass(frozen=True)
class Batch:
    """One checked batch file: ``data`` uint8 (BATCH_ROWS, 3072), a view of the file's
    bytes; ``labels`` int64 (BATCH_ROWS,) in 0..9."""

    data: np.ndarray
    labels: np.ndarray
    sha256: str  # of the raw file bytes


def find_source(root: Path) -> Source | None:
    """Locate CIFAR-10 at ``root``: the folder itself, its ``cifar-10-batches-py`` child,
    its ``cifar-10-python.tar.gz``, or ``root`` being an archive. None if nothing is there.

    Raises:
        DataError: ``root`` cannot be examined (a name too long, a loop of links, ...).
    """
    try:
        return _find_source(root)
    except OSError as exc:
        raise DataError(f"{show_path(root)}: cannot be read ({exc.strerror or exc})") from None


def _find_source(root: Path) -> Source | None:
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
    rows = BATCH_ROWS
    batches: dict[str, Batch] = {}
    for name, raw, where in raw_files:
        digest = hashlib.sha256(raw).hexdigest()
        content = read_batch_pickle(raw, where=where, rows=rows, features=N_FEATURES)
        data, labels = _check_batch(content, where=where, rows=rows)
        batches[name] = Batch(data=data, labels=labels, sha256=digest)
    missing = [name for name in REQUIRED_FILES if name not in batches]
    if missing:
        raise DataError(f"{source.path}: no {', '.join(missing)} in the archive")
    return batches


def max_file_bytes() -> int:
    """The largest batch file read: the pixels plus generous room for labels and names."""
    return BATCH_ROWS * (N_FEATURES + _EXTRA_BYTES_PER_ROW) + _EXTRA_BYTES


def _check_size(size: int, where: str) -> None:
    limit = max_file_bytes()
    if size > limit:
        raise DataError(
            f"{where}: {size} bytes is too big for a CIFAR-10 batch file "
            f"(an official one is about {BATCH_ROWS * (N_FEATURES + 24)} bytes)"
        )


def _read_exactly(stream: BinaryIO, size: int, where: str) -> bytearray:
    """``size`` bytes of ``stream`` into one new buffer (no intermediate copies)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        got = stream.readinto(view[filled:])
        if not got:
            raise DataError(f"{where}: the file ended after {filled} of {size} bytes")
        filled += got
    return buffer


def _folder_files(folder: Path) -> Iterator[tuple[str, bytearray, str]]:
    paths = [folder / name for name in REQUIRED_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:  # check all before reading any, so the error is immediate and complete
        raise DataError(f"{folder}: missing CIFAR-10 file(s) {', '.join(missing)}")
    for path in paths:
        try:
            with path.open("rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                _check_size(size, str(path))
                raw = _read_exactly(stream, size, str(path))
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
        yield path.name, raw, str(path)


def _archive_members(archive: Path) -> Iterator[tuple[str, bytearray, str]]:
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
                _check_size(member.size, where)
                extracted = tar.extractfile(member)
                assert extracted is not None  # isfile() members always extract
                seen.add(name)
                yield name, _read_exactly(extracted, member.size, where), where
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{archive}: not a readable CIFAR-10 .tar.gz archive ({reason})") from None


def _get(batch: dict, key: str) -> object:
    # Official files have byte-string keys; a Python 3 re-pickle would have str keys.
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def _check_batch(obj: dict, *, where: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Check one walked batch dict; return (uint8 (rows, 3072) data, int64 (rows,) labels).

    The walk already refused arrays of any other shape, lists longer than ``rows`` and
    everything it does not know; what is left is which entry holds what.
    """
    try:
        data, labels = _get(obj, "data"), _get(obj, "labels")
    except KeyError as exc:
        raise DataError(f"{where}: no {exc.args[0]!r} entry; not a CIFAR-10 batch") from None
    if not isinstance(data, np.ndarray) or data.shape != (rows, N_FEATURES):
        kind = f"shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: 'data' is {kind}, expected a ({rows}, {N_FEATURES}) uint8 array")
    if isinstance(labels, np.ndarray):
        if labels.shape != (rows,):
            raise DataError(f"{where}: 'labels' has shape {labels.shape}, expected ({rows},)")
        y = labels.astype(np.int64)
    elif isinstance(labels, list):
        if not all(type(v) is int for v in labels):
            raise DataError(f"{where}: 'labels' is not a list of integers")
        if len(labels) != rows:
            raise DataError(f"{where}: {len(labels)} labels for {rows} images")
        if labels and not 0 <= min(labels) <= max(labels) < N_CLASSES:
            raise DataError(f"{where}: labels outside 0..{N_CLASSES - 1}")
        y = np.array(labels, dtype=np.int64)
    else:
        raise DataError(f"{where}: 'labels' is not a list of integers")
    if y.size and (y.min() < 0 or y.max() >= N_CLASSES):
        raise DataError(f"{where}: labels outside 0..{N_CLASSES - 1}")
    return data, y
