"""``kmlp storage-proxy``: Optuna's gRPC storage proxy in front of the study database."""

from __future__ import annotations

import argparse

from kmlp.cli.options import add_storage, positive_int
from kmlp.storage import serve_proxy
from kmlp.storage.grpc_proxy import DEFAULT_PORT, DEFAULT_THREADS


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is at most 65535")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_storage(
        parser,
        help="the study database to serve, a SQLAlchemy URL (default: $KMLP_STORAGE, else "
        "sqlite:///kmlp.db); its Optuna tables are created if missing",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 serves other machines; "
        "the proxy has no authentication: expose it on a trusted network only)",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=DEFAULT_THREADS,
        metavar="N",
        help=f"requests served at once, and database connections held (default {DEFAULT_THREADS})",
    )


def run(args: argparse.Namespace) -> int:
    serve_proxy(storage_url=args.storage, host=args.host, port=args.port, threads=args.threads)
    return 0
