"""The ``kmlp`` console command's entry point: a Ctrl-C at any moment is one line, exit 130.

``kmlp.cli.main`` imports NumPy, SQLAlchemy and the command modules (half a second), so
the entry point imports it here, inside the ``try``: an interrupt during those imports,
while parsing or while a command runs, ends the same way, ``kmlp: interrupted`` and exit
code 130, with no traceback (``KMLP_DEBUG=1`` shows it). Once the exit code is decided,
further Ctrl-C are ignored, so that a second press while kmlp says so, or while Python
shuts down, prints nothing more; one that lands in a finaliser is raised again in the
code that runs. This module imports only the standard library.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = 130  # 128 + SIGINT, as shells report it
# Ctrl-C received by this process (the handler below): C code that is interrupted, such
# as NumPy's import, may raise another exception than KeyboardInterrupt.
_pressed: list[int] = []


def was_interrupted() -> bool:
    """True once this process got SIGINT through :func:`main`'s handler."""
    return bool(_pressed)


def _on_sigint(signum: int, frame: object) -> None:
    _pressed.append(signum)
    raise KeyboardInterrupt


def _unraisable(info: object) -> None:
    """``sys.unraisablehook``: a Ctrl-C that landed in a finaliser or weakref callback
    (whose exceptions Python prints as "Exception ignored in ...") is handed on to the
    code that runs; after a Ctrl-C, others are quiet too."""
    exc_type = getattr(info, "exc_type", None)
    if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
        # Raised again in the main thread's own code, a moment later from another
        # thread, so that it is not raised here, inside the hook, again.
        import _thread
        import threading

        timer = threading.Timer(0.05, _thread.interrupt_main)
        timer.daemon = True
        try:
            timer.start()
        except KeyboardInterrupt:  # yet another Ctrl-C meanwhile: the timer still comes
            pass
        return
    if not was_interrupted():
        sys.__unraisablehook__(info)  # type: ignore[arg-type]


def main() -> None:
    """Run ``kmlp`` with ``sys.argv`` and exit with its code."""
    debug = bool(os.environ.get("KMLP_DEBUG"))
    code = INTERRUPTED
    try:
        try:
            signal.signal(signal.SIGINT, _on_sigint)
            sys.unraisablehook = _unraisable
            from kmlp.cli.main import main as run

            code = run()
        except KeyboardInterrupt:
            _ignore_interrupts()
            if debug:
                raise
            _say("kmlp: interrupted")
        except Exception as exc:  # kmlp could not even start
            _ignore_interrupts()
            if debug:
                raise
            if was_interrupted():  # e.g. NumPy's import says ImportError then
                _say("kmlp: interrupted")
            else:
                code = 1
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())
                _say(f"kmlp: internal error: cannot start: {reason}")
    except KeyboardInterrupt:  # a second Ctrl-C while the first one was handled
        _ignore_interrupts()
        if debug:
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
