"""Opening the study storage: a database (SQLite, PostgreSQL, MySQL) or a gRPC storage proxy.

``open_storage(url)`` returns a ``ResilientStorage`` (an Optuna storage; pass it to
``optuna.create_study`` / ``load_study``) whose calls ride out outages. Three modes:

- ``create=True`` (``kmlp launch``, the storage proxy): Optuna's tables are created if
  missing, safely when several processes start at once (``storage.schema``).
- ``create=False`` (``worker``, ``dashboard``, retrain's recording): the database must
  already be a study storage; another application's database, an empty or missing file,
  or a file that is not a database is refused in one line and left byte-identical.
- ``read_only=True`` (``studies``, ``show``, ``export``, ``report``): as ``create=False``,
  and every write is refused (by the wrapper, and by the connection: SQLite
  ``PRAGMA query_only``, PostgreSQL ``default_transaction_read_only``).

Lean connections: on PostgreSQL and MySQL a storage keeps at most ``pool_size``
connections (default 1: ``pool_size=1, max_overflow=0``), shared by every thread of the
process (the worker loop, the trial heartbeat, the lock's renewal): each call takes the
connection for one transaction and gives it back. So a worker process holds one
database connection, and PostgreSQL's default ``max_connections = 100`` (of which 3 are
reserved for superusers) takes 97 workers connecting as an ordinary role, fewer what
else connects (a dashboard takes one). Beyond that, put ``kmlp storage-proxy`` in front:
its ``--threads`` connections serve any number of workers. PostgreSQL connections also
get TCP keepalives and ``tcp_user_timeout`` so that a dead network is noticed within
about 10-20 s rather than the kernel's 15 minutes.
"""

from __future__ import annotations

from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.exceptions import StorageInternalError

from kmlp.storage.errors import StorageError
from kmlp.storage.grpc_proxy import is_grpc_url, open_grpc
from kmlp.storage.heartbeat import HeartbeatSettings
from kmlp.storage.locks import is_internal_study
from kmlp.storage.resilient import ResilientStorage
from kmlp.storage.retry import RetrySettings
from kmlp.storage.schema import check_version, create_schema, quiet_experimental, require_schema
from kmlp.storage.transient import describe, quiet_outage_logs
from kmlp.storage.urls import (
    backend,
    display_url,
    engine_kwargs,
    parse_url,
    redact,
    resolve_url,
    sqlite_path,
)

# libpq settings for PostgreSQL connections (URL query parameters override them). With
# tcp_user_timeout, data the server has not acknowledged for 10 s drops the connection,
# which keeps a lock holder's late write within half the lock's default 30 s lease.
PG_CONNECT_ARGS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    "application_name": "kmlp",
}
# Seconds a thread waits for the process's one pooled connection before retrying.
POOL_TIMEOUT_S = 60


def open_storage(
    url: str | None = None,
    *,
    heartbeat: HeartbeatSettings | None = None,
    create: bool = True,
    read_only: bool = False,
    pool_size: int = 1,
    retry: RetrySettings | None = None,
) -> ResilientStorage:
    """Open the study storage at ``url`` (default: see ``storage.urls.resolve_url``).

    ``url`` is a SQLAlchemy URL or ``grpc://HOST:PORT`` (a ``kmlp storage-proxy``). With
    ``heartbeat`` set (workers, on a database), running trials record heartbeats and a
    stale trial is failed and re-queued (``RetryHeartbeatStaleTrialCallback``, up to
    ``max_retry`` times). See the module docstring for ``create`` and ``read_only``.

    Raises StorageError, one line, if the URL is malformed, its driver is missing, the
    database cannot be reached or is not a study storage (when not creating); nothing
    stored is touched. Opening does not wait out outages; calls on the storage do.
    """
    url = resolve_url(url)
    if is_grpc_url(url):
        return open_grpc(url, read_only=read_only, retry=retry, heartbeat=heartbeat)
    return open_database(
        url,
        heartbeat=heartbeat,
        create=create and not read_only,
        read_only=read_only,
        pool_size=pool_size,
        retry=retry,
    )


def open_database(
    url: str,
    *,
    heartbeat: HeartbeatSettings | None = None,
    create: bool,
    read_only: bool = False,
    pool_size: int = 1,
    retry: RetrySettings | None = None,
    keep_tokens: bool = False,
) -> ResilientStorage:
    """``open_storage`` for a SQLAlchemy URL; ``keep_tokens`` for the proxy server."""
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise StorageError(f"cannot open {display_url(url)}: folder {path.parent} does not exist")
    if path is not None and not create and not path.is_file():
        raise StorageError(f"no study storage at {display_url(url)} ({path} does not exist)")
    in_memory = path is None and backend(url) == "sqlite"
    quiet_outage_logs()
    hb: dict[str, Any] = {}
    if heartbeat is not None:
        hb = {
            "heartbeat_interval": heartbeat.interval,
            "grace_period": heartbeat.grace_period,
            "heartbeat_stale_trial_callback": _retry_callback(heartbeat.max_retry),
        }
    try:
        with quiet_experimental():
            if in_memory:  # one process, nothing to race or protect
                rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), **hb)
            else:
                (create_schema if create else require_schema)(url, engine_kwargs(url))
                rdb = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=lean_engine_kwargs(url, pool_size=pool_size, read_only=read_only),
                    skip_compatibility_check=True,  # checked below, without nesting connections
                    skip_table_creation=True,
                    **hb,
                )
                check_version(rdb, url)
    except (sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise StorageError(
            f"cannot open {display_url(url)}: no database driver for "
            f"{backend(url)!r} ({redact(describe(exc), url=url)})"
        ) from None
    except (
        sqlalchemy.exc.SQLAlchemyError,
        StorageInternalError,
        ValueError,
        RuntimeError,
        OSError,
    ) as exc:
        raise StorageError(
            f"cannot open {display_url(url)}: {redact(describe(exc), url=url)}"
        ) from None
    if read_only and backend(url) == "sqlite":
        _sqlite_query_only(rdb.engine)
    # Optuna wraps an RDBStorage in its cache of finished trials when create_study is given
    # one; kmlp's wrapper is not an RDBStorage, so it asks for that cache itself.
    cached = optuna.storages.get_storage(rdb)
    return ResilientStorage(
        cached,
        url=rdb.url,
        rdb=rdb,
        settings=retry,
        read_only=read_only,
        keep_tokens=keep_tokens,
        heartbeat=heartbeat,
    )


def lean_engine_kwargs(url: str, *, pool_size: int = 1, read_only: bool = False) -> dict:
    """``create_engine`` arguments: kmlp's per-backend ones plus a pool of ``pool_size``."""
    kwargs = engine_kwargs(url)
    kwargs["connect_args"] = dict(kwargs.get("connect_args", {}))
    name = backend(url)
    if name in ("postgresql", "mysql"):
        kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=POOL_TIMEOUT_S)
    if name == "postgresql":
        query = parse_url(url).query
        for key, value in PG_CONNECT_ARGS.items():
            if key not in query:
                kwargs["connect_args"][key] = value
        if read_only:
            options = str(query.get("options", ""))
            kwargs["connect_args"]["options"] = (
                f"{options} -c default_transaction_read_only=on".strip()
            )
    return kwargs


def _sqlite_query_only(engine: sqlalchemy.Engine) -> None:
    """Every later SQLite connection of ``engine`` refuses writes."""
    engine.dispose()  # connections opened while constructing lack the pragma

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    sqlalchemy.event.listen(engine, "connect", on_connect)


def _retry_callback(max_retry: int) -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    with quiet_experimental():
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """Names of the studies in ``storage``, in creation order (kmlp's internal ones hidden)."""
    return [s.study_name for s in storage.get_all_studies() if not is_internal_study(s.study_name)]
