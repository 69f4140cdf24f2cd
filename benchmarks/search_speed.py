"""Seconds per trial-epoch of lockstep training against the matrix products of a lone network.

The workload is the default study's trial: the 3-layer net (hidden 50, 50) with batch norm,
float32, batches of 100 from the 45000 real CIFAR-10 training images reshuffled every
epoch, cyclical learning rate 1e-5..1e-1, He init, and checkpoints at the study's rate
(10 per cycle of 10 epochs: one per epoch), each scoring the 10000 monitor images and the
5000 validation images. A run is ``--epochs`` epochs as one cycle.

Measured in one process at ``--threads`` BLAS threads (default 1), interleaved (the order
rotates every repeat), medians and ranges of ``--repeats`` repeats:

- **products**: the matrix products one lone network computes in an epoch, with
  ``train()``'s shapes and layouts, timed alone: per step X @ W1 (100x3072 @ 3072x50), the
  six small products of layers 2 and 3, and X.T @ dZ1, each step on a freshly gathered
  batch (the gather is not timed); per checkpoint, the evaluation products of the 15000
  images through the three layers. "training" is the per-step part alone, "with
  checkpoints" adds the checkpoint part.
- **lockstep K**: ``train_lockstep`` with K members at lambda values spread over
  10^-5..10^-1; ``seconds_per_member_epoch`` (gathers, updates, checkpoints; not the
  final train-set accuracy, like ``TrainResult.seconds``). The training-only figure
  leaves out its checkpoint time.
- **train()**: one lone network trained the usual way, for reference.

Ratios are per repeat (a lockstep run over the products timed in the same repeat), then
the median and range over repeats. What must hold (issue 8): lockstep 8 per trial-epoch
<= 0.9x the products of one lone network's epoch. Both ratios are printed; the criterion
uses the full epoch (with its checkpoints) on both sides.

    python benchmarks/search_speed.py [--ks 1 2 4 8 16] [--epochs 2] [--repeats 3]
                                      [--threads 1] [--data DIR] [--json]

The BLAS kernels matter: the printed "BLAS core" says which ran (this machine's
environment sets ``OPENBLAS_CORETYPE=Haswell``, AVX2 kernels, although the CPU has
AVX-512; see benchmarks/README.md for both).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg.blas  # noqa: F401  (loaded before the thread limit, which then covers it)
from threadpoolctl import threadpool_info

from kmlp.network import (
    Dataset,
    KmlpNetworkError,
    TrainConfig,
    blas_limit,
    load_cifar10,
    train,
    train_lockstep,
)

HIDDEN = (50, 50)
BATCH = 100
CLASSES = 10
MONITOR = 10000
COARSE = (-5.0, -1.0)
EVAL_CHUNK = 10000  # MLP.scores evaluates in chunks of this many rows
TARGET = 0.9  # lockstep 8 per trial-epoch / products of a lone epoch must be at most this


def config(*, epochs: int, n_train: int, lam: float) -> TrainConfig:
    """One cycle over ``epochs`` epochs with one checkpoint per epoch (the study's rate)."""
    steps = epochs * math.ceil(n_train / BATCH)
    return TrainConfig(
        hidden=HIDDEN,
        batch_norm=True,
        lam=lam,
        batch_size=BATCH,
        n_s=max(1, steps // 2),
        cycles=1,
        checkpoints_per_cycle=epochs,
        monitor_size=MONITOR,
    )


def lambdas(k: int) -> list[float]:
    """k lambda values at the centres of k equal slices of the coarse log10 range."""
    low, high = COARSE
    return [10 ** (low + (high - low) * (i + 0.5) / k) for i in range(k)]


# -- the floor: products of one lone network --------------------------------------------------
def lone_products(data: Dataset, *, epochs: int, seed: int = 0) -> dict[str, float]:
    """Seconds per epoch of a lone network's matrix products: training, checkpoints."""
    X, n = data.train.X, len(data.train.y)
    rng = np.random.default_rng(seed)
    f32 = np.float32
    w1 = (rng.standard_normal((X.shape[1], HIDDEN[0])) * math.sqrt(2 / X.shape[1])).astype(f32)
    w2 = (rng.standard_normal(HIDDEN) * math.sqrt(2 / HIDDEN[0])).astype(f32)
    w3 = (rng.standard_normal((HIDDEN[1], CLASSES)) * math.sqrt(2 / HIDDEN[1])).astype(f32)
    h1 = np.abs(rng.standard_normal((BATCH, HIDDEN[0]))).astype(f32)
    h2 = np.abs(rng.standard_normal((BATCH, HIDDEN[1]))).astype(f32)
    dscores = (rng.standard_normal((BATCH, CLASSES)) * 1e-3).astype(f32)
    dz2 = (rng.standard_normal((BATCH, HIDDEN[1])) * 1e-3).astype(f32)
    dz1 = (rng.standard_normal((BATCH, HIDDEN[0])) * 1e-3).astype(f32)
    xb = np.empty((BATCH, X.shape[1]), dtype=f32)
    per_epoch = math.ceil(n / BATCH)
    training = 0.0
    for step in range(epochs * per_epoch):
        pos = step % per_epoch
        if pos == 0:
            order = rng.permutation(n)
        np.take(X, order[pos * BATCH : (pos + 1) * BATCH], axis=0, out=xb)
        start = time.perf_counter()
        # MLP.forward and MLP.backward: affine_forward x @ w, affine_backward dout @ w.T
        # and x.T @ dout (no input gradient for the first layer)
        xb @ w1
        h1 @ w2
        h2 @ w3
        dscores @ w3.T
        h2.T @ dscores
        dz2 @ w2.T
        h1.T @ dz2
        xb.T @ dz1
        training += time.perf_counter() - start
    checkpoints = 0.0
    for _ in range(epochs):
        for split in (data.train.X[:MONITOR], data.val.X):
            for i in range(0, len(split), EVAL_CHUNK):
                chunk = split[i : i + EVAL_CHUNK]
                start = time.perf_counter()
                a = chunk @ w1
                b = a @ w2
                b @ w3
                checkpoints += time.perf_counter() - start
    return {"training": training / epochs, "checkpoints": checkpoints / epochs}


# -- the runs -----------------------------------------------------------------------------------
def run_lockstep(data: Dataset, *, k: int, epochs: int) -> dict[str, float]:
    n = len(data.train.y)
    configs = [config(epochs=epochs, n_train=n, lam=lam) for lam in lambdas(k)]
    result = train_lockstep(data=data, configs=configs, blas_threads=None)
    return {
        "seconds_per_trial_epoch": result.seconds_per_member_epoch,
        "training_seconds_per_trial_epoch": (result.seconds - result.checkpoint_seconds)
        / result.member_epochs,
        "val_accuracy_best": max(m.val_accuracy for m in result.members),
    }


def run_train(data: Dataset, *, epochs: int) -> dict[str, float]:
    n = len(data.train.y)
    result = train(data=data, config=config(epochs=epochs, n_train=n, lam=1e-3), blas_threads=None)
    return {"seconds_per_trial_epoch": result.seconds_per_epoch}


def benchmark(*, data: Dataset, ks: list[int], epochs: int, repeats: int) -> dict[str, Any]:
    jobs: dict[str, Callable[[], dict[str, float]]] = {
        "products": lambda: lone_products(data, epochs=epochs),
        **{f"lockstep_{k}": (lambda k=k: run_lockstep(data, k=k, epochs=epochs)) for k in ks},
        "train": lambda: run_train(data, epochs=epochs),
    }
    # warm-up: allocators, BLAS buffers, page cache of the data
    lone_products(data, epochs=1)
    train_lockstep(
        data=data, configs=[config(epochs=1, n_train=2000, lam=1e-3)] * 2, blas_threads=None
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in jobs}
    names = list(jobs)
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(jobs[name]())
            _say(f"  repeat {rep + 1}/{repeats} {name}: {_brief(runs[name][-1])}")
    return summarise(runs, ks=ks)


def summarise(runs: dict[str, list[dict[str, float]]], *, ks: list[int]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    products = runs["products"]
    floor_training = stats([p["training"] for p in products])
    floor_full = stats([p["training"] + p["checkpoints"] for p in products])
    out: dict[str, Any] = {
        "products_per_epoch": {"training": floor_training, "with_checkpoints": floor_full},
        "train_seconds_per_epoch": stats([r["seconds_per_trial_epoch"] for r in runs["train"]]),
        "lockstep": {},
    }
    for k in ks:
        rs = runs[f"lockstep_{k}"]
        full = [r["seconds_per_trial_epoch"] for r in rs]
        training = [r["training_seconds_per_trial_epoch"] for r in rs]
        # each repeat's lockstep time over the products timed in the same repeat: pairs
        # measured minutes apart at most, so a change of load affects both
        out["lockstep"][str(k)] = {
            "seconds_per_trial_epoch": stats(full),
            "training_seconds_per_trial_epoch": stats(training),
            "ratio": stats(
                [
                    f / (p["training"] + p["checkpoints"])
                    for f, p in zip(full, products, strict=True)
                ]
            ),
            "ratio_training": stats(
                [t / p["training"] for t, p in zip(training, products, strict=True)]
            ),
            "val_accuracy_best": rs[-1]["val_accuracy_best"],
        }
    if "8" in out["lockstep"]:
        ratio = out["lockstep"]["8"]["ratio"]["median"]
        out["criterion"] = {"k": 8, "ratio": ratio, "target": TARGET, "holds": ratio <= TARGET}
    return out


def _brief(result: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in result.items())


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def environment() -> dict[str, Any]:
    blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return {
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "blas": [
            {k: lib.get(k) for k in ("filepath", "version", "architecture", "num_threads")}
            for lib in blas
        ],
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "load_average": list(os.getloadavg()),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Seconds per trial-epoch of lockstep training (K = 1..16) against the "
        "matrix products of one lone network's epoch, measured in the same run."
    )
    p.add_argument(
        "--ks",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8, 16],
        help="group sizes to time (default 1 2 4 8 16)",
    )
    p.add_argument("--epochs", type=int, default=2, help="epochs per timed run (default 2)")
    p.add_argument(
        "--repeats", type=int, default=3, help="interleaved repeats; medians (default 3)"
    )
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument(
        "--data",
        default=os.environ.get("KMLP_DATA") or None,
        help="CIFAR-10 folder or archive (default $KMLP_DATA, else kmlp's cache)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1 or args.threads < 1 or min(args.ks) < 1:
        p.error("--epochs, --repeats, --threads and every --ks value must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data = load_cifar10(data_dir=args.data, dtype="float32", progress=not args.json)
        with blas_limit(args.threads):
            env = environment()
            result = benchmark(data=data, ks=args.ks, epochs=args.epochs, repeats=args.repeats)
            env["load_average_after"] = list(os.getloadavg())
    except KmlpNetworkError as exc:
        print(f"search_speed: error: {exc}", file=sys.stderr)
        return 2
    result["environment"] = env
    result["workload"] = {
        "hidden": list(HIDDEN),
        "batch_norm": True,
        "batch_size": BATCH,
        "n_train": len(data.train.y),
        "monitor": MONITOR,
        "n_val": len(data.val.y),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "threads": args.threads,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print_table(result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    env, w = result["environment"], result["workload"]
    cores = ", ".join(f"{b['architecture']} ({b['version']})" for b in env["blas"])
    print(
        f"3-layer BN [50, 50], float32, batch {BATCH}, {w['n_train']} images, one checkpoint "
        f"per epoch ({w['monitor']} + {w['n_val']} images); {w['epochs']} epochs per run, "
        f"{w['repeats']} repeats, {w['threads']} BLAS thread(s); BLAS core {cores}; "
        f"load average {env['load_average'][0]:.2f} before, "
        f"{env['load_average_after'][0]:.2f} after, {env['cpus']} CPUs"
    )

    def cell(s: dict[str, float]) -> str:
        return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"

    def ratio(s: dict[str, float]) -> str:
        return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"

    p = result["products_per_epoch"]
    print(f"products of one lone network's epoch: {cell(p['with_checkpoints'])} s")
    print(f"  of which training steps:            {cell(p['training'])} s")
    print(f"train() of one network, per epoch:    {cell(result['train_seconds_per_epoch'])} s")
    print()
    print("   K | s per trial-epoch   | / products       | training only       | / products")
    for k, row in result["lockstep"].items():
        print(
            f"{k:>4} | {cell(row['seconds_per_trial_epoch']):<19} | {ratio(row['ratio']):<16} | "
            f"{cell(row['training_seconds_per_trial_epoch']):<19} | "
            f"{ratio(row['ratio_training'])}"
        )
    if "criterion" in result:
        c = result["criterion"]
        verdict = "holds" if c["holds"] else "does NOT hold"
        print(
            f"\n8 in lockstep per trial-epoch / products of a lone epoch = {c['ratio']:.2f} "
            f"(target <= {c['target']}): {verdict}"
        )


if __name__ == "__main__":
    sys.exit(main())
