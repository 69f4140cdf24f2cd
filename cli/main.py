"""The ``kmlp`` console command: parses arguments and calls library functions.

Each subcommand lives in its own module of this package, which exposes
``register(subparsers)``; the module adds its parser and sets ``func``, a
callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Order is the order shown in ``kmlp --help``.
_COMMAND_MODULES = (
    "cli.data_cmd",
    "cli.train_cmd",
    "cli.gradcheck_cmd",
    "cli.study_cmd",
    "cli.dashboard_cmd",
)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kmlp",
        description="Coarse-to-fine search of the L2 strength of a k-layer NumPy MLP on CIFAR-10.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command is not written yet
                continue
            raise
        module.register(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input, reported as one line."""
    errors: list[type[BaseException]] = []
    for module_name, attr in (
        ("network.errors", "KmlpNetworkError"),
        ("storage.errors", "StorageError"),
        ("study.errors", "StudyError"),
        ("dashboards.errors", "DashboardError"),
    ):
        try:
            errors.append(getattr(importlib.import_module(module_name), attr))
        except (ModuleNotFoundError, AttributeError):
            continue
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(os.environ.get("KMLP_DEBUG"))
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("kmlp: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if debug:
            raise
        print(f"kmlp: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, still one line; KMLP_DEBUG=1 shows the traceback
        if debug:
            raise
        print(f"kmlp: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
