"""Serve optuna-dashboard on a study storage, with kmlp's artifact store.

The dashboard only reads while people browse (writes happen only when someone edits a note or
deletes something in the web page). It opens SQLite with the same busy timeout as the workers,
so that neither side fails with "database is locked" while the other holds the file briefly.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from socketserver import ThreadingMixIn
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from kmlp.dashboards.artifacts import artifact_store_for, artifacts_location
from kmlp.dashboards.errors import DashboardError
from kmlp.dashboards.storage_access import open_existing_storage
from kmlp.storage import display_url


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """wsgiref server answering requests in threads (the web page fetches several at once)."""

    daemon_threads = True


class _IPv6ThreadingServer(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not log every request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def bind_dashboard(*, storage_url: str, host: str, port: int, artifacts: str | None) -> WSGIServer:
    """Open the storage, build the dashboard app and bind its port (not yet serving).

    Args:
        storage_url: SQLAlchemy URL of the study storage.
        host: address to listen on; port: TCP port (0 picks a free one).
        artifacts: ``--artifacts`` value (see :func:`dashboards.artifacts.artifact_store_for`),
            resolved once the storage is known to exist so that a typo creates no folder.

    Returns:
        A bound server; call ``serve_forever()``; ``server.server_port`` is the port.

    Raises:
        DashboardError: storage unreachable or not an Optuna storage; port in use or not allowed;
            host not resolvable.
    """
    import optuna_dashboard

    if not 0 <= port <= 65535:
        raise DashboardError(f"port {port} is out of range 0..65535")
    _, storage = open_existing_storage(storage_url)
    artifact_store = artifact_store_for(storage_url, artifacts)
    app = optuna_dashboard.wsgi(storage, artifact_store=artifact_store)
    server_class = _IPv6ThreadingServer if ":" in host else _ThreadingServer
    try:
        return make_server(
            host.strip("[]"), port, app, server_class=server_class, handler_class=_QuietHandler
        )
    except socket.gaierror as exc:
        raise DashboardError(f"cannot listen on host {host!r}: {exc.strerror}") from exc
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DashboardError(
                f"port {port} on {host} is already in use; choose another with --port"
            ) from exc
        if exc.errno == errno.EACCES:
            raise DashboardError(f"not allowed to listen on port {port} of {host}") from exc
        raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def serve_dashboard(
    *,
    storage_url: str,
    host: str,
    port: int,
    artifacts: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Run the dashboard until interrupted (Ctrl-C returns normally).

    Prints one line with the URL to ``out`` (stdout by default), and one warning line to stderr
    when ``host`` is reachable from other machines (the dashboard has no login and can delete).
    """
    out = out or sys.stdout
    server = bind_dashboard(storage_url=storage_url, host=host, port=port, artifacts=artifacts)
    if not is_loopback(host):
        print(
            f"kmlp: warning: the dashboard listens on {host}, reachable from other machines; "
            "it has no login and lets anyone edit or delete studies",
            file=sys.stderr,
        )
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    where = f" (artifacts: {artifacts_location(storage_url, artifacts)})"
    print(
        f"kmlp dashboard: http://{shown}:{server.server_port}/dashboard/ on "
        f"{display_url(storage_url)}{where}; Ctrl-C stops",
        file=out,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
