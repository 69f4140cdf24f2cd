"""Options that several commands share, each declared once here.

``--study``, ``--storage``, ``--artifacts``, ``--blas-threads`` and ``--json`` mean the
same on every command that takes them; commands call these functions rather than
declaring the options again (the way sqlite-utils groups its shared options).
"""

from __future__ import annotations

import argparse

from kmlp.network import DEFAULT_BLAS_THREADS
from kmlp.storage import DEFAULT_URL

STORAGE_HELP = f"study storage URL (default: $KMLP_STORAGE, else {DEFAULT_URL})"
ARTIFACTS_HELP = (
    "artifact store for trial curves and figures: a folder or s3://bucket/prefix "
    "(default: $KMLP_ARTIFACTS, else '<db name>-artifacts' beside the SQLite file, "
    "else ./kmlp-artifacts)"
)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 1")
    return value


def add_study(
    parser: argparse.ArgumentParser, *, required: bool = True, help: str = "study name"
) -> None:
    """``--study NAME``."""
    parser.add_argument("--study", required=required, metavar="NAME", help=help)


def add_storage(parser: argparse.ArgumentParser, *, help: str = STORAGE_HELP) -> None:
    """``--storage URL``."""
    parser.add_argument("--storage", default=None, metavar="URL", help=help)


def add_artifacts(parser: argparse.ArgumentParser) -> None:
    """``--artifacts PLACE``: where trials' curves and the study's figures are kept."""
    parser.add_argument("--artifacts", default=None, metavar="PLACE", help=ARTIFACTS_HELP)


def add_blas_threads(
    parser: argparse.ArgumentParser,
    *,
    default: int | None = DEFAULT_BLAS_THREADS,
    help: str | None = None,
) -> None:
    """``--blas-threads N``: BLAS threads per training process."""
    parser.add_argument(
        "--blas-threads",
        type=positive_int,
        default=default,
        metavar="N",
        help=help
        or f"BLAS threads per training process (default {default}: parallelism comes from "
        "worker processes; on a busy 2-core machine 2 threads ran 4-6x slower than 1)",
    )


def add_json(parser: argparse.ArgumentParser, *, what: str = "the result") -> None:
    """``--json``: print one JSON object instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as one JSON object")
