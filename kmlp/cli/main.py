"""The ``kmlp`` console command: parses arguments and calls library functions.

Every subcommand is one row of ``COMMANDS``: its name, help, a function that declares
its options and one that runs it (returning an exit code). Options several commands
share are declared once, in ``kmlp.cli.options``. Errors deriving from ``KmlpError``
are bad input and print as one line, ``kmlp: error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import kmlp
from kmlp.cli import (
    dashboard_cmd,
    data_cmd,
    gradcheck_cmd,
    proxy_cmd,
    reproduce_cmd,
    retrain_cmd,
    show_cmd,
    study_cmd,
    train_cmd,
)
from kmlp.cli.entry import was_interrupted
from kmlp.errors import KmlpError
from kmlp.storage.failures import file_identity, storage_failure
from kmlp.storage.urls import ENV_VAR, redact, resolve_url


@dataclass(frozen=True)
class Command:
    """One ``kmlp`` subcommand.

    ``run`` is None when ``add_arguments`` sets a ``func`` of its own (``kmlp data``'s
    actions).
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int] | None
    description: str | None = None


# Order is the order shown in ``kmlp --help``.
COMMANDS: tuple[Command, ...] = (
    Command(
        "data",
        "download CIFAR-10 or show which copy kmlp uses",
        data_cmd.add_arguments,
        None,
        "Download CIFAR-10 into the cache folder, or show where it is found.",
    ),
    Command(
        "train",
        "train one network and report its test accuracy",
        train_cmd.add_arguments,
        train_cmd.run,
        "Train the k-layer network with cyclical learning rates, evaluate it on the test set.",
    ),
    Command(
        "gradcheck",
        "check analytic gradients against centred differences",
        gradcheck_cmd.add_arguments,
        gradcheck_cmd.run,
        "Compare the network's gradients with centred differences in float64 on random "
        "inputs of reduced dimension, at random parameters.",
    ),
    Command(
        "launch",
        "run (or continue) a coarse-to-fine search of lambda",
        study_cmd.add_launch_arguments,
        study_cmd.run_launch,
        "Search log10 lambda stage by stage: each stage samples its range, the next range "
        "spans the top-k trials so far. Rerun to continue an interrupted study.",
    ),
    Command(
        "worker",
        "join a running study (from any machine sharing its storage)",
        study_cmd.add_worker_arguments,
        study_cmd.run_worker_cmd,
        "Run trials of an existing study until all its stages are finished.",
    ),
    Command(
        "studies",
        "list the studies in a storage with their best lambda",
        show_cmd.add_studies_arguments,
        show_cmd.run_studies,
    ),
    Command(
        "show",
        "print a study's stages, how each range was chosen, best lambda and test accuracy",
        show_cmd.add_show_arguments,
        show_cmd.run_show,
        "Print a study's stage table, how each range was chosen, its best trial, the test "
        "accuracy of its retrains and its progress (--json: the same as one JSON object).",
    ),
    Command(
        "export",
        "write a study's best trial to a JSON file",
        retrain_cmd.add_export_arguments,
        retrain_cmd.run_export,
    ),
    Command(
        "retrain",
        "train an exported configuration and report validation and test accuracy",
        retrain_cmd.add_retrain_arguments,
        retrain_cmd.run_retrain,
        "Train an exported configuration on the full training set (49000 images, 1000 held "
        "out for validation) unless told otherwise, score it on the 10000 test images and "
        "record the result on the study.",
    ),
    Command(
        "dashboard",
        "browse studies in optuna-dashboard (curves, search figure, notes)",
        dashboard_cmd.add_dashboard_arguments,
        dashboard_cmd.run_dashboard,
        "Serve optuna-dashboard on the study storage and kmlp's artifact store.",
    ),
    Command(
        "report",
        "write a study's report (one HTML page, markdown, figures) to a folder",
        dashboard_cmd.add_report_arguments,
        dashboard_cmd.run_report,
        "Write report.html (title, best lambda, retrained test accuracy, stage table with how "
        "each range was chosen, search figure, best trial's curves; self-contained), "
        "summary.md, summary.json, search.png and the best trial's curves.",
    ),
    Command(
        "storage-proxy",
        "serve the study database to many workers through Optuna's gRPC storage proxy",
        proxy_cmd.add_arguments,
        proxy_cmd.run,
        "Run Optuna's gRPC storage proxy in front of the study database; workers then use "
        "--storage grpc://HOST:PORT and hold no database connection of their own.",
    ),
    Command(
        "reproduce",
        "run the method's published report and write it side by side with kmlp's numbers",
        reproduce_cmd.add_arguments,
        reproduce_cmd.run,
        "Run the gradient check, the four networks, both coarse-to-fine searches, the "
        "retrains and the init study (every run an Optuna trial; rerun to continue), then "
        "write report.md, report.html, results.json and the figures.",
    ),
)


class UsageError(KmlpError):
    """A command line argparse refuses (unknown option, bad value, missing argument)."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are KmlpErrors: ``main`` prints them like every
    other error, ``kmlp: error: <subcommand>: <message>``, one line, exit code 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        command = self.prog.removeprefix("kmlp").strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kmlp",
        description="Coarse-to-fine search of the L2 strength of a k-layer NumPy MLP on CIFAR-10.",
    )
    parser.add_argument(
        "--version", action="version", version=f"kmlp {kmlp.__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        p = sub.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        if command.run is not None:
            p.set_defaults(func=command.run)
        command.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kmlp`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Errors are one line on stderr: ``kmlp: error: ...`` (exit 2) for bad input,
    ``kmlp: internal error: ...`` (exit 1) for a bug; ``KMLP_DEBUG=1`` raises them instead.
    Every line is made printable and short, and masks any storage password the command
    line or ``$KMLP_STORAGE`` holds.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("KMLP_DEBUG"))
    args = None
    identity = None
    try:
        args = build_parser().parse_args(argv)
        identity = file_identity(_storage_url(args))  # to tell a database replaced later
        # The command line as given, for "to continue, rerun ..." after an interrupt.
        args.argv = argv
        code = args.func(args)
    except KeyboardInterrupt:
        if debug:  # where it was, for a hang
            raise
        print("kmlp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. "kmlp show --json | head": the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit flush does not fail again
        return 1
    except KmlpError as exc:
        if debug:
            raise
        url = _storage_url(args)
        if identity is not None and file_identity(url) != identity:  # replaced meanwhile
            exc = storage_failure(exc, url, identity=identity) or exc
        print(f"kmlp: error: {error_text(str(exc), argv)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, still one line; KMLP_DEBUG=1 shows the traceback
        if debug:
            raise
        if was_interrupted():  # Ctrl-C, surfacing from C code as another exception
            print("kmlp: interrupted", file=sys.stderr)
            return 130
        lost = storage_failure(exc, _storage_url(args), identity=identity)
        if lost is not None:  # the database failed under us: bad luck, not a bug
            print(f"kmlp: error: {error_text(str(lost), argv)}", file=sys.stderr)
            return 2
        text = error_text(f"{type(exc).__name__}: {exc}", argv)
        print(f"kmlp: internal error: {text}", file=sys.stderr)
        return 1
    return int(code or 0)


_MAX_LINE = 1000  # characters of an error message shown


def error_text(message: str, argv: Sequence[str] = ()) -> str:
    """``message`` as one printable line of bounded length, with no storage password.

    Control characters (a newline in a path, an ANSI escape) are shown escaped; a
    password in any URL on the command line or in ``$KMLP_STORAGE`` is masked wherever
    it appears, and so is any URL's password (``storage.urls.redact``).
    """
    text = message
    for source in [*argv, os.environ.get(ENV_VAR) or ""]:
        if "://" in source:  # a URL: its password, as given and percent-decoded
            text = redact(text, url=source.split("=", 1)[1] if _is_option(source) else source)
    text = redact(text)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > _MAX_LINE:
        text = f"{text[: _MAX_LINE - 40]}... ({len(text)} characters)"
    return text or "(no message)"


def _storage_url(args: argparse.Namespace | None) -> str | None:
    """The storage URL the command was using (given, else ``$KMLP_STORAGE`` or default)."""
    if args is None or not hasattr(args, "storage"):
        return None
    return resolve_url(args.storage)


def _is_option(arg: str) -> bool:
    """``--storage=URL``-style: an option glued to its value."""
    return arg.startswith("-") and "=" in arg and "://" not in arg.split("=", 1)[0]


if __name__ == "__main__":
    from kmlp.cli.entry import main as entry

    entry()
