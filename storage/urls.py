"""Storage URLs: the default, the environment override, and safe display.

kmlp stores studies in any SQLAlchemy URL Optuna accepts. SQLite (the default,
``sqlite:///kmlp.db`` in the working folder) suits one machine; PostgreSQL suits
workers on several machines. A plain ``postgresql://`` URL means psycopg 3 (SQLAlchemy
2.1's default driver, a kmlp dependency), so the same URL works in kmlp, Optuna's CLI,
``optuna.load_study`` and optuna-dashboard; ``postgresql+psycopg2://`` works where
psycopg2 is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy.engine
import sqlalchemy.exc

from kmlp.storage.errors import StorageError

DEFAULT_URL = "sqlite:///kmlp.db"
ENV_VAR = "KMLP_STORAGE"

# Seconds a SQLite connection waits for a lock before "database is locked"; several
# workers and a dashboard share one file, and a commit can wait behind another's.
SQLITE_BUSY_TIMEOUT_S = 60.0
# Seconds to wait for a PostgreSQL/MySQL server before calling it unreachable.
CONNECT_TIMEOUT_S = 10


def resolve_url(url: str | None = None) -> str:
    """The storage URL to use: ``url`` if given, else ``$KMLP_STORAGE``, else the default."""
    if url:
        return url
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def parse_url(url: str) -> sqlalchemy.engine.URL:
    """Parse ``url``; raise StorageError (naming the URL without password) if malformed."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise StorageError(f"malformed storage URL {url!r}: {exc}") from None
    return parsed


def backend(url: str) -> str:
    """The database backend of ``url``: 'sqlite', 'postgresql', 'mysql', ..."""
    return parse_url(url).get_backend_name()


def display_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    try:
        return parse_url(url).render_as_string(hide_password=True)
    except StorageError:
        return url


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, absolute; None for in-memory or other backends."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def portable_url(url: str) -> str:
    """``url`` made independent of the working folder and free of passwords.

    SQLite paths become absolute; a password is dropped (the reader supplies it
    through the URL again or ``~/.pgpass``). Used in export files.
    """
    parsed = parse_url(url)
    path = sqlite_path(url)
    if path is not None:
        parsed = parsed.set(database=str(path))
    if parsed.password is not None:
        parsed = parsed._replace(password=None)  # URL.set() treats None as "unchanged"
    return parsed.render_as_string(hide_password=False)


def engine_kwargs(url: str) -> dict:
    """SQLAlchemy ``create_engine`` keyword arguments suited to the backend of ``url``."""
    name = backend(url)
    if name == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if name == "postgresql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    if name == "mysql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}
