"""Mini-batch SGD with a cyclical learning rate, checkpoints and a stop callback."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kmlp.network.config import TrainConfig
from kmlp.network.data import Dataset
from kmlp.network.errors import ConfigError, DivergenceError
from kmlp.network.model import MLP
from kmlp.network.schedule import cyclical_lr
from kmlp.network.threads import DEFAULT_BLAS_THREADS, blas_limit


@dataclass(frozen=True)
class Checkpoint:
    """Metrics after ``step`` updates, evaluation mode; accuracies are fractions in [0, 1]."""

    step: int
    epoch: float
    eta: float
    train_loss: float
    train_cost: float
    train_accuracy: float
    val_loss: float
    val_cost: float
    val_accuracy: float


@dataclass(frozen=True)
class TrainResult:
    """A trained network with its history and timing (seconds of wall time).

    ``blas_threads`` is the BLAS thread count it trained with (float32 sums, so results,
    depend on it); None if no BLAS library was found.
    """

    net: MLP
    config: TrainConfig
    history: tuple[Checkpoint, ...]
    train_accuracy: float
    val_accuracy: float
    seconds: float
    seconds_per_epoch: float
    epochs: float
    steps: int
    stopped: bool
    blas_threads: int | None = None


Callback = Callable[[Checkpoint], "bool | None"]


def checkpoint_steps(*, total_steps: int, n_s: int, per_cycle: int) -> list[int]:
    """Steps (1-based counts of updates done) after which a checkpoint is taken.

    ``per_cycle`` evenly spaced ones per cycle of 2 * n_s steps, and always the last step.
    """
    every = max(1, (2 * n_s) // per_cycle)
    steps = list(range(every, total_steps + 1, every))
    if not steps or steps[-1] != total_steps:
        steps.append(total_steps)
    return steps


def train(
    *,
    data: Dataset,
    config: TrainConfig,
    callback: Callback | None = None,
    progress: bool = False,
    blas_threads: int | None = DEFAULT_BLAS_THREADS,
) -> TrainResult:
    """Train a fresh MLP on ``data.train`` and score it on ``data.val``.

    Runs 2 * n_s * cycles updates of ``config.batch_size`` images, reshuffling every
    epoch. At each checkpoint ``callback`` gets the metrics; returning True stops
    training. Raises DivergenceError when a batch loss is NaN or inf. Trains with
    ``blas_threads`` BLAS threads (default one; None leaves BLAS as it is).
    """
    with blas_limit(blas_threads) as threads:
        return _train(
            data=data, config=config, callback=callback, progress=progress, threads=threads
        )


def _train(
    *,
    data: Dataset,
    config: TrainConfig,
    callback: Callback | None,
    progress: bool,
    threads: int | None,
) -> TrainResult:
    X, y = data.train.X, data.train.y
    n, d = X.shape
    if n < 1:
        raise ConfigError("the training set is empty")
    dtype = np.dtype(config.dtype)
    if X.dtype != dtype:
        raise ConfigError(f"data is {X.dtype} but the configuration asks for {config.dtype}")
    n_classes = int(max(y.max(), data.val.y.max())) + 1 if len(data.val.y) else int(y.max()) + 1
    n_classes = max(n_classes, 10)
    rng = np.random.default_rng(config.seed)
    net = MLP(
        layer_sizes=[d, *config.hidden, n_classes],
        batch_norm=config.batch_norm,
        init=config.init,
        seed=rng,
        dtype=config.dtype,
        bn_alpha=config.bn_alpha,
    )
    batch = min(config.batch_size, n)
    n_s = config.half_cycle(n)
    total = 2 * n_s * config.cycles
    marks = checkpoint_steps(total_steps=total, n_s=n_s, per_cycle=config.checkpoints_per_cycle)
    monitor = slice(0, min(config.monitor_size, n))
    batches_per_epoch = math.ceil(n / batch)
    lam = config.lam
    history: list[Checkpoint] = []
    stopped = False
    bar = _progress_bar(total, enabled=progress)
    start = time.perf_counter()
    order = rng.permutation(n)
    Xb = np.empty((batch, d), dtype=dtype)
    step = 0
    next_mark = 0
    # A diverging run overflows before its loss turns non-finite; the check below
    # reports that once, so NumPy's warnings would only be noise.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while step < total:
            pos = step % batches_per_epoch
            if pos == 0 and step:
                order = rng.permutation(n)
            idx = order[pos * batch : (pos + 1) * batch]
            xb = Xb[: len(idx)]
            np.take(X, idx, axis=0, out=xb)
            eta = cyclical_lr(step, eta_min=config.eta_min, eta_max=config.eta_max, n_s=n_s)
            loss, new_running = net.sgd_step(xb, y[idx], lam=lam, eta=eta)
            if not math.isfinite(loss):
                raise DivergenceError(
                    f"training diverged: the loss became {loss} at step {step} "
                    f"(lambda {lam:g}, learning rate {eta:g}); lower eta_max or check the data",
                    step=step,
                )
            net.running = new_running
            step += 1
            if step == marks[next_mark]:
                next_mark += 1
                point = _checkpoint(net, data, lam, monitor, step=step, eta=eta, n=n, batch=batch)
                history.append(point)
                if bar is not None:
                    bar.update(step - bar.n)
                    bar.set_postfix(
                        val_acc=f"{point.val_accuracy:.3f}", loss=f"{point.train_loss:.3f}"
                    )
                if callback is not None and callback(point):
                    stopped = True
                    break
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    epochs = step * batch / n
    return TrainResult(
        net=net,
        config=config,
        history=tuple(history),
        train_accuracy=net.accuracy(X, y),
        val_accuracy=history[-1].val_accuracy if history else float("nan"),
        seconds=seconds,
        seconds_per_epoch=seconds / epochs if epochs else float("nan"),
        epochs=epochs,
        steps=step,
        stopped=stopped,
        blas_threads=threads,
    )


def _checkpoint(
    net: MLP,
    data: Dataset,
    lam: float,
    monitor: slice,
    *,
    step: int,
    eta: float,
    n: int,
    batch: int,
) -> Checkpoint:
    train_loss, train_cost, train_acc = net.evaluate(
        data.train.X[monitor], data.train.y[monitor], lam
    )
    if len(data.val.y):
        val_loss, val_cost, val_acc = net.evaluate(data.val.X, data.val.y, lam)
    else:
        val_loss = val_cost = val_acc = float("nan")
    return Checkpoint(
        step=step,
        epoch=step * batch / n,
        eta=eta,
        train_loss=train_loss,
        train_cost=train_cost,
        train_accuracy=train_acc,
        val_loss=val_loss,
        val_cost=val_cost,
        val_accuracy=val_acc,
    )


def _progress_bar(total: int, *, enabled: bool):  # -> tqdm | None
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc="training", leave=False, dynamic_ncols=True)
