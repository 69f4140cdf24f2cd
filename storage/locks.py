"""A lock shared by every process using one study storage, for check-then-write steps.

Optuna's own writes are atomic one at a time, but kmlp must count a stage's trials and
create the next one as one step (so that a stage never exceeds its budget however many
workers race). SQLite ignores ``SELECT ... FOR UPDATE``, so the lock lives beside the
database instead:

- SQLite: ``flock`` on ``<database>.lock`` (SQLite is single-machine anyway);
- PostgreSQL: ``pg_advisory_lock`` on a dedicated connection (released by the server
  if the holder dies);
- MySQL: ``GET_LOCK``;
- anything else (e.g. in-memory SQLite): a lock within this process only.

The lock is held for milliseconds (a few queries), never while training.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy

from kmlp.storage.errors import StorageError
from kmlp.storage.urls import display_url, sqlite_path

_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def lock_key(name: str) -> int:
    """A signed 64-bit integer derived from ``name`` (PostgreSQL advisory lock key)."""
    digest = hashlib.sha256(f"kmlp:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def storage_lock(storage: optuna.storages.RDBStorage, *, name: str) -> Iterator[None]:
    """Hold the cross-process lock called ``name`` in ``storage`` for the ``with`` body.

    Blocks until the lock is free. Raises StorageError if the lock cannot be taken.
    """
    url = storage.url
    path = sqlite_path(url)
    backend_name = storage.engine.name
    if path is not None:
        with _file_lock(path.with_name(path.name + ".lock")):
            yield
    elif backend_name == "postgresql":
        with _advisory_lock(storage.engine, url, lock_key(name)):
            yield
    elif backend_name in ("mysql", "mariadb"):
        with _mysql_lock(storage.engine, url, f"kmlp:{name}"[:64]):
            yield
    else:
        with _process_lock(f"{url}#{name}"):
            yield


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        handle = open(path, "a+b")  # closed below, after unlocking
    except OSError as exc:
        raise StorageError(f"cannot create lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


@contextlib.contextmanager
def _advisory_lock(engine: sqlalchemy.Engine, url: str, key: int) -> Iterator[None]:
    try:
        connection = engine.connect()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot lock {display_url(url)}: {exc.__class__.__name__}") from None
    try:
        # Session-level lock, autocommit: Optuna's own sessions stay free to write.
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        connection.close()


@contextlib.contextmanager
def _mysql_lock(engine: sqlalchemy.Engine, url: str, name: str) -> Iterator[None]:
    with engine.connect() as connection:
        got = connection.execute(sqlalchemy.text("SELECT GET_LOCK(:n, -1)"), {"n": name}).scalar()
        if got != 1:
            raise StorageError(f"cannot lock {display_url(url)}")
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": name})


@contextlib.contextmanager
def _process_lock(key: str) -> Iterator[None]:
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.setdefault(key, threading.Lock())
    with lock:
        yield
