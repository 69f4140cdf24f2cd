"""Real databases and storage processes for tests: PostgreSQL databases of our own, the proxy.

- ``PG_URL`` / ``needs_pg``: the PostgreSQL from ``$KMLP_TEST_POSTGRES_URL`` (skip without).
- ``fresh_postgres_database()``: a uniquely named, empty database, dropped afterwards.
- ``storage_proxy(url)``: a running ``kmlp storage-proxy`` on a free port; yields its
  ``grpc://`` URL and stops it afterwards.
- ``spawn(*args)``: a ``python -m tests.helpers.storage_procs ...`` process (see there).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("KMLP_TEST_POSTGRES_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="set KMLP_TEST_POSTGRES_URL to a PostgreSQL URL")


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child python that imports kmlp and tests.helpers."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m tests.helpers.storage_procs ARGS`` (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.storage_procs", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(**(env or {})),
        cwd=ROOT,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate()`` every 50 ms until true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """URL of a new empty PostgreSQL database (unique name), dropped on exit."""
    assert PG_URL
    base = sqlalchemy.engine.make_url(PG_URL)
    name = f"kmlp_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(
        base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextlib.contextmanager
def storage_proxy(
    storage_url: str, *, threads: int = 8, port: int | None = None, err: list[str] | None = None
) -> Iterator[str]:
    """Run ``kmlp storage-proxy`` on ``storage_url``; yields ``grpc://127.0.0.1:PORT``.

    ``err``, if given, receives the proxy's stderr lines once it has stopped.
    """
    port = port or free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "kmlp", "storage-proxy", "--storage", storage_url),
            *("--port", str(port), "--threads", str(threads)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the database is open
        assert "serving" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        wait_for(lambda: _listening(port), 30, "the storage proxy's port")
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if err is not None and proc.stderr is not None:
            err.extend(proc.stderr.read().splitlines())


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
