"""Publishing off the worker's critical path: a thread that draws and refreshes figures.

What a worker publishes per trial costs seconds of matplotlib and plotly, against tiny
trials of a second or two: done inline it cut 6 workers from about 190 to 65 trials per
minute. ``BackgroundHooks`` wraps the same work (``dashboards.publish``) so that the
worker only does what must happen while the trial runs:

- ``on_trial_end`` (inside the objective, trial RUNNING): uploads the CSV, a placeholder
  image and the note at once (Optuna attaches artifacts only to running trials), and
  queues the drawing of the curves, written over the placeholder later
  (``publish.start_trial_curves``). The drawing (about 0.3 s of matplotlib CPU per trial,
  as much as a tiny trial's training) runs in one helper process per worker at the lowest
  CPU priority (``nice 19``): on a machine whose cores the workers keep busy it takes only
  idle time (a thread would not do: it would share the worker's GIL and CPU share). The
  queue is bounded (``max_pending`` drawings): a worker that outruns its drawing process
  waits for it, so memory stays bounded. Where no helper process can be started the
  thread draws itself.
- ``on_trial_told``: asks for a refresh of the search figure, best curves and note.
  Requests coalesce: at most one is pending, and it runs at most every ``min_interval``
  seconds (each refresh draws the whole study, so refreshing after every one of many
  tiny trials is work nobody sees). Given ``refresh_elsewhere``, the drawing process
  does it, through a storage connection of its own (a worker's second, at most).
- ``on_stage_end`` (rare): waits for everything queued, then refreshes with a snapshot,
  inline, so that what a stage end leaves is complete when it returns.
- ``flush()``: waits for everything queued, pending refresh included. Run at process
  exit (``atexit`` and multiprocessing's finalizers), so a worker that ends normally, or
  by Ctrl-C or SIGTERM, leaves its figures complete; a SIGKILLed one leaves placeholders.

Errors are logged as one warning line each, as inline publishing does; nothing raises.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import functools
import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

from kmlp.dashboards.curves import draw_curves_png
from kmlp.dashboards.publish import CurvesJob, Hooks, make_hooks, start_trial_curves
from kmlp.storage.urls import redact

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

    from kmlp.network import TrainResult

_log = logging.getLogger(__name__)
# Seconds to wait for one drawing of the helper process (it runs at the lowest priority,
# so on a saturated machine it may wait for idle time; it normally takes 0.3 s of CPU).
DRAW_TIMEOUT_S = 300.0


class BackgroundHooks:
    """The study package's three hooks, publishing from a background thread (see above)."""

    def __init__(
        self,
        artifact_store: ArtifactStore | None,
        *,
        storage_url: str | None = None,
        min_interval: float = 5.0,
        max_pending: int = 32,
        refresh_elsewhere: Callable[[str], None] | None = None,
    ) -> None:
        self._store = artifact_store
        self._inline: Hooks = make_hooks(artifact_store, storage_url=storage_url)
        self._min_interval = min_interval
        # picklable ``f(study_name)`` that refreshes from its own storage connection: run
        # in the drawing process, off this process's CPU share too
        self._refresh_elsewhere = refresh_elsewhere
        self._max_pending = max_pending
        self._jobs: collections.deque[tuple[str, Callable[[], None]]] = collections.deque()
        self._refresh: optuna.Study | None = None  # the study to refresh, if asked
        self._last_refresh = float("-inf")
        self._flushes = 0  # callers waiting in flush(): run the pending refresh now
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.Executor | None = None
        self._pool_failed = False

    # --- the hooks ----------------------------------------------------------------

    def on_trial_end(self, study: optuna.Study, trial: optuna.Trial, result: TrainResult) -> None:
        if self._store is None:
            return
        try:
            job = start_trial_curves(trial, result, artifact_store=self._store)
        except Exception as exc:  # a full disk or flaky S3 must not lose a trained trial
            _log.warning(
                "kmlp: could not upload curves of trial %d: %s", trial.number, redact(str(exc))
            )
            return
        store = self._store
        drawn = self._draw(job)

        def finish() -> None:
            if drawn is None:
                png = draw_curves_png(job.columns, job.title)
            else:  # a drawing process that stopped answering costs a warning, not a hang
                png = drawn.result(timeout=DRAW_TIMEOUT_S)
            job.finish(png, artifact_store=store)

        what = f"could not draw the curves of trial {trial.number}"
        with self._cond:
            self._start()
            while len(self._jobs) >= self._max_pending:
                self._cond.wait()
            self._jobs.append((what, finish))
            self._cond.notify_all()

    def _draw(self, job: CurvesJob) -> concurrent.futures.Future[bytes] | None:
        """Submit the drawing to the low-priority process (None: draw in the thread)."""
        self._ensure_pool()
        if self._pool is None:
            return None
        try:
            return self._pool.submit(draw_curves_png, job.columns, job.title)
        except Exception:  # the pool broke (its process killed) or shuts down
            self._pool, self._pool_failed = None, True
            return None

    def _ensure_pool(self) -> None:
        if self._pool is None and not self._pool_failed:
            try:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_lowest_priority,
                )
            except Exception:  # e.g. a daemonic process may not start children
                self._pool_failed = True

    def on_trial_told(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with self._cond:
            self._start()
            self._refresh = study
            self._cond.notify_all()

    def on_stage_end(self, study: optuna.Study) -> None:
        self.flush()
        with self._cond:
            self._refresh = None  # the inline refresh below covers it
        self._inline.on_stage_end(study)
        self._last_refresh = time.monotonic()

    def hooks(self) -> Hooks:
        return Hooks(self.on_trial_end, self.on_trial_told, self.on_stage_end)

    # --- the thread ---------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every queued drawing and the pending refresh are done."""
        with self._cond:
            if self._thread is None:
                return
            self._flushes += 1
            self._cond.notify_all()
            try:
                while self._jobs or self._refresh is not None or self._busy:
                    self._cond.wait()
            finally:
                self._flushes -= 1

    def close(self) -> None:
        """Flush, then stop the drawing process (at process exit)."""
        self.flush()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _start(self) -> None:
        """Start the thread on first use (lock held)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kmlp-publish", daemon=True)
            self._thread.start()
            atexit.register(self.close)
            # multiprocessing's children run its finalizers (forked ones skip atexit). Ours
            # must run before those of the drawing pool's queues (priority 10), which stop
            # their feeder threads: drawings still queued would never be sent.
            multiprocessing.util.Finalize(self, self.close, exitpriority=100)

    def _next(self) -> tuple[str, Callable[[], None]]:
        """Wait for the next piece of work (lock held); returns (what failed, work)."""
        while True:
            if self._jobs:
                return self._jobs.popleft()
            study = self._refresh
            if study is not None:
                due = self._last_refresh + self._min_interval - time.monotonic()
                if due <= 0 or self._flushes:
                    self._refresh = None
                    what = f"could not update the search figure of {study.study_name}"
                    return what, functools.partial(self._refresh_now, study)
                self._cond.wait(timeout=due)
            else:
                self._cond.wait()

    def _refresh_now(self, study: optuna.Study) -> None:
        """Refresh in the drawing process if there is one, else in this thread."""
        if self._refresh_elsewhere is not None and not self._pool_failed:
            with self._cond:
                self._ensure_pool()
                pool = self._pool
            if pool is not None:
                pool.submit(self._refresh_elsewhere, study.study_name).result(DRAW_TIMEOUT_S)
                return
        self._inline.on_trial_told(study, None)  # type: ignore[arg-type]  (unused)

    def _run(self) -> None:
        while True:
            with self._cond:
                what, work = self._next()
                self._busy = True
                self._cond.notify_all()  # a slot in the queue is free
            try:
                work()
            except Exception as exc:
                _log.warning("kmlp: %s: %s", what, redact(str(exc)))
            finally:
                with self._cond:
                    self._busy = False
                    if what.startswith("could not update"):
                        self._last_refresh = time.monotonic()
                    self._cond.notify_all()


def _lowest_priority() -> None:
    """Initializer of the drawing process: run only on CPU the workers leave idle."""
    os.nice(19)
