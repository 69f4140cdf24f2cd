"""Riding out an outage: retry a storage call with backoff, say so once, give up clearly.

``Retrier.run(what, call)`` calls ``call()`` and, while the error is an outage
(``storage.transient``), sleeps (0.2 s doubling to 5 s, ±20% jitter) and calls again, for up
to ``RetrySettings.timeout`` seconds of outage (default 180; ``$KMLP_STORAGE_RETRY``; 0
turns retries off). The outage clock is per storage and process: it starts at the first
failed attempt of any thread and stops at the next success, so one outage is ridden out
once, not once per call. The first failure prints one line on stderr naming the storage
(password masked) and the reason (again at most once a minute while it lasts). Giving up
raises one ``StorageError`` line naming the storage, how long it was unreachable and why.

Writes are fenced: before retrying a write, the calling thread's fences run (``fenced``;
``storage_lock`` installs its lease check), so a write is never retried for a lock holder
that lost its lock meanwhile.

Interrupts wait for the call: in the main thread, Ctrl-C (SIGINT) and SIGTERM, when their
handlers raise in Python, are held while an attempt runs and delivered as soon as it
returns (a second signal is delivered at once). An interrupt raised inside the database
driver can leave a connection holding a SQLite lock in an open transaction; the process
then waits on itself ("database is locked") until killed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, TextIO, TypeVar

import sqlalchemy.exc
from optuna.exceptions import StorageInternalError

from kmlp.storage.errors import StorageError
from kmlp.storage.failures import lost_file
from kmlp.storage.transient import describe, grpc_failure, transient_reason

T = TypeVar("T")
ENV_RETRY = "KMLP_STORAGE_RETRY"
# Seconds between two "unreachable" lines of one storage in one process.
ANNOUNCE_EVERY_S = 60.0


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    """How long an outage is ridden out (seconds; 0: no retry) and the backoff bounds."""

    timeout: float = 180.0
    first_delay: float = 0.2
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if not (0 <= self.timeout < float("inf") and 0 < self.first_delay <= self.max_delay):
            raise StorageError(f"bad retry settings {self}")

    @classmethod
    def from_env(cls) -> RetrySettings:
        """Defaults, with the outage timeout from ``$KMLP_STORAGE_RETRY`` (seconds)."""
        text = os.environ.get(ENV_RETRY)
        if not text:
            return cls()
        try:
            timeout = float(text)
        except ValueError:
            timeout = -1.0
        if not 0 <= timeout < float("inf"):
            raise StorageError(f"${ENV_RETRY} must be a number of seconds >= 0, got {text!r}")
        return cls(timeout=timeout)

    def delay(self, attempt: int) -> float:
        """Seconds to sleep before retry ``attempt`` (0-based), with ±20% jitter."""
        base = min(self.max_delay, self.first_delay * 2.0 ** min(attempt, 30))
        return base * random.uniform(0.8, 1.2)


class _Outage:
    """One process's view of one storage's reachability, shared by all its threads."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started: float | None = None
        self.announced_at: float | None = None
        self.last_failure: float | None = None
        self.failures = 0
        self.guard = threading.Lock()

    def failed(
        self, reason: str, settings: RetrySettings, err: TextIO | None, *, since: float
    ) -> None:
        """Record a failed attempt; announce a new outage once; give up past the timeout.

        ``since``: when the calling call first failed. It gives up once the outage, or
        this call's own retrying (should other threads' successes keep resetting the
        outage), has lasted the timeout.
        """
        now = time.monotonic()
        with self.guard:
            self.failures += 1
            self.last_failure = now
            if self.started is None:
                self.started = now
            started = min(self.started, since)
            announce = self.announced_at is None or now - self.announced_at > ANNOUNCE_EVERY_S
            if announce:
                self.announced_at = now
        if announce:
            print(
                f"kmlp: storage {self.label} unreachable ({reason}); "
                f"retrying for up to {settings.timeout:g} s",
                file=err or sys.stderr,
                flush=True,
            )
        if now - started >= settings.timeout:
            raise StorageError(
                f"lost the study storage {self.label}: unreachable for {now - started:.0f} s "
                f"({reason}); ${ENV_RETRY} sets how long to wait (now {settings.timeout:g} s)"
            )

    def ok(self) -> None:
        if self.started is not None:
            with self.guard:
                self.started = None


_OUTAGES: dict[str, _Outage] = {}
_OUTAGES_GUARD = threading.Lock()


class Retrier:
    """Runs the storage calls of one storage (``label``: its URL, password masked)."""

    def __init__(
        self,
        label: str,
        settings: RetrySettings | None = None,
        *,
        err: TextIO | None = None,
        url: str | None = None,
    ) -> None:
        self.label = label
        self.url = url  # to name a SQLite file lost under us (storage.failures)
        self.settings = settings or RetrySettings.from_env()
        self._err = err
        with _OUTAGES_GUARD:
            self._outage = _OUTAGES.setdefault(label, _Outage(label))
        self._local = threading.local()

    @property
    def failures(self) -> int:
        """Failed attempts this process has seen on this storage (grows during outages)."""
        return self._outage.failures

    def seconds_since_failure(self) -> float:
        """Seconds since this process last failed to reach the storage (inf: never)."""
        last = self._outage.last_failure
        return float("inf") if last is None else time.monotonic() - last

    @contextlib.contextmanager
    def fenced(self, check: Callable[[], None]) -> Iterator[None]:
        """Run ``check`` (it raises to refuse) before this thread retries a write."""
        stack = self._fences()
        stack.append(check)
        try:
            yield
        finally:
            stack.remove(check)

    def run(
        self,
        what: str,
        call: Callable[[], T],
        *,
        write: bool = False,
        fence: bool = True,
        settle: Callable[[BaseException], T] | None = None,
    ) -> T:
        """``call()``, retried through outages; ``what`` names it in messages ("read a trial").

        ``settle(exc)``: once an attempt of a write failed in a way that may have landed,
        a later attempt's non-outage error goes here to decide the result (or re-raise).
        """
        attempt = 0
        maybe_landed = False
        first_failure: float | None = None
        while True:
            try:
                with interrupts_held():
                    result = call()
            except Exception as exc:
                reason = transient_reason(exc)
                if reason is None:
                    if maybe_landed and settle is not None:
                        return settle(exc)
                    raise self._translate(what, exc) from None
                maybe_landed = maybe_landed or write
                if self.settings.timeout <= 0:
                    raise StorageError(f"cannot {what} in {self.label}: {reason}") from None
                if first_failure is None:
                    first_failure = time.monotonic()
                self._outage.failed(reason, self.settings, self._err, since=first_failure)
                time.sleep(self.settings.delay(attempt))
                attempt += 1
                if write and fence:
                    self._run_fences()
                continue
            self._outage.ok()
            return result

    def _translate(self, what: str, exc: Exception) -> Exception:
        """A database error as one StorageError line naming its real cause; others as they are."""
        lost = lost_file(exc, self.url)
        if lost is not None:
            return lost
        if isinstance(exc, StorageInternalError | sqlalchemy.exc.SQLAlchemyError):
            return StorageError(f"cannot {what} in {self.label}: {describe(exc)}")
        details = grpc_failure(exc)
        if details is not None:
            return StorageError(f"cannot {what} through {self.label}: {details}")
        return exc

    def _fences(self) -> list[Callable[[], None]]:
        if not hasattr(self._local, "fences"):
            self._local.fences = []
            self._local.in_fence = False
        return self._local.fences

    def _run_fences(self) -> None:
        fences = self._fences()
        if self._local.in_fence or not fences:
            return  # a fence's own storage calls are not fenced again
        self._local.in_fence = True
        try:
            for check in list(fences):
                check()
        finally:
            self._local.in_fence = False


_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (Python handlers only) in the main thread for the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Callable[[int, FrameType | None], Any]] = {}
    pending: list[tuple[int, FrameType | None]] = []

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)
        previous.clear()

    def hold(number: int, frame: FrameType | None) -> None:
        pending.append((number, frame))
        if len(pending) > 1:  # asked twice: deliver now
            handler = previous[number]
            restore()
            handler(number, frame)

    for number in _HELD_SIGNALS:
        handler = signal.getsignal(number)
        if callable(handler):
            previous[number] = handler
            signal.signal(number, hold)
    delivered = dict(previous)
    try:
        yield
    finally:
        restore()
        if pending:
            number, frame = pending[0]
            delivered[number](number, frame)
