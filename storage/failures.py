"""What went wrong when the study storage fails while kmlp works: one line naming it.

Optuna wraps a failed commit in ``StorageInternalError`` ("... invalid data in the commit,
e.g. exceeding max length"), which names the wrong cause when the database was simply
lost: a SQLite file deleted or moved while workers ran (SQLite then answers "attempt to
write a readonly database"), or a PostgreSQL server that went away. :func:`storage_failure`
turns such an exception into a StorageError that names the storage (password masked)
and the database's own reason.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import sqlalchemy.exc

from kmlp.storage.errors import StorageError
from kmlp.storage.urls import display_url, redact, sqlite_path


def storage_failure(
    exc: BaseException, url: str | None, *, identity: tuple[int, int] | None = None
) -> StorageError | None:
    """A StorageError saying that the storage at ``url`` failed, and why, if ``exc`` (or
    an exception it was raised from) is a database error, or the SQLite file was replaced
    since ``identity`` (``file_identity`` taken when the command started): Optuna then
    fails in other ways, assertions included. None for anything else."""
    lost = lost_file(exc, url, identity=identity)
    if lost is not None:
        return lost
    chain = _chain(exc)
    if not any(_is_database_error(e) for e in chain):
        return None
    return StorageError(f"{_where(url)} failed: {_reason(chain, url)}")


def lost_file(
    exc: BaseException, url: str | None, *, identity: tuple[int, int] | None = None
) -> StorageError | None:
    """The StorageError naming a SQLite file deleted or moved while kmlp ran, if it was
    (the file is gone, replaced since ``identity``, or SQLite said so in ``exc``)."""
    path = _sqlite_file(url)
    if path is None:
        return None
    if (
        not path.exists()
        or (identity is not None and file_identity(url) != identity)
        or any(
            getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY_DBMOVED
            for e in _chain(exc)
        )
    ):
        return StorageError(
            f"{_where(url)} was lost: its file {path} was deleted or moved while kmlp ran; "
            "trials finished before are gone with it unless the file is restored"
        )
    return None


def _where(url: str | None) -> str:
    return f"the study storage {display_url(url)}" if url else "the study storage"


def file_identity(url: str | None) -> tuple[int, int] | None:
    """(device, inode) of the SQLite file of ``url``; None if it has none (yet)."""
    path = _sqlite_file(url)
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if stat is not None else None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen) and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, (optuna.exceptions.StorageInternalError, sqlalchemy.exc.DBAPIError))


def _sqlite_file(url: str | None) -> Path | None:
    if not url:
        return None
    try:
        return sqlite_path(url)
    except StorageError:
        return None


def _reason(chain: list[BaseException], url: str | None) -> str:
    """The database driver's own words (the innermost error's first line), no password."""
    for exc in reversed(chain):  # innermost first: the driver's error
        if isinstance(exc, optuna.exceptions.StorageInternalError):
            continue
        original = getattr(exc, "orig", None) or exc
        lines = str(original).strip().splitlines()
        if lines:
            return redact(f"{lines[0]} ({type(original).__name__})", url=url)
    return type(chain[0]).__name__
