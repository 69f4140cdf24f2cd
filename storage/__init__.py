"""Where studies live: storage URLs, opening storages that ride out outages, locks, exports.

This package imports nothing else of kmlp.

- ``resolve_url(url)``: ``url``, else ``$KMLP_STORAGE``, else ``sqlite:///kmlp.db``.
- ``open_storage(url, heartbeat=..., create=..., read_only=...)``: an Optuna storage
  (``ResilientStorage``) on a database or, for ``grpc://HOST:PORT``, on a
  ``kmlp storage-proxy``; its calls retry through outages (``$KMLP_STORAGE_RETRY``,
  default 180 s); only ``create=True`` makes tables (``kmlp launch``); ``read_only``
  refuses every write. Workers hold one database connection each.
- ``storage_lock(storage, name=...)``: a lease lock across processes and machines, made of
  storage calls only (works through the proxy); ``lock.check()`` before each write
  raises ``LockLost`` once the lease ran out (``$KMLP_LOCK_LEASE``, default 30 s).
- ``serve_proxy(storage_url=...)``: run Optuna's gRPC storage proxy on a database.
- ``Liveness``: judging another process gone from a value it stopped renewing.
- ``write_export`` / ``read_export``: the JSON file ``kmlp export`` writes.

Errors are ``storage.errors.StorageError`` (one line, no password shown).
"""

from __future__ import annotations

from kmlp.storage.errors import LockLost, StorageError
from kmlp.storage.exportfile import read_export, write_export
from kmlp.storage.grpc_proxy import is_grpc_url, serve_proxy
from kmlp.storage.heartbeat import HeartbeatSettings
from kmlp.storage.liveness import Liveness
from kmlp.storage.locks import LeasedLock, LockSettings, is_internal_study, storage_lock
from kmlp.storage.rdb import open_storage, study_names
from kmlp.storage.resilient import ResilientStorage
from kmlp.storage.retry import RetrySettings
from kmlp.storage.urls import DEFAULT_URL, display_url, portable_url, resolve_url, sqlite_path

__all__ = [
    "DEFAULT_URL",
    "HeartbeatSettings",
    "LeasedLock",
    "Liveness",
    "LockLost",
    "LockSettings",
    "ResilientStorage",
    "RetrySettings",
    "StorageError",
    "display_url",
    "is_grpc_url",
    "is_internal_study",
    "open_storage",
    "portable_url",
    "read_export",
    "resolve_url",
    "serve_proxy",
    "sqlite_path",
    "storage_lock",
    "study_names",
    "write_export",
]
