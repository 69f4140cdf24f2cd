"""``kmlp dashboard`` (optuna-dashboard on the study storage) and ``kmlp report`` (files)."""

from __future__ import annotations

import argparse
import socket

from kmlp.cli.options import (
    add_artifacts,
    add_storage,
    add_study,
    host_name,
    path_text,
    whole_number,
)
from kmlp.dashboards.artifacts import existing_artifact_store
from kmlp.dashboards.errors import DashboardError
from kmlp.dashboards.report import write_report
from kmlp.dashboards.server import serve_dashboard
from kmlp.dashboards.storage_access import load_study_named, open_existing_storage
from kmlp.network.checks import writable_folder
from kmlp.storage import resolve_url
from kmlp.study.access import only_study_name


def add_dashboard_arguments(p: argparse.ArgumentParser) -> None:
    add_storage(p)
    p.add_argument(
        "--host",
        type=host_name,
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else is reachable by others)",
    )
    p.add_argument(
        "--port",
        type=whole_number(low=0, high=65535),
        default=8080,
        help="TCP port (default 8080; 0 picks a free one)",
    )
    add_artifacts(p)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    add_study(p, required=False, help="study name (default: the storage's only study)")
    p.add_argument("--out", type=path_text, required=True, help="folder to write into (created)")
    add_storage(p)
    add_artifacts(p)


def run_dashboard(args: argparse.Namespace) -> int:
    check_host(args.host)  # before the storage is opened or the artifact folder made
    url = resolve_url(args.storage)
    serve_dashboard(storage_url=url, host=args.host, port=args.port, artifacts=args.artifacts)
    return 0


def check_host(host: str) -> None:
    """DashboardError if ``host`` does not resolve to an address to listen on."""
    try:
        socket.getaddrinfo(host.strip("[]"), None)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a host name"
        raise DashboardError(f"cannot listen on host {host!r}: {reason}") from None


def run_report(args: argparse.Namespace) -> int:
    writable_folder("--out", args.out)  # before the storage is opened
    url, storage = open_existing_storage(args.storage)
    name = args.study if args.study is not None else only_study_name(storage)
    study = load_study_named(name, storage, url)
    store = existing_artifact_store(url, args.artifacts)
    written = write_report(study, out_dir=args.out, storage_url=url, artifact_store=store)
    for path in written:
        print(path)
    return 0
