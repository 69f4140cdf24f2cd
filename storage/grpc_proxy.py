"""Optuna's gRPC storage proxy: ``kmlp storage-proxy`` and ``--storage grpc://HOST:PORT``.

One ``kmlp storage-proxy --storage DATABASE_URL`` process serves Optuna's storage API over
gRPC (``optuna.storages.run_grpc_proxy_server``) with ``threads`` database connections;
any number of workers reach the database through it (``GrpcStorageProxy``) without
connections of their own. Both sides ride out outages: the proxy retries the database,
the workers retry the proxy (gRPC UNAVAILABLE). The budget lock works through the proxy
as through a database, being made of storage calls only (``storage.locks``). Optuna's
RDB heartbeat does not cross the proxy (Optuna does not implement it there).

The proxy creates Optuna's schema if the database has none (it fronts ``kmlp launch``);
a proxy client opened read-only refuses writes itself.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

import optuna

from kmlp.storage.errors import StorageError
from kmlp.storage.heartbeat import HeartbeatSettings
from kmlp.storage.resilient import ResilientStorage
from kmlp.storage.retry import RetrySettings
from kmlp.storage.schema import quiet_experimental
from kmlp.storage.urls import display_url

SCHEME = "grpc"
DEFAULT_PORT = 13000
DEFAULT_THREADS = 16
# Seconds open_storage waits for a proxy to answer before calling it unreachable.
CONNECT_TIMEOUT_S = 10.0


def is_grpc_url(url: str) -> bool:
    return url.lower().startswith(f"{SCHEME}://")


def grpc_address(url: str) -> tuple[str, int]:
    """(host, port) of ``grpc://HOST:PORT``; StorageError if it is anything else."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StorageError(f"malformed storage proxy URL {url!r}: {exc}") from None
    if (
        parts.scheme.lower() != SCHEME
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.username
    ):
        raise StorageError(f"malformed storage proxy URL {url!r}: expected grpc://HOST:PORT")
    return parts.hostname, port or DEFAULT_PORT


def open_grpc(
    url: str,
    *,
    read_only: bool = False,
    retry: RetrySettings | None = None,
    heartbeat: HeartbeatSettings | None = None,
) -> ResilientStorage:
    """A client of the ``kmlp storage-proxy`` at ``url``; StorageError if none answers."""
    host, port = grpc_address(url)
    try:  # a refused port fails now; gRPC would keep retrying it until the timeout
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise StorageError(
            f"no storage proxy answers at {url} ({exc.strerror or exc}); start one with: "
            f"kmlp storage-proxy --storage DATABASE_URL --port {port}"
        ) from None
    with quiet_experimental():
        proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=CONNECT_TIMEOUT_S)
    except ConnectionError:
        proxy.close()
        raise StorageError(
            f"no storage proxy answers at {url} (waited {CONNECT_TIMEOUT_S:g} s); "
            f"start one with: kmlp storage-proxy --storage DATABASE_URL --port {port}"
        ) from None
    return ResilientStorage(
        proxy,
        url=f"{SCHEME}://{host}:{port}",
        settings=retry,
        read_only=read_only,
        heartbeat=heartbeat,
    )


def serve_proxy(
    *,
    storage_url: str,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    threads: int = DEFAULT_THREADS,
    out: TextIO | None = None,
) -> None:
    """Serve the database at ``storage_url`` on ``host:port`` until Ctrl-C or SIGTERM."""
    from kmlp.storage.rdb import open_database  # rdb imports this module

    if is_grpc_url(storage_url):
        raise StorageError(
            "kmlp storage-proxy serves a database: give its URL (sqlite:///..., "
            "postgresql://...), not a grpc:// one"
        )
    _check_port(host, port)
    storage = open_database(storage_url, create=True, pool_size=threads, keep_tokens=True)
    print(
        f"kmlp storage-proxy: serving {display_url(storage.url)} at {SCHEME}://{host}:{port} "
        f"({threads} threads); workers use --storage {SCHEME}://{host}:{port}; Ctrl-C stops",
        file=out or sys.stdout,
        flush=True,
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    with quiet_experimental():
        optuna.storages.run_grpc_proxy_server(
            storage, host=host, port=port, thread_pool=ThreadPoolExecutor(max_workers=threads)
        )


def _check_port(host: str, port: int) -> None:
    """StorageError now if ``host:port`` cannot be listened on (gRPC would say it later)."""
    try:
        with socket.create_server((host, port), reuse_port=False):
            pass
    except OSError as exc:
        raise StorageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
