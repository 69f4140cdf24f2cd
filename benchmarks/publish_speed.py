"""Throughput of tiny-trial workers with dashboard publishing on against off, in one run.

Runs ``kmlp launch --workers N`` (real processes, real CIFAR-10 subset, SQLite in a temporary
folder) alternately with and without ``--no-publish`` and reports trials per minute over
the span from the first trial's start to the last trial's end (process start-up and data
loading excluded), and the ratio on / off. Issue 10 asks for a ratio of at least 0.8 with 6
workers.

    python benchmarks/publish_speed.py [--workers 6] [--trials 36] [--repeats 2] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--n-train", "1000", "--n-val", "300", "--hidden", "10", "--cycles", "1", "--n-s", "50",
]  # fmt: skip


def run_once(*, publish: bool, workers: int, trials: int, data: str) -> float:
    """Trials per minute of one launch (1 stage of ``trials``)."""
    with tempfile.TemporaryDirectory(prefix="kmlp-bench-") as tmp:
        url = f"sqlite:///{tmp}/k.db"
        cmd = [
            *(sys.executable, "-m", "kmlp", "launch", "--study", "b", "--storage", url),
            *("--data", data, *TINY, "--stages", "1", "--trials", str(trials)),
            *("--workers", str(workers)),
        ]
        if publish:
            cmd += ["--artifacts", f"{tmp}/artifacts"]
        else:
            cmd.append("--no-publish")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"launch failed: {done.stderr[-2000:]}")
        study = optuna.load_study(study_name="b", storage=url)
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        start = min(t.datetime_start for t in finished)
        end = max(t.datetime_complete for t in finished)
        return 60 * len(finished) / (end - start).total_seconds()


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
            rate = run_once(
                publish=publish, workers=args.workers, trials=args.trials, data=args.data
            )
            rates[publish].append(rate)
            print(
                f"publish {'on ' if publish else 'off'}: {rate:6.1f} trials/min "
                f"({time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"{args.workers} workers, {args.trials} tiny trials: off {off:.1f}/min, "
        f"on {on:.1f}/min, on/off {on / off:.2f} (medians of {args.repeats})"
    )


if __name__ == "__main__":
    main()
