"""Worker processes of a reproduction: each takes tasks from a queue and posts events.

``processes`` spawned interpreters (one BLAS thread each) share one task queue; the
scheduler puts tasks in as they become ready and one ``None`` per process to end.
Events (see ``tasks``) plus ``("start", worker, task)``, ``("done", worker, task)``,
``("failed", worker, task, message)`` come back on one queue.

Stopping: :meth:`Pool.stop` gives the processes a moment to finish an interrupt they got
themselves (Ctrl-C reaches the whole process group), then sends SIGTERM, which a worker
turns into KeyboardInterrupt: the trials it runs are failed (and rerun next time), then
it exits. A worker whose parent is gone (killed) interrupts itself the same way.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

from kmlp.study.launch import spawn_env
from kmlp.study.reproduce.tasks import Context, DataCache, Task, execute

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class Pool:
    """``processes`` worker processes; use as a context manager (stops them on exit)."""

    def __init__(self, *, processes: int, context: Context) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.tasks: Any = ctx.Queue()
        self.events: Any = ctx.Queue()
        self.procs: list[multiprocessing.process.BaseProcess] = []
        with spawn_env({k: str(context.blas_threads) for k in BLAS_ENV}):
            for i in range(processes):
                p = ctx.Process(
                    target=worker_main,
                    args=(i, context, self.tasks, self.events, os.getpid()),
                    name=f"kmlp-reproduce-{i}",
                )
                p.start()
                self.procs.append(p)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(graceful=exc[0] is None)

    def submit(self, task: Task) -> None:
        self.tasks.put(task)

    def next_event(self, timeout: float) -> tuple[Any, ...] | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def dead(self) -> list[int]:
        """Workers that exited (by index)."""
        return [i for i, p in enumerate(self.procs) if not p.is_alive()]

    def stop(self, *, graceful: bool) -> None:
        """End the workers: after their queued tasks (graceful), else interrupt them."""
        if graceful:
            for _ in self.procs:
                self.tasks.put(None)
            for p in self.procs:
                p.join()
            return
        deadline = time.monotonic() + 3  # an interrupt they got too: let them act on it
        for p in self.procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()


def _interrupt_once(signum: int, frame: Any) -> None:
    # Ctrl-C reaches every process of the group and the scheduler then sends SIGTERM:
    # act on the first, so that the clean-up (failing running trials) is not cut short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _watch_parent(parent: int) -> None:
    """Interrupt this worker when the scheduler is gone (killed): its running trials are
    failed at once instead of training on for nobody."""
    while os.getppid() == parent:
        time.sleep(2.0)
    os.kill(os.getpid(), signal.SIGTERM)


def worker_main(index: int, context: Context, tasks: Any, events: Any, parent: int) -> None:
    """Entry point of a worker process: run tasks until ``None`` (or the parent is gone)."""
    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cache = DataCache(data_dir=context.data_dir)
    try:
        while True:
            try:
                task = tasks.get(timeout=1.0)
            except queue.Empty:
                continue
            if task is None:
                break
            events.put(("start", index, task.id))
            try:
                execute(task, context, cache, events.put)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                events.put(("failed", index, task.id, f"{type(exc).__name__}: {exc}"))
                if os.environ.get("KMLP_DEBUG"):
                    import traceback

                    traceback.print_exc()
                continue
            events.put(("done", index, task.id))
    except KeyboardInterrupt:
        events.close()
        events.join_thread()
        sys.exit(130)
