"""How many BLAS threads kmlp trains with: one per process unless told otherwise.

On a 2-core machine two BLAS threads ran a batch-100 epoch 4-6x slower than one as soon
as another process was busy, and the thread count changes float32 sums (so results).
kmlp therefore trains with one BLAS thread per process by default and gets parallelism
from worker processes and lockstep trials.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from threadpoolctl import threadpool_info, threadpool_limits

from kmlp.network.checks import whole
from kmlp.network.errors import ConfigError

DEFAULT_BLAS_THREADS = 1


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def check_blas_threads(threads: int) -> int:
    """``threads`` if it is a usable count (1 .. the usable cores); ConfigError otherwise.

    More threads than cores only oversubscribe them: every thread waits for the others
    at each matrix product, and a run of seconds takes minutes.
    """
    cores = usable_cores()
    threads = whole("BLAS threads", threads, low=1)
    if threads > cores:
        raise ConfigError(
            f"BLAS threads {threads}: more than the {cores} core{'s' if cores != 1 else ''} "
            f"this machine gives kmlp (use 1 to {cores})"
        )
    return threads


@contextlib.contextmanager
def blas_limit(threads: int | None = DEFAULT_BLAS_THREADS) -> Iterator[int | None]:
    """Limit BLAS to ``threads`` threads in the ``with`` body (None: leave it as it is).

    Yields the count in effect, as :func:`blas_threads` reads it.
    """
    if threads is None:
        yield blas_threads()
        return
    with threadpool_limits(limits=check_blas_threads(threads), user_api="blas"):
        yield blas_threads()


def blas_threads() -> int | None:
    """Threads the BLAS library uses now (None if threadpoolctl finds no BLAS)."""
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None
