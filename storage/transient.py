"""Which storage errors are an outage (wait and retry) and which are real (report them).

An outage is a database or storage proxy that cannot be reached for now: a refused or
reset connection, a server shutting down or starting up, too many clients, a deadlock
or serialization failure (the transaction was rolled back), SQLite's "database is
locked", gRPC's UNAVAILABLE. Everything else (a wrong password, a missing database, a
constraint, a bug) is reported at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import sqlalchemy.exc

# PostgreSQL SQLSTATEs that mean "try again": class 08 (connection exception) is matched
# by prefix; 40001 serialization failure, 40P01 deadlock, 53300 too many connections,
# 57P01-57P03 admin/crash shutdown and "the database system is starting up".
_PG_TRANSIENT = {"40001", "40P01", "53300", "57P01", "57P02", "57P03"}
# MySQL/MariaDB client and server error numbers: 1040 too many connections, 1205 lock
# wait timeout, 1213 deadlock, 2002/2003 cannot connect, 2006 gone away, 2013 lost.
_MYSQL_TRANSIENT = {1040, 1205, 1213, 2002, 2003, 2006, 2013}
# libpq reports a server's refusal at connection time as text ("FATAL:  ...") without a
# SQLSTATE; these refusals pass, the others (no such database or role, bad password) stay.
_PG_FATAL_TRANSIENT = (
    "too many clients",
    "remaining connection slots",
    "starting up",
    "shutting down",
    "in recovery",
    "not yet accepting connections",
    "administrator command",
    "terminating connection",
)


# Phrases of drivers' messages for a lost or refused connection (for log records only,
# where the exception object is gone).
_DISCONNECT_PHRASES = (
    "server closed the connection",
    "connection failed",
    "consuming input failed",
    "terminating connection",
    "connection refused",
    "could not connect",
    "the connection is closed",
    "connection is lost",
    "lost connection",
    "gone away",
    "database is locked",
)


class _OutageLogFilter(logging.Filter):
    """Drops Optuna's "Caught an error from sqlalchemy ... Falling back" warning when the
    error was a lost connection: the fallback query fails the same way and the outage is
    then announced once, in one line, by ``storage.retry``."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith("Caught an error from sqlalchemy"):
            return True
        lowered = text.lower()
        return not any(phrase in lowered for phrase in _DISCONNECT_PHRASES)


_FILTER = _OutageLogFilter()


def quiet_outage_logs() -> None:
    """Install the filter on Optuna's RDB storage logger (once per process)."""
    logger = logging.getLogger("optuna.storages._rdb.storage")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def describe(exc: BaseException) -> str:
    """The first line of the most specific message in ``exc`` (the driver's, if any)."""
    for e in _chain(exc):
        orig = getattr(e, "orig", None)
        if orig is not None:
            return _first_line(orig)
        if isinstance(e, sqlalchemy.exc.SQLAlchemyError) or _is_grpc_error(e):
            return _first_line(e)
    return _first_line(exc)


def transient_reason(exc: BaseException) -> str | None:
    """A short reason if ``exc`` means the storage is unreachable for now; None otherwise."""
    for e in _chain(exc):
        if isinstance(e, sqlalchemy.exc.TimeoutError):
            return "no free database connection"
        if isinstance(e, sqlalchemy.exc.DBAPIError):
            if e.connection_invalidated or _driver_transient(e.orig):
                return describe(e)
        if _is_grpc_error(e) and _grpc_transient(e):
            return _grpc_details(e)
    return None


def grpc_failure(exc: BaseException) -> str | None:
    """The details of ``exc`` if it is a raw gRPC error (e.g. the proxy gave up), else None.

    Optuna's client turns the codes it knows into KeyError etc. (the RpcError as their
    cause); those are not failures.
    """
    return _grpc_details(exc) if _is_grpc_error(exc) else None


def _driver_transient(orig: BaseException | None) -> bool:
    if orig is None:
        return False
    module = type(orig).__module__.split(".")[0]
    name = type(orig).__name__
    if module in ("psycopg", "psycopg2"):
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if name in ("OperationalError", "InterfaceError") and state is None:
            # The client lost (or never got) the connection, unless the server refused it.
            text = str(orig)
            return "FATAL:" not in text or any(p in text for p in _PG_FATAL_TRANSIENT)
        return state is not None and (state[:2] == "08" or state in _PG_TRANSIENT)
    if module == "sqlite3":
        text = str(orig).lower()
        return name == "OperationalError" and ("database is locked" in text or "is locked" in text)
    if module in ("pymysql", "MySQLdb", "mysql"):
        code = orig.args[0] if orig.args else None
        return code in _MYSQL_TRANSIENT
    return False


def _is_grpc_error(exc: BaseException) -> bool:
    try:
        import grpc
    except ImportError:
        return False
    return isinstance(exc, grpc.RpcError) and hasattr(exc, "code")


def _grpc_transient(exc: BaseException) -> bool:
    import grpc

    code = exc.code()  # type: ignore[attr-defined]
    return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


def _grpc_details(exc: BaseException) -> str:
    details = exc.details() if hasattr(exc, "details") else None  # type: ignore[attr-defined]
    text = str(details or exc.code()).strip()  # type: ignore[attr-defined]
    # The servicer wraps a server-side exception as "Exception calling application: ...".
    text = text.removeprefix("Exception calling application: ")
    return text.splitlines()[0] if text else "gRPC error"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if text.startswith("(") and ") " in text:  # "(psycopg.OperationalError) connection failed..."
        text = text.split(") ", 1)[1]
    line = text.splitlines()[0].strip() if text else ""
    return line or type(exc).__name__
