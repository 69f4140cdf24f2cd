"""Progress of a reproduction: runs done of planned, time elapsed, time left; and the
interrupt a SIGTERM becomes."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from kmlp.study.progress import format_duration


@dataclass
class Progress:
    """Runs done of planned, time elapsed, time left from the cost done so far."""

    total_units: int
    total_cost: float
    out: TextIO
    done_units: int = 0
    done_cost: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def add(self, units: int, cost: float) -> None:
        self.done_units += units
        self.done_cost += cost

    def status(self) -> str:
        elapsed = time.monotonic() - self.started
        text = f"{self.done_units}/{self.total_units} runs, {format_duration(elapsed)} elapsed"
        if self.done_cost > 0 and self.done_units < self.total_units:
            left = max(0.0, self.total_cost - self.done_cost) * elapsed / self.done_cost
            text += f", ETA {format_duration(left)}"
        return text

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``kill``) stops a reproduction like Ctrl-C: running trials are failed,
    workers stopped (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
