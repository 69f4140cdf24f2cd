"""``kmlp dashboard`` (optuna-dashboard on the study storage) and ``kmlp report`` (files)."""

from __future__ import annotations

import argparse

from dashboards.artifacts import ARTIFACTS_ENV, existing_artifact_store
from dashboards.report import write_report
from dashboards.server import serve_dashboard
from dashboards.storage_access import load_study_named, open_existing_storage
from storage import DEFAULT_URL, resolve_url

_STORAGE_HELP = f"study storage URL (default: $KMLP_STORAGE, else {DEFAULT_URL})"
ARTIFACTS_HELP = (
    f"artifact store: a folder or s3://bucket/prefix (default: ${ARTIFACTS_ENV}, else a folder "
    "'<db name>-artifacts' beside the SQLite file, else ./kmlp-artifacts)"
)


def add_artifacts_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--artifacts`` (for ``launch`` / ``worker``: where trials upload their curves)."""
    parser.add_argument("--artifacts", default=None, help=ARTIFACTS_HELP)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dashboard`` and ``report`` subcommands."""
    p = subparsers.add_parser(
        "dashboard",
        help="browse studies in optuna-dashboard (curves, search figure, notes)",
        description="Serve optuna-dashboard on the study storage and kmlp's artifact store.",
    )
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else is reachable by others)",
    )
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    add_artifacts_arg(p)
    p.set_defaults(func=run_dashboard)

    r = subparsers.add_parser(
        "report",
        help="write a study's search figure (PNG, HTML), curves and summary to a folder",
        description="Write the search figure as PNG and interactive HTML, the best trial's "
        "curves and a markdown summary.",
    )
    r.add_argument("--study", required=True, help="study name")
    r.add_argument("--out", required=True, help="folder to write into (created)")
    r.add_argument("--storage", default=None, help=_STORAGE_HELP)
    add_artifacts_arg(r)
    r.set_defaults(func=run_report)


def run_dashboard(args: argparse.Namespace) -> int:
    url = resolve_url(args.storage)
    serve_dashboard(storage_url=url, host=args.host, port=args.port, artifacts=args.artifacts)
    return 0


def run_report(args: argparse.Namespace) -> int:
    url, storage = open_existing_storage(args.storage)
    study = load_study_named(args.study, storage, url)
    store = existing_artifact_store(url, args.artifacts)
    written = write_report(study, out_dir=args.out, storage_url=url, artifact_store=store)
    for path in written:
        print(path)
    return 0
