"""Throughput of tiny-trial workers with dashboard publishing on against off, in one run.

Runs the load kit (``tests/helpers/load.py``: ``kmlp launch --workers 2`` plus ``kmlp
worker`` processes, real processes on a real CIFAR-10 subset, SQLite in a temporary folder)
alternately with and without publishing, and reports trials per minute over the span from
the first trial's start to the last trial's end (process start-up and data loading
excluded), and the ratio on / off. Issue 10 asks for at least 0.8 with 6 workers. This
2-core machine lets ``kmlp launch`` start 2 workers; the other 4 are ``kmlp worker``.

    python benchmarks/publish_speed.py [--workers 6] [--trials 36] [--repeats 2] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.load import run_load  # noqa: E402  (the repository's test kit)


def run_once(*, publish: bool, workers: int, trials: int, data: str) -> tuple[float, float]:
    """(trials per minute, wall seconds until every process ended) of one 1-stage study."""
    with tempfile.TemporaryDirectory(prefix="kmlp-bench-") as tmp:
        result = run_load(
            url=f"sqlite:///{tmp}/k.db",
            study="b",
            data=data,
            folder=Path(tmp),
            trials=(trials,),
            launch_workers=min(2, workers),
            extra=max(0, workers - 2),
            publish=publish,
        )
        if not result.clean or result.launch_code != 0:
            raise SystemExit(f"run failed: {result.line()}\n{result.stderr[-2000:]}")
        return result.trials_per_minute, result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--trials", type=int, default=36)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", default=os.environ.get("KMLP_DATA"))
    args = parser.parse_args()
    if not args.data:
        raise SystemExit("set --data or $KMLP_DATA to the CIFAR-10 folder")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rates: dict[bool, list[float]] = {False: [], True: []}
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(args.repeats):
        for publish in (False, True) if r % 2 == 0 else (True, False):
            started = time.monotonic()
            rate, wall = run_once(
                publish=publish, workers=args.workers, trials=args.trials, data=args.data
            )
            rates[publish].append(rate)
            print(
                f"publish {'on ' if publish else 'off'}: {rate:6.1f} trials/min "
                f"(processes ended after {wall:.0f} s, all {time.monotonic() - started:.0f} s; "
                f"load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"{args.workers} workers, {args.trials} tiny trials: off {off:.1f}/min, "
        f"on {on:.1f}/min, on/off {on / off:.2f} (medians of {args.repeats})"
    )


if __name__ == "__main__":
    main()
