"""Optuna's tables in a database: looking without writing, and creating them safely.

- ``require_schema(url)``: for commands that only read or join: the database must already
  hold Optuna's complete schema; anything else (another application's database, an empty
  file, a file that is not a database) is one StorageError line and is left untouched.
  SQLite is looked at through ``sqlite3`` in read-only mode (``mode=ro``), so the file
  cannot change; servers through a throwaway connection that only SELECTs.
- ``create_schema(url)``: for ``kmlp launch`` and the storage proxy. Optuna creates its
  tables with "look, then CREATE", so processes starting together on an empty database
  race (SQLite: ``UNIQUE constraint failed: alembic_version.version_num``; PostgreSQL:
  ``duplicate key value violates unique constraint "pg_type_typname_nsp_index"``). Each
  loser's step fails without harm (a whole transaction on PostgreSQL; one statement on
  SQLite), so creation is retried, up to 10 times with growing random pauses, until the
  schema is complete; errors other than such races are raised at once.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.exceptions import StorageInternalError

# Optuna's table list is not public; its models module is the one source of it (12 tables,
# plus alembic's version table). Used only to recognise an Optuna database.
from optuna.storages._rdb import models as _optuna_models

from kmlp.storage.errors import StorageError
from kmlp.storage.transient import describe
from kmlp.storage.urls import SQLITE_BUSY_TIMEOUT_S, display_url, sqlite_path

VERSION_TABLES = ("version_info", "alembic_version")
OPTUNA_TABLES = frozenset(_optuna_models.BaseModel.metadata.tables) | {"alembic_version"}
_CREATE_ATTEMPTS = 10
_RACE_WORDS = ("already exists", "duplicate", "unique constraint", "deadlock", "is locked")


@dataclass(frozen=True)
class Schema:
    """What a database holds: Optuna's tables found, and its version rows."""

    tables: frozenset[str]
    version_rows: int  # rows in version_info and alembic_version together (complete: 2)

    @property
    def missing(self) -> frozenset[str]:
        return OPTUNA_TABLES - self.tables

    @property
    def complete(self) -> bool:
        return not self.missing and self.version_rows >= len(VERSION_TABLES)


def inspect_schema(url: str, engine_kwargs: dict | None = None) -> Schema | None:
    """Optuna's schema in ``url``'s database, read without writing; None for no SQLite file.

    Raises StorageError if the file is not a SQLite database.
    """
    path = sqlite_path(url)
    if path is not None:
        return _inspect_sqlite_file(url, path)
    kwargs = {**(engine_kwargs or {}), "poolclass": sqlalchemy.pool.NullPool}
    kwargs.pop("pool_pre_ping", None)
    engine = sqlalchemy.create_engine(url, **kwargs)
    try:
        with engine.connect() as connection:
            tables = frozenset(sqlalchemy.inspect(connection).get_table_names()) & OPTUNA_TABLES
            rows = sum(
                int(connection.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() or 0) > 0
                for t in VERSION_TABLES
                if t in tables
            )
            connection.rollback()
    finally:
        engine.dispose()
    return Schema(tables, rows)


def _inspect_sqlite_file(url: str, path: Path) -> Schema | None:
    if not path.exists():
        return None
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {display_url(url)}: {exc}") from None
    try:
        names = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        tables = frozenset(names) & OPTUNA_TABLES
        rows = sum(
            connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] > 0
            for t in VERSION_TABLES
            if t in tables
        )
    except sqlite3.DatabaseError as exc:
        raise StorageError(
            f"{display_url(url)} is not a study storage: {path} is not a SQLite database ({exc})"
        ) from None
    finally:
        connection.close()
    return Schema(tables, rows)


def require_schema(url: str, engine_kwargs: dict | None = None) -> None:
    """StorageError (one line) unless ``url``'s database holds Optuna's complete schema."""
    schema = inspect_schema(url, engine_kwargs)
    where = display_url(url)
    if schema is None:
        raise StorageError(f"no study storage at {where} (the file does not exist)")
    if not schema.tables:
        raise StorageError(
            f"{where} holds no study storage (no Optuna tables): not a kmlp database; "
            f"only 'kmlp launch' creates one"
        )
    if not schema.complete:
        missing = ", ".join(sorted(schema.missing)) or "its version rows"
        raise StorageError(f"{where} holds an incomplete Optuna schema (missing {missing})")


def create_schema(url: str, engine_kwargs: dict | None = None) -> None:
    """Create Optuna's schema in ``url``'s database unless complete; safe to race."""
    kwargs = {**(engine_kwargs or {}), "poolclass": sqlalchemy.pool.NullPool}
    for attempt in range(_CREATE_ATTEMPTS):
        schema = inspect_schema(url, engine_kwargs)
        if schema is not None and schema.complete:
            return
        try:
            with quiet_experimental():
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, skip_compatibility_check=True
                )
            storage.engine.dispose()
            return
        except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError) as exc:
            if attempt == _CREATE_ATTEMPTS - 1 or not _is_creation_race(exc):
                raise
            time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))


def check_version(storage: optuna.storages.RDBStorage, url: str) -> None:
    """StorageError if the schema's version is not the one this Optuna uses."""
    current, head = storage.get_current_version(), storage.get_head_version()
    if current == head:
        return
    if current in storage.get_all_versions():
        hint = f"upgrade it with: optuna storage upgrade --storage '{display_url(url)}'"
    else:
        hint = "it was made by a newer Optuna; upgrade optuna"
    raise StorageError(
        f"{display_url(url)} has Optuna schema version {current}, this Optuna uses {head}: {hint}"
    )


def _is_creation_race(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, sqlalchemy.exc.IntegrityError):
            return True
        cause = cause.__cause__
    text = describe(exc).lower()
    return any(word in text for word in _RACE_WORDS)


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning (heartbeat, gRPC proxy) for one block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
