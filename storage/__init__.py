"""Where studies live: storage URLs, opening Optuna RDB storages, locks and export files.

This package imports nothing else of kmlp.

- ``resolve_url(url)``: ``url``, else ``$KMLP_STORAGE``, else ``sqlite:///kmlp.db``.
- ``open_storage(url, heartbeat=...)``: an ``optuna.storages.RDBStorage`` with a SQLite
  busy timeout (60 s) or a connect timeout, and, for workers, heartbeats whose stale
  trials are failed and re-queued (``HeartbeatSettings``; ``$KMLP_HEARTBEAT_INTERVAL``,
  ``$KMLP_HEARTBEAT_GRACE``).
- ``storage_lock(storage, name=...)``: a lock across processes and machines.
- ``write_export`` / ``read_export``: the JSON file ``kmlp export`` writes.

Errors are ``storage.errors.StorageError`` (one line, no password shown).
"""

from __future__ import annotations

from kmlp.storage.errors import StorageError
from kmlp.storage.exportfile import read_export, write_export
from kmlp.storage.heartbeat import HeartbeatSettings
from kmlp.storage.locks import storage_lock
from kmlp.storage.rdb import open_storage, study_names
from kmlp.storage.urls import DEFAULT_URL, display_url, portable_url, resolve_url, sqlite_path

__all__ = [
    "DEFAULT_URL",
    "HeartbeatSettings",
    "StorageError",
    "display_url",
    "open_storage",
    "portable_url",
    "read_export",
    "resolve_url",
    "sqlite_path",
    "storage_lock",
    "study_names",
    "write_export",
]
