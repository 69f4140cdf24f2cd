"""Retraining one configuration over several seeds: the spread of its test accuracy.

A seed sets a network's initial weights and its batch order, so N seeds give N
independent draws of what the configuration scores. They are not trained in lockstep
(``network.train_lockstep``): lockstep members share their initial weights and batch
order, which is exactly what must differ here, so each seed is an ordinary ``train``.
Parallelism is across processes instead: ``jobs`` forked worker processes, each training
whole seeds with ``blas_threads`` BLAS threads (default one: on a 2-core machine two
one-thread processes beat one two-thread one). Forked workers share the loaded data with
the parent (copy-on-write), so it is read once.

The spread is the sample standard deviation (n - 1 in the denominator) of the N test
accuracies: an estimate of how far one seed's result falls from another's; None for one
seed.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import queue
import signal
import statistics
import sys
from collections.abc import Callable, Sequence

from kmlp.network import (
    Dataset,
    KmlpNetworkError,
    TrainConfig,
    blas_limit,
    train,
)
from kmlp.study.errors import StudyError


@dataclasses.dataclass(frozen=True)
class SeedResult:
    """One seed's network: accuracies (fractions) and wall seconds of its training."""

    seed: int
    test_accuracy: float
    val_accuracy: float
    train_accuracy: float
    seconds: float
    blas_threads: int | None


def spread(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); None for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else None


def train_seed(*, data: Dataset, config: TrainConfig, seed: int, blas_threads: int) -> SeedResult:
    """Train ``config`` with ``seed`` on ``data``; score train, validation and test sets."""
    cfg = dataclasses.replace(config, seed=seed)
    result = train(data=data, config=cfg, blas_threads=blas_threads)
    with blas_limit(blas_threads):
        test = float(result.net.accuracy(data.test.X, data.test.y))
    return SeedResult(
        seed=seed,
        test_accuracy=test,
        val_accuracy=float(result.val_accuracy),
        train_accuracy=float(result.train_accuracy),
        seconds=float(result.seconds),
        blas_threads=result.blas_threads,
    )


def train_seeds(
    *,
    data: Dataset,
    config: TrainConfig,
    seeds: Sequence[int],
    jobs: int = 1,
    blas_threads: int = 1,
    done: Callable[[SeedResult, int], None] | None = None,
) -> list[SeedResult]:
    """Train one network per seed; results in seed order.

    ``jobs`` > 1 forks that many worker processes (at most one per seed), each taking
    seeds from a shared queue. ``done(result, finished_so_far)`` is called in this process
    as each seed finishes (progress). Raises StudyError if a seed fails (e.g. diverges).
    """
    if not seeds:
        raise StudyError("no seed to train")
    jobs = min(jobs, len(seeds))
    results: list[SeedResult] = []
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for seed in seeds:
            try:
                results.append(
                    train_seed(data=data, config=config, seed=seed, blas_threads=blas_threads)
                )
            except KmlpNetworkError as exc:
                raise StudyError(f"seed {seed}: {exc}") from None
            if done is not None:
                done(results[-1], len(results))
        return sorted(results, key=lambda r: r.seed)
    ctx = multiprocessing.get_context("fork")
    todo: multiprocessing.Queue = ctx.Queue()
    out: multiprocessing.Queue = ctx.Queue()
    for seed in seeds:
        todo.put(seed)
    for _ in range(jobs):
        todo.put(None)
    procs = [
        ctx.Process(target=_worker, args=(data, config, blas_threads, todo, out), daemon=True)
        for _ in range(jobs)
    ]
    for p in procs:
        p.start()
    try:
        while len(results) < len(seeds):
            try:
                kind, payload = out.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise StudyError("a retrain worker process died") from None
                continue
            if kind == "error":
                raise StudyError(str(payload))
            results.append(payload)
            if done is not None:
                done(payload, len(results))
    finally:
        for p in procs:
            if p.is_alive() and len(results) < len(seeds):
                p.terminate()
            p.join(timeout=5)
    return sorted(results, key=lambda r: r.seed)


def _worker(
    data: Dataset,
    config: TrainConfig,
    blas_threads: int,
    todo: multiprocessing.Queue,
    out: multiprocessing.Queue,
) -> None:
    """A forked worker: train seeds from ``todo`` until a None; errors go to ``out``."""
    # Ctrl-C reaches the whole process group: the parent handles it and terminates the
    # workers, which must not each print a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (seed := todo.get()) is not None:
        try:
            out.put(
                ("ok", train_seed(data=data, config=config, seed=seed, blas_threads=blas_threads))
            )
        except KmlpNetworkError as exc:
            out.put(("error", f"seed {seed}: {exc}"))
            return
        except Exception as exc:  # one line to the parent, never a traceback
            out.put(("error", f"seed {seed}: {type(exc).__name__}: {exc}"))
            return
    sys.stdout.flush()


def describe_seed(result: SeedResult, finished: int, total: int) -> str:
    """A progress line for a finished seed."""
    return (
        f"kmlp retrain: seed {result.seed} done ({finished}/{total}): test accuracy "
        f"{100 * result.test_accuracy:.2f}%, validation {100 * result.val_accuracy:.2f}%, "
        f"{result.seconds:.1f} s"
    )


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)
