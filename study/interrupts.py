"""Holding Ctrl-C and SIGTERM for the moment a trial is created.

A worker creates trials with ``study.ask()`` under the storage lock. An interrupt inside
it could leave the new trial RUNNING in the storage but unknown to the worker: never
failed, and (without a heartbeat yet) never found stale, so its budget slot would stay
taken. Around that call interrupts are held and delivered right after.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them as they would have.

    Around ``study.ask()``: an interrupt inside it could leave the new trial RUNNING and
    unknown to the worker (not failed, and without a heartbeat never found stale), its
    budget slot taken for good."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        pending.append(signum)

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN and handler is not None:
            signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not signal.SIG_IGN and handler is not None:
                signal.signal(sig, handler)
        for signum in dict.fromkeys(pending):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            else:  # SIG_DFL: let the default action happen now
                signal.raise_signal(signum)
