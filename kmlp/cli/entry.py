"""The ``kmlp`` console command's entry point: a Ctrl-C at any moment is one line, exit 130.

``kmlp.cli.main`` imports NumPy, SQLAlchemy and the command modules (half a second), so
the entry point imports it here, inside the ``try``: an interrupt during those imports,
while parsing or while a command runs, ends the same way, ``kmlp: interrupted`` and exit
code 130, with no traceback (``KMLP_DEBUG=1`` shows it). Once the exit code is decided,
further Ctrl-C are ignored, so that a second press while kmlp says so, or while Python
shuts down, prints nothing more. This module imports only the standard library.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def main() -> None:
    """Run ``kmlp`` with ``sys.argv`` and exit with its code."""
    code = INTERRUPTED
    try:
        try:
            from kmlp.cli.main import main as run

            code = run()
        except KeyboardInterrupt:
            _ignore_interrupts()
            if os.environ.get("KMLP_DEBUG"):
                raise
            _say("kmlp: interrupted")
    except KeyboardInterrupt:  # a second Ctrl-C while the first one was handled
        _ignore_interrupts()
        if os.environ.get("KMLP_DEBUG"):
            raise
    _ignore_interrupts()
    sys.exit(code)


def _ignore_interrupts() -> None:
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread (never for the console command)
        pass


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed: the exit code still tells
        pass
