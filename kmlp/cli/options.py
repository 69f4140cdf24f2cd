"""Options that several commands share, each declared once here.

``--study``, ``--storage``, ``--artifacts``, ``--blas-threads``, ``--lockstep`` and
``--json`` mean the same on every command that takes them; commands call these functions
rather than declaring the options again (the way sqlite-utils groups its shared options).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from kmlp.network import DEFAULT_BLAS_THREADS
from kmlp.network.checks import MAX_COUNT, bound_text, show
from kmlp.network.errors import ConfigError
from kmlp.network.threads import check_blas_threads
from kmlp.storage import DEFAULT_URL, display_url

STORAGE_HELP = f"study storage URL (default: $KMLP_STORAGE, else {DEFAULT_URL})"
ARTIFACTS_HELP = (
    "artifact store for trial curves and figures: a folder or s3://bucket/prefix "
    "(default: $KMLP_ARTIFACTS, else '<db name>-artifacts' beside the SQLite file, "
    "else ./kmlp-artifacts)"
)
# Optuna keeps study names in a 512-character column; a name is typed and printed.
MAX_STUDY_NAME = 200


def whole_number(*, low: int, high: int = MAX_COUNT) -> Callable[[str], int]:
    """argparse type: a whole number in [low, high] (no floats; a refused value is echoed
    shortened, never a 5000-digit line)."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):  # ASCII digits: no 1.5, 1e3, ١٢
            raise argparse.ArgumentTypeError(f"{show(text)} is not a whole number")
        if len(text.strip()) > 100:  # int() refuses beyond 4300 digits; no count needs 100
            raise argparse.ArgumentTypeError(f"{show(text)}: must be <= {bound_text(high)}")
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{show(text)}: must be >= {low}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{show(text)}: must be <= {bound_text(high)}")
        return value

    return parse


positive_int = whole_number(low=1)


def blas_threads_number(text: str) -> int:
    """argparse type: BLAS threads, 1 to the cores this process may use."""
    threads = positive_int(text)
    try:
        return check_blas_threads(threads)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def study_name(text: str) -> str:
    """argparse type: a study name people can type and read back: 1 to 200 printable
    characters (any language, spaces, quotes and shell metacharacters are fine: printed
    commands quote them), not blank, no leading or trailing space."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a study needs a non-empty name")
    if len(text) > MAX_STUDY_NAME:
        raise argparse.ArgumentTypeError(
            f"{show(text)}: a study name has at most {MAX_STUDY_NAME} characters"
        )
    if not text.isprintable():  # newlines, NUL, ANSI escapes, bidirectional overrides
        raise argparse.ArgumentTypeError(
            f"{show(text)}: a study name cannot hold control or invisible characters"
        )
    if text != text.strip():
        raise argparse.ArgumentTypeError(
            f"{show(text)}: a study name cannot start or end with a space"
        )
    return text


def nonempty_text(
    what: str, *, limit: int = 4096, shown: Callable[[str], str] = show
) -> Callable[[str], str]:
    """argparse type: text that is not empty, has no NUL or line break, and is at most
    ``limit`` characters (paths, URLs, host names); a refused one is echoed through
    ``shown`` (``display_url`` for storage URLs: masked before it is shortened)."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"an empty {what}")
        if len(text) > limit:
            raise argparse.ArgumentTypeError(f"{shown(text)}: a {what} that long is a mistake")
        if any(c in text for c in "\0\n\r"):
            raise argparse.ArgumentTypeError(f"{shown(text)}: a {what} cannot hold NUL or newlines")
        return text

    return parse


def host_name(text: str) -> str:
    """argparse type: a host name or IP address to listen on: not empty (that would mean
    every interface), no spaces or control characters, at most 253 characters."""
    if not text:
        raise argparse.ArgumentTypeError(
            "an empty host (give 127.0.0.1 for this machine, 0.0.0.0 for every interface)"
        )
    if len(text) > 253 or not text.isprintable() or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"{show(text)} is not a host name or address")
    return text


# Paths: not empty, no NUL or newline; their length is left to the system to refuse.
path_text = nonempty_text("path", limit=1_000_000)


def add_study(
    parser: argparse.ArgumentParser, *, required: bool = True, help: str = "study name"
) -> None:
    """``--study NAME``."""
    parser.add_argument("--study", type=study_name, required=required, metavar="NAME", help=help)


def add_storage(parser: argparse.ArgumentParser, *, help: str = STORAGE_HELP) -> None:
    """``--storage URL``."""
    parser.add_argument(
        "--storage",
        type=nonempty_text("storage URL", shown=display_url),
        default=None,
        metavar="URL",
        help=help,
    )


def add_artifacts(parser: argparse.ArgumentParser) -> None:
    """``--artifacts PLACE``: where trials' curves and the study's figures are kept."""
    parser.add_argument(
        "--artifacts",
        type=nonempty_text("artifact place"),
        default=None,
        metavar="PLACE",
        help=ARTIFACTS_HELP,
    )


def add_blas_threads(
    parser: argparse.ArgumentParser,
    *,
    default: int | None = DEFAULT_BLAS_THREADS,
    help: str | None = None,
) -> None:
    """``--blas-threads N``: BLAS threads per training process."""
    parser.add_argument(
        "--blas-threads",
        type=blas_threads_number,
        default=default,
        metavar="N",
        help=help
        or f"BLAS threads per training process (default {default}: parallelism comes from "
        "worker processes; on a busy 2-core machine 2 threads ran 4-6x slower than 1)",
    )


def add_json(parser: argparse.ArgumentParser, *, what: str = "the result") -> None:
    """``--json``: print one JSON object instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as one JSON object")


def add_lockstep(parser: argparse.ArgumentParser) -> None:
    """``--lockstep K``: trials a worker claims at once and trains together."""
    from kmlp.study.worker import DEFAULT_LOCKSTEP, MAX_LOCKSTEP

    parser.add_argument(
        "--lockstep",
        type=whole_number(low=1, high=MAX_LOCKSTEP),
        default=DEFAULT_LOCKSTEP,
        metavar="K",
        help="trials of a stage each worker claims at once and trains together, sharing "
        f"batches and first-layer products (default {DEFAULT_LOCKSTEP}: measured on 2 cores "
        "at one BLAS thread, a trial-epoch costs 0.33-0.35 s with 8 together, 0.33-0.40 s "
        "with 4, 0.50-0.85 s alone; see benchmarks/README.md; 1 trains each trial alone)",
    )
