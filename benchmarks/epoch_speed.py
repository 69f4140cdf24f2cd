"""Seconds per epoch of kmlp's training against the same training in PyTorch (CPU).

The workload is the one issue 2 names: the 3-layer net (hidden 50, 50) with batch norm,
float32, batches of 100 drawn from the 45000 training images reshuffled every epoch,
triangular cyclical learning rate 1e-5..1e-1, lambda 0.005, He initialisation.

kmlp is timed through ``network.train`` itself (``result.seconds``), run for a whole
number of epochs as one cycle (n_s = steps / 2) with a single checkpoint at the end. That
checkpoint's evaluation is kept tiny (a 100-image validation split and monitor set) and is
then timed on its own and subtracted, so the figure is the update loop: batch gather,
forward, backward, SGD step, schedule and divergence check.

The PyTorch side is the same model written as a practised PyTorch user would for speed on
a CPU: tensors shared with NumPy (no DataLoader), a per-epoch ``randperm`` and tensor
indexing for the batch, Linear -> BatchNorm1d -> ReLU twice then Linear (hidden Linears
without bias, as in kmlp, where beta takes its place), cross-entropy, plain SGD whose
learning rate is set every step from the same schedule. The L2 term lambda * sum ||W||^2
on the weights only is applied as ``weight_decay = 2 * lambda`` on a parameter group
holding just the three weight matrices, which gives the same update as adding the term to
the loss and was slightly the faster of the two when we measured.

Both sides run with the same thread count: kmlp's BLAS threads (read with threadpoolctl)
or ``--threads N``, which limits NumPy's BLAS and sets ``torch.set_num_threads(N)``.
The repetitions alternate between the two (kmlp first on even ones, PyTorch first on odd
ones) and the medians are reported, because on a shared machine single timings are noisy.

    python benchmarks/epoch_speed.py [--threads N] [--epochs 2] [--repeats 3] [--data DIR]
                                     [--json]

PyTorch is optional: ``pip install -e '.[bench]'``. Without it only kmlp's figure is shown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from kmlp.network import MLP, Dataset, KmlpNetworkError, Split, TrainConfig, load_cifar10, train

HIDDEN = (50, 50)
BATCH = 100
LAM = 0.005
ETA_MIN, ETA_MAX = 1e-5, 1e-1
SEED = 0
EVAL_IMAGES = 100  # size of the validation split and monitor set the end checkpoint scores
BUSY_LOAD = 1.0  # 1-minute load average above which the timings are flagged as noisy
WARMUP_STEPS = 50  # untimed updates each side runs first (allocators, thread pools, caches)


def blas_threads() -> int:
    """Threads NumPy's BLAS uses now (the first BLAS library loaded by NumPy)."""
    blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    ours = [lib for lib in blas if "numpy" in lib.get("filepath", "")] or blas
    return int(ours[0]["num_threads"]) if ours else 1


def steps_per_epoch(n_train: int) -> int:
    return math.ceil(n_train / BATCH)


def triangular_lr(step: int, n_s: int) -> float:
    """The same schedule as ``network.cyclical_lr`` (0-based step, half cycle n_s)."""
    t = step % (2 * n_s)
    frac = t / n_s if t <= n_s else 2.0 - t / n_s
    return ETA_MIN + frac * (ETA_MAX - ETA_MIN)


# -- kmlp -----------------------------------------------------------------------------------
def kmlp_config(total_steps: int) -> TrainConfig:
    return TrainConfig(
        hidden=HIDDEN,
        batch_norm=True,
        lam=LAM,
        batch_size=BATCH,
        eta_min=ETA_MIN,
        eta_max=ETA_MAX,
        n_s=max(1, math.ceil(total_steps / 2)),
        cycles=1,
        init="he",
        seed=SEED,
        dtype="float32",
        checkpoints_per_cycle=1,
        monitor_size=EVAL_IMAGES,
    )


def run_kmlp(data: Dataset, total_steps: int) -> dict[str, Any]:
    """Train with kmlp for ``total_steps`` updates (rounded up to even); timing in seconds."""
    small = dataclasses.replace(
        data, val=Split(X=data.val.X[:EVAL_IMAGES], y=data.val.y[:EVAL_IMAGES])
    )
    config = kmlp_config(total_steps)
    # blas_threads=None: the benchmark sets the thread count around this call itself.
    result = train(data=small, config=config, progress=False, blas_threads=None)
    # The one checkpoint train() took at the end: the same two evaluations, timed alone.
    net, monitor = result.net, slice(0, config.monitor_size)
    check = min(_timed(lambda: _checkpoint_evals(net, small, monitor)) for _ in range(3))
    loop = result.seconds - check
    return {
        "seconds": loop,
        "seconds_per_epoch": loop / result.epochs,
        "checkpoint_seconds": check,
        "train_seconds_per_epoch": result.seconds_per_epoch,
        "epochs": result.epochs,
        "net": net,
    }


def _checkpoint_evals(net: MLP, data: Dataset, monitor: slice) -> None:
    net.evaluate(data.train.X[monitor], data.train.y[monitor], LAM)
    net.evaluate(data.val.X, data.val.y, LAM)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- PyTorch --------------------------------------------------------------------------------
def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_model(d: int, *, l2_in_optimiser: bool) -> tuple[Any, Any, list[Any]]:
    """The 3-layer BN network in PyTorch, He-initialised; (model, SGD optimiser, weights).

    With ``l2_in_optimiser`` the L2 term is weight decay on the weights' parameter group;
    otherwise the caller adds lambda * sum ||W||^2 to the loss.
    """
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Linear(d, HIDDEN[0], bias=False),
        nn.BatchNorm1d(HIDDEN[0], eps=1e-5, momentum=0.1),  # kmlp: alpha 0.9
        nn.ReLU(),
        nn.Linear(HIDDEN[0], HIDDEN[1], bias=False),
        nn.BatchNorm1d(HIDDEN[1], eps=1e-5, momentum=0.1),
        nn.ReLU(),
        nn.Linear(HIDDEN[1], 10),
    )
    weights = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")  # std sqrt(2 / fan_in)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
            weights.append(layer.weight)
    others = [p for p in model.parameters() if all(p is not w for w in weights)]
    # d/dW of lam * ||W||^2 is 2 * lam * W: weight decay on the weights' group alone.
    decay = 2 * LAM if l2_in_optimiser else 0.0
    optimiser = torch.optim.SGD(
        [{"params": weights, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}],
        lr=ETA_MIN,
    )
    return model, optimiser, weights


def _torch_timing(seconds: float, *, total_steps: int, n: int, model: Any) -> dict[str, Any]:
    epochs = total_steps * BATCH / n
    return {
        "seconds": seconds,
        "seconds_per_epoch": seconds / epochs,
        "epochs": epochs,
        "model": model,
    }


def run_torch_dataloader(data: Dataset, total_steps: int) -> dict[str, Any]:
    """The same training as PyTorch's tutorials write it: a DataLoader with shuffle=True
    over a TensorDataset, and the cost J = loss + lambda * sum ||W||^2 in the loss."""
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    X = torch.from_numpy(data.train.X)
    y = torch.from_numpy(data.train.y)
    n, d = X.shape
    model, optimiser, weights = _torch_model(d, l2_in_optimiser=False)
    loader = DataLoader(
        TensorDataset(X, y),
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(SEED),
    )
    n_s = max(1, math.ceil(total_steps / 2))
    model.train()
    step = 0
    start = time.perf_counter()
    while step < total_steps:
        for xb, yb in loader:
            for group in optimiser.param_groups:
                group["lr"] = triangular_lr(step, n_s)
            loss = F.cross_entropy(model(xb), yb) + LAM * sum(w.pow(2).sum() for w in weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if step == total_steps:
                break
    return _torch_timing(time.perf_counter() - start, total_steps=total_steps, n=n, model=model)


def run_torch(data: Dataset, total_steps: int) -> dict[str, Any]:
    """The same training in PyTorch on the CPU; timing of the update loop in seconds."""
    import torch
    from torch.nn import functional as F

    X = torch.from_numpy(data.train.X)  # shares memory, float32
    y = torch.from_numpy(data.train.y)
    n, d = X.shape
    model, optimiser, _ = _torch_model(d, l2_in_optimiser=True)
    groups = optimiser.param_groups
    generator = torch.Generator().manual_seed(SEED)
    per_epoch = steps_per_epoch(n)
    n_s = max(1, math.ceil(total_steps / 2))
    model.train()
    start = time.perf_counter()
    order = torch.randperm(n, generator=generator)
    for step in range(total_steps):
        pos = step % per_epoch
        if pos == 0 and step:
            order = torch.randperm(n, generator=generator)
        idx = order[pos * BATCH : (pos + 1) * BATCH]
        loss = F.cross_entropy(model(X[idx]), y[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        eta = triangular_lr(step, n_s)
        for group in groups:
            group["lr"] = eta
        optimiser.step()
    return _torch_timing(time.perf_counter() - start, total_steps=total_steps, n=n, model=model)


def torch_val_accuracy(model: Any, data: Dataset) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        scores = model(torch.from_numpy(data.val.X))
    return float((scores.argmax(dim=1).numpy() == data.val.y).mean())


# -- the comparison -------------------------------------------------------------------------
def benchmark(
    *, data: Dataset, epochs: float, repeats: int, threads: int, use_torch: bool
) -> dict[str, Any]:
    n = len(data.train.y)
    total = max(2, round(epochs * steps_per_epoch(n)))
    total += total % 2  # one whole cycle of 2 * n_s steps
    runners: dict[str, Callable[[Dataset, int], dict[str, Any]]] = {"kmlp": run_kmlp}
    if use_torch:
        import torch

        torch.set_num_threads(threads)
        runners["torch"] = run_torch
        runners["torch_dataloader"] = run_torch_dataloader
    for run in runners.values():
        run(data, WARMUP_STEPS)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    names = list(runners)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            runs[name].append(runners[name](data, total))
            _say(
                f"  {name:5s} run {rep + 1}/{repeats}: "
                f"{runs[name][-1]['seconds_per_epoch']:.3f} s/epoch"
            )
    out: dict[str, Any] = {
        "workload": {
            "hidden": list(HIDDEN),
            "batch_norm": True,
            "dtype": "float32",
            "batch_size": BATCH,
            "n_train": n,
            "lam": LAM,
            "eta_min": ETA_MIN,
            "eta_max": ETA_MAX,
            "init": "he",
            "steps": total,
            "epochs": total * BATCH / n,
        },
        "threads": threads,
        "repeats": repeats,
    }
    for name, results in runs.items():
        per_epoch = [r["seconds_per_epoch"] for r in results]
        entry: dict[str, Any] = {
            "seconds_per_epoch": statistics.median(per_epoch),
            "best_seconds_per_epoch": min(per_epoch),
            "runs": per_epoch,
        }
        if name == "kmlp":
            entry["checkpoint_seconds"] = statistics.median(
                r["checkpoint_seconds"] for r in results
            )
            entry["train_result_seconds_per_epoch"] = statistics.median(
                r["train_seconds_per_epoch"] for r in results
            )
            entry["val_accuracy"] = results[-1]["net"].accuracy(data.val.X, data.val.y)
        else:
            entry["val_accuracy"] = torch_val_accuracy(results[-1]["model"], data)
        out[name] = entry
    for name in ("torch", "torch_dataloader"):
        if name in out:
            out[f"ratio_{name}_over_kmlp"] = (
                out[name]["seconds_per_epoch"] / out["kmlp"]["seconds_per_epoch"]
            )
    return out


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def environment(threads: int) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "blas": [
            {k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for lib in threadpool_info()
            if lib.get("user_api") == "blas"
        ],
        "threads": threads,
    }
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        env["torch"] = None
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Seconds per epoch of kmlp's 3-layer BN float32 training vs PyTorch (CPU)."
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for both (NumPy's BLAS via threadpoolctl, torch.set_num_threads);"
        " default: NumPy's current BLAS thread count",
    )
    p.add_argument("--epochs", type=float, default=2.0, help="epochs per timed run (default 2)")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs of each, interleaved; medians are reported (default 3)",
    )
    p.add_argument(
        "--data",
        default=os.environ.get("KMLP_DATA") or None,
        help="CIFAR-10 folder or archive (default $KMLP_DATA, else kmlp's cache)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.epochs <= 0 or args.repeats < 1:
        p.error("--epochs must be > 0 and --repeats >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads if args.threads is not None else blas_threads()
    try:
        data = load_cifar10(data_dir=args.data, dtype="float32", progress=not args.json)
    except KmlpNetworkError as exc:
        print(f"epoch_speed: error: {exc}", file=sys.stderr)
        return 2
    use_torch = torch_available()
    limit = threadpool_limits(limits=threads) if args.threads is not None else nullcontext()
    with limit:
        env = environment(threads)
        result = benchmark(
            data=data,
            epochs=args.epochs,
            repeats=args.repeats,
            threads=threads,
            use_torch=use_torch,
        )
        env["load_average_after"] = list(os.getloadavg())
    result["environment"] = env
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    k = result["kmlp"]
    w = result["workload"]
    print(
        f"3-layer BN net, float32, batch {BATCH}, {w['n_train']} images, "
        f"{w['epochs']:g} epochs per run, {args.repeats} runs each, {threads} thread(s); "
        f"load average {env['load_average'][0]:.2f} before, "
        f"{env['load_average_after'][0]:.2f} after"
    )
    print(
        f"kmlp    {k['seconds_per_epoch']:.3f} s/epoch (median; runs "
        f"{', '.join(f'{s:.3f}' for s in k['runs'])}; end-of-run evaluation "
        f"{k['checkpoint_seconds'] * 1000:.1f} ms excluded), "
        f"val accuracy {k['val_accuracy']:.3f}"
    )
    if env["load_average"][0] >= BUSY_LOAD:
        print(
            f"note: the machine was busy (load average {env['load_average'][0]:.2f} on "
            f"{env['cpus']} CPUs); timings with more than one thread suffer most"
        )
    labels = {
        "torch": "PyTorch, tensor indexing (tuned)",
        "torch_dataloader": "PyTorch, DataLoader(shuffle=True) as tutorials write it",
    }
    for name, label in labels.items():
        if name not in result:
            continue
        t = result[name]
        print(
            f"{label}: {t['seconds_per_epoch']:.3f} s/epoch (median; runs "
            f"{', '.join(f'{s:.3f}' for s in t['runs'])}; torch {env['torch']}), "
            f"val accuracy {t['val_accuracy']:.3f}; "
            f"that / kmlp = {result[f'ratio_{name}_over_kmlp']:.2f}x"
        )
    if "torch" not in result:
        print(
            "PyTorch is not installed, so there is no comparison; "
            "install it with: pip install -e '.[bench]'"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
