"""Lockstep training: K networks that differ only in λ (and init scale) trained in one pass.

The members share architecture, data, seed (so initial draws and batch order), batch size,
dtype, batch-norm momentum and monitor size. Each has its own λ, init scheme (the same
standard-normal draws times its own std, e.g. "sigma=1e-3" against "sigma=1e-1"),
learning-rate schedule (eta_min, eta_max, n_s, cycles), checkpoints, batch-norm
statistics, divergence check and callbacks. Per step, one batch gather serves all members;
the first layer's forward product is one (n, d) @ (d, K*m) GEMM and its weight update one
(d, n) @ (n, K*m) GEMM that writes the weights in place; the small later layers are
batched matmuls; checkpoint evaluation is stacked the same way.

A member leaves the group when it completes, when its callback stops it, when the group
callback prunes it, or when its loss becomes non-finite (it then carries the
DivergenceError ``train`` would have raised); the others go on with its columns dropped.

Each member's result equals ``train`` with the same configuration up to float rounding;
it is not bitwise equal. OpenBLAS computes a column of a GEMM with a different kernel
depending on where it falls in the wide product (measured: columns 40-49 of a member
differ from the lone (n, 3072) @ (3072, 50) product in the last bits), so exact equality
is impossible for the stacked first layer; the rest uses algebraically equal forms that
save passes over memory (weight decay kept as a per-member scale, fused batch norm).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kmlp.network.config import TrainConfig
from kmlp.network.data import Dataset
from kmlp.network.errors import ConfigError, DivergenceError
from kmlp.network.lockstep_result import (
    GroupCallback,
    LockstepResult,
    MemberResult,
    StopReason,
    check_configs,
)
from kmlp.network.lockstep_stack import StackedNets
from kmlp.network.lockstep_step import Workspace, first_layer_update, sgd_step
from kmlp.network.model import MLP
from kmlp.network.schedule import cyclical_lr
from kmlp.network.threads import DEFAULT_BLAS_THREADS, blas_limit
from kmlp.network.training import Callback, Checkpoint, checkpoint_steps


def train_lockstep(
    *,
    data: Dataset,
    configs: Sequence[TrainConfig],
    callbacks: Sequence[Callback | None] | None = None,
    group_callback: GroupCallback | None = None,
    on_leave: Callable[[MemberResult], None] | None = None,
    progress: bool = False,
    blas_threads: int | None = DEFAULT_BLAS_THREADS,
) -> LockstepResult:
    """Train one fresh MLP per configuration on ``data.train``, all in one pass.

    ``data.train.X`` (n, d) in the configurations' dtype, labels (n,); each member is an
    MLP with layer sizes [d, *hidden, c] (c = 10 classes). ``configs`` (K >= 1) must
    agree on ``SHARED_FIELDS``; member k is trained as ``train(data=data,
    config=configs[k])`` would train it, up to float rounding. At each of its checkpoints
    member k's callback ``callbacks[k]`` gets its Checkpoint (returning True stops it,
    reason "stopped"); then ``group_callback`` gets {member: Checkpoint} of the members
    checkpointed at that step and still training, and returns the members to stop
    (reason "pruned"), e.g. the worse half. ``on_leave`` gets each member's
    MemberResult as soon as it leaves the group (while the others train on; its time is
    not counted in anyone's seconds); an exception it raises stops the whole training.
    Never raises DivergenceError: a diverged member is reported in its result. Trains
    with ``blas_threads`` BLAS threads (default one; None leaves BLAS as it is, then load
    SciPy's BLAS before limiting it yourself).
    """
    configs = list(configs)
    check_configs(configs)
    if callbacks is not None and len(callbacks) != len(configs):
        raise ConfigError(f"{len(callbacks)} callbacks for {len(configs)} configurations")
    # The fused first-layer update calls SciPy's BLAS: load it before the thread limit,
    # which applies to the BLAS libraries loaded when it is entered.
    update = first_layer_update(np.dtype(configs[0].dtype))
    with blas_limit(blas_threads) as threads:
        trainer = _Trainer(data=data, configs=configs, update=update, threads=threads)
        return trainer.run(
            callbacks=list(callbacks) if callbacks is not None else [None] * len(configs),
            group_callback=group_callback,
            on_leave=on_leave,
            progress=progress,
        )


@dataclass
class _Member:
    """The bookkeeping of one member: schedule, checkpoints, history, time share."""

    index: int
    config: TrainConfig
    n_s: int
    total: int
    marks: list[int]
    history: list[Checkpoint]
    seconds: float = 0.0
    next_mark: int = 0


class _Trainer:
    def __init__(
        self,
        *,
        data: Dataset,
        configs: list[TrainConfig],
        update: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
        threads: int | None,
    ) -> None:
        X, y = data.train.X, data.train.y
        n, d = X.shape
        if n < 1:
            raise ConfigError("the training set is empty")
        first = configs[0]
        self.dtype = np.dtype(first.dtype)
        if X.dtype != self.dtype:
            raise ConfigError(f"data is {X.dtype} but the configuration asks for {first.dtype}")
        classes = int(max(y.max(), data.val.y.max())) + 1 if len(data.val.y) else int(y.max()) + 1
        self.sizes = [d, *first.hidden, max(classes, 10)]
        self.data, self.n, self.update, self.threads = data, n, update, threads
        self.batch = min(first.batch_size, n)
        self.bn_alpha = first.bn_alpha
        self.monitor = slice(0, min(first.monitor_size, n))
        self.rng = np.random.default_rng(first.seed)
        self.members: list[_Member] = []
        for i, config in enumerate(configs):
            n_s = config.half_cycle(n)
            total = 2 * n_s * config.cycles
            marks = checkpoint_steps(
                total_steps=total, n_s=n_s, per_cycle=config.checkpoints_per_cycle
            )
            self.members.append(_Member(i, config, n_s, total, marks, []))
        # Same draws, in the same order, as train(): the network's init, then one
        # permutation per epoch.
        self.stack = StackedNets.initial(
            sizes=self.sizes,
            batch_norm=first.batch_norm,
            inits=[c.init for c in configs],
            rng=self.rng,
            dtype=self.dtype,
        )
        self.active = list(range(len(configs)))  # member indices, in stack order
        self.results: dict[int, MemberResult] = {}
        self.final_seconds = 0.0
        self.checkpoint_seconds = 0.0

    def run(
        self,
        *,
        callbacks: list[Callback | None],
        group_callback: GroupCallback | None,
        on_leave: Callable[[MemberResult], None] | None,
        progress: bool,
    ) -> LockstepResult:
        self.on_leave = on_leave
        X, y, n, batch = self.data.train.X, self.data.train.y, self.n, self.batch
        per_epoch = math.ceil(n / batch)
        longest = max(m.total for m in self.members)
        bar = _progress_bar(longest, enabled=progress)
        work = Workspace(self.sizes, k=self.stack.k, batch=batch, dtype=self.dtype)
        lam = np.array([m.config.lam for m in self.members])
        start = last = time.perf_counter()
        order = self.rng.permutation(n)
        step = 0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while self.active:
                pos = step % per_epoch
                if pos == 0 and step:
                    order = self.rng.permutation(n)
                idx = order[pos * batch : (pos + 1) * batch]
                xb = work.xb[: len(idx)]
                # the indices come from a permutation, so skip the bounds checks: "clip"
                # gathers the batch in ~60% of the time of the default "raise"
                np.take(X, idx, axis=0, out=xb, mode="clip")
                members = [self.members[i] for i in self.active]
                eta = np.array(
                    [
                        cyclical_lr(
                            step, eta_min=m.config.eta_min, eta_max=m.config.eta_max, n_s=m.n_s
                        )
                        for m in members
                    ]
                )
                losses = sgd_step(
                    self.stack,
                    work,
                    xb,
                    y[idx],
                    eta=eta,
                    lam=lam[self.active],
                    bn_alpha=self.bn_alpha,
                    update=self.update,
                )
                step += 1
                leaving = self._diverged(members, losses, eta, step)
                due = [
                    p
                    for p, m in enumerate(members)
                    if p not in leaving and m.marks[m.next_mark] == step
                ]
                if due:
                    self._checkpoint(due, step, eta, callbacks, group_callback, leaving)
                for p, m in enumerate(members):
                    if p not in leaving and step == m.total:
                        leaving[p] = ("completed", None)
                now = time.perf_counter()
                share = (now - last) / len(members)
                for m in members:
                    m.seconds += share
                if bar is not None:
                    bar.update(step - bar.n)
                    bar.set_postfix(members=len(self.active) - len(leaving))
                if leaving:
                    self._leave(leaving, step)
                    if self.active:
                        work = Workspace(self.sizes, k=self.stack.k, batch=batch, dtype=self.dtype)
                last = time.perf_counter() if leaving else now
        seconds = time.perf_counter() - start - self.final_seconds
        if bar is not None:
            bar.close()
        ordered = tuple(self.results[i] for i in range(len(self.members)))
        return LockstepResult(
            members=ordered,
            seconds=seconds,
            checkpoint_seconds=self.checkpoint_seconds,
            member_epochs=sum(r.epochs for r in ordered),
            steps=max(r.steps for r in ordered),
            blas_threads=self.threads,
        )

    def _diverged(
        self, members: list[_Member], losses: np.ndarray, eta: np.ndarray, step: int
    ) -> dict[int, tuple[StopReason, DivergenceError | None]]:
        leaving: dict[int, tuple[StopReason, DivergenceError | None]] = {}
        for p in np.flatnonzero(~np.isfinite(losses)):
            m = members[p]
            error = DivergenceError(
                f"training diverged: the loss became {float(losses[p])} at step {step - 1} "
                f"(lambda {m.config.lam:g}, learning rate {eta[p]:g}); "
                "lower eta_max or check the data",
                step=step - 1,
            )
            leaving[int(p)] = ("diverged", error)
        return leaving

    def _checkpoint(
        self,
        due: list[int],
        step: int,
        eta: np.ndarray,
        callbacks: list[Callback | None],
        group_callback: GroupCallback | None,
        leaving: dict[int, tuple[StopReason, DivergenceError | None]],
    ) -> None:
        """Evaluate the members at positions ``due``, record, and run the callbacks."""
        start = time.perf_counter()
        stack = self.stack if len(due) == self.stack.k else self.stack.select(due)
        train, val = self.data.train, self.data.val
        t_loss, t_acc = stack.evaluate(train.X[self.monitor], train.y[self.monitor])
        if len(val.y):
            v_loss, v_acc = stack.evaluate(val.X, val.y)
        else:
            v_loss = v_acc = np.full(len(due), math.nan)
        penalty = stack.squared_weights()
        self.checkpoint_seconds += time.perf_counter() - start
        points: dict[int, Checkpoint] = {}
        for q, p in enumerate(due):
            m = self.members[self.active[p]]
            reg = m.config.lam * float(penalty[q]) if m.config.lam else 0.0
            point = Checkpoint(
                step=step,
                epoch=step * self.batch / self.n,
                eta=float(eta[p]),
                train_loss=float(t_loss[q]),
                train_cost=float(t_loss[q]) + reg,
                train_accuracy=float(t_acc[q]),
                val_loss=float(v_loss[q]),
                val_cost=float(v_loss[q]) + reg,
                val_accuracy=float(v_acc[q]),
            )
            m.history.append(point)
            m.next_mark += 1
            callback = callbacks[m.index]
            if callback is not None and callback(point):
                leaving[p] = ("stopped", None)
            elif step < m.total:
                points[m.index] = point
        if group_callback is not None and points:
            position = {self.active[p]: p for p in due}
            for index in group_callback(points) or ():
                if index not in points:
                    raise ConfigError(
                        f"the group callback stopped member {index}, not in {list(points)}"
                    )
                leaving[position[index]] = ("pruned", None)

    def _leave(
        self, leaving: dict[int, tuple[StopReason, DivergenceError | None]], step: int
    ) -> None:
        """Record the results of the members at positions ``leaving`` and drop them."""
        start = time.perf_counter()
        finished = [p for p, (reason, _) in leaving.items() if reason != "diverged"]
        accuracy: dict[int, float] = {}
        if finished:
            sub = self.stack.select(finished)
            _, acc = sub.evaluate(self.data.train.X, self.data.train.y)
            accuracy = {p: float(a) for p, a in zip(finished, acc, strict=True)}
        for p, (reason, error) in leaving.items():
            m = self.members[self.active[p]]
            steps = error.step if error is not None else step
            epochs = steps * self.batch / self.n
            self.results[m.index] = MemberResult(
                net=self._net(p, m.config),
                config=m.config,
                history=tuple(m.history),
                train_accuracy=accuracy.get(p, math.nan),
                val_accuracy=m.history[-1].val_accuracy
                if m.history and error is None
                else math.nan,
                seconds=m.seconds,
                seconds_per_epoch=m.seconds / epochs if epochs else math.nan,
                epochs=epochs,
                steps=steps,
                stopped=reason in ("stopped", "pruned"),
                blas_threads=self.threads,
                member=m.index,
                reason=reason,
                error=error,
            )
        gone = [self.active[p] for p in sorted(leaving)]
        keep = [p for p in range(self.stack.k) if p not in leaving]
        self.active = [self.active[p] for p in keep]
        if keep:
            self.stack = self.stack.select(keep)
        try:
            if self.on_leave is not None:
                for index in gone:
                    self.on_leave(self.results[index])
        finally:
            self.final_seconds += time.perf_counter() - start

    def _net(self, position: int, config: TrainConfig) -> MLP:
        net = MLP(
            layer_sizes=self.sizes,
            batch_norm=config.batch_norm,
            init=config.init,
            seed=config.seed,
            dtype=config.dtype,
            bn_alpha=config.bn_alpha,
        )
        net.params, net.running = self.stack.member_params(position)
        return net


def _progress_bar(total: int, *, enabled: bool):  # -> tqdm | None
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc="lockstep", leave=False, dynamic_ncols=True)
