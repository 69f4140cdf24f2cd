"""Lockstep training: every member equals ``train`` with its configuration, up to rounding."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from kmlp.network import (
    Checkpoint,
    ConfigError,
    DivergenceError,
    MemberResult,
    TrainConfig,
    TrainResult,
    load_cifar10,
    train,
    train_lockstep,
)
from kmlp.network.layers import RunningStats
from kmlp.network.lockstep_layers import batchnorm_relu_forward
from tests.conftest import synthetic_dataset

FAST = dict(hidden=(20, 15), batch_size=50, n_s=24, cycles=2, monitor_size=600, seed=3)
CURVE = ("train_loss", "train_cost", "train_accuracy", "val_loss", "val_cost", "val_accuracy")
# lambda and init per member: a lambda grid and a sigma grid, as the experiments use them
MEMBERS = [
    (0.0, "he"),
    (1e-3, "he"),
    (0.1, "sigma=1e-1"),
    (0.01, "sigma=1e-3"),
    (0.5, "xavier"),
]


def members(base: TrainConfig, spec=MEMBERS) -> list[TrainConfig]:
    return [dataclasses.replace(base, lam=lam, init=init) for lam, init in spec]


def curves(result: TrainResult) -> np.ndarray:
    return np.array([[getattr(p, name) for name in CURVE] for p in result.history])


def assert_same_run(got: TrainResult, want: TrainResult, *, rtol: float, acc_tol: float) -> None:
    """Same steps, checkpoints and parameters as ``want``, within the tolerances."""
    assert [p.step for p in got.history] == [p.step for p in want.history]
    assert [p.eta for p in got.history] == [p.eta for p in want.history]
    assert got.steps == want.steps and got.epochs == want.epochs
    assert got.stopped == want.stopped
    a, b = curves(got), curves(want)
    losses = [i for i, name in enumerate(CURVE) if "accuracy" not in name]
    accuracies = [i for i, name in enumerate(CURVE) if "accuracy" in name]
    np.testing.assert_allclose(a[:, losses], b[:, losses], rtol=rtol)
    np.testing.assert_allclose(a[:, accuracies], b[:, accuracies], atol=acc_tol)
    assert abs(got.val_accuracy - want.val_accuracy) <= acc_tol
    assert abs(got.train_accuracy - want.train_accuracy) <= acc_tol
    assert set(got.net.params) == set(want.net.params)
    for key, value in want.net.params.items():
        assert got.net.params[key].dtype == value.dtype
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got.net.params[key], value, rtol=0, atol=rtol * scale)
    for layer, stats in want.net.running.items():
        np.testing.assert_allclose(got.net.running[layer].mean, stats.mean, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(got.net.running[layer].var, stats.var, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("hidden", [(20, 15), ()])
def test_float64_members_equal_train_tightly(batch_norm: bool, hidden: tuple[int, ...]) -> None:
    data = synthetic_dataset(dtype="float64")
    base = TrainConfig(**{**FAST, "hidden": hidden}, batch_norm=batch_norm, dtype="float64")
    configs = members(base)
    result = train_lockstep(data=data, configs=configs)
    assert [m.member for m in result.members] == list(range(len(configs)))
    for config, got in zip(configs, result.members, strict=True):
        assert isinstance(got, MemberResult) and got.config == config
        assert got.reason == "completed" and got.error is None
        assert_same_run(got, train(data=data, config=config), rtol=1e-9, acc_tol=0.0)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_float32_members_equal_train_closely(batch_norm: bool) -> None:
    data = synthetic_dataset()
    configs = members(TrainConfig(**FAST, batch_norm=batch_norm))
    result = train_lockstep(data=data, configs=configs)
    # Equal up to float32 rounding, which SGD amplifies over 96 steps: the stacked and the
    # lone products sum in different orders (the kernels block them differently; with
    # AVX-512 kernels late checkpoints drift by about 1.5%). The float64 tests above
    # show the two computations are the same to 1e-9.
    for config, got in zip(configs, result.members, strict=True):
        assert_same_run(got, train(data=data, config=config), rtol=5e-2, acc_tol=0.05)
    assert result.member_epochs == pytest.approx(sum(m.epochs for m in result.members))
    assert 0 < result.checkpoint_seconds < result.seconds
    assert result.steps == 96


def test_one_member_equals_train() -> None:
    data = synthetic_dataset(dtype="float64")
    config = TrainConfig(**FAST, batch_norm=True, lam=0.02, dtype="float64")
    (got,) = train_lockstep(data=data, configs=[config]).members
    assert_same_run(got, train(data=data, config=config), rtol=1e-9, acc_tol=0.0)


def test_epochs_that_end_in_a_partial_batch() -> None:
    """600 images in batches of 70: every epoch ends with a batch of 40."""
    data = synthetic_dataset(dtype="float64")
    base = TrainConfig(**{**FAST, "batch_size": 70}, batch_norm=True, dtype="float64")
    configs = members(base)[:3]
    result = train_lockstep(data=data, configs=configs)
    for config, got in zip(configs, result.members, strict=True):
        assert_same_run(got, train(data=data, config=config), rtol=1e-9, acc_tol=0.0)


def test_members_with_their_own_schedules_and_checkpoints() -> None:
    """Members may differ in learning rates, half-cycle, cycles and checkpoint rate."""
    data = synthetic_dataset(dtype="float64")
    base = TrainConfig(**FAST, batch_norm=True, dtype="float64")
    configs = [
        dataclasses.replace(base, lam=1e-3),
        dataclasses.replace(base, lam=1e-2, cycles=1, eta_max=0.05),
        dataclasses.replace(base, lam=1e-4, n_s=10, cycles=3, checkpoints_per_cycle=3),
    ]
    result = train_lockstep(data=data, configs=configs)
    assert [m.steps for m in result.members] == [96, 48, 60]
    for config, got in zip(configs, result.members, strict=True):
        assert_same_run(got, train(data=data, config=config), rtol=1e-9, acc_tol=0.0)


def test_a_diverged_member_leaves_and_the_others_go_on() -> None:
    data = synthetic_dataset(dtype="float64")
    base = TrainConfig(**FAST, batch_norm=True, dtype="float64")
    wild = dataclasses.replace(base, eta_min=1e6, eta_max=1e7, init="sigma=10")
    configs = [dataclasses.replace(base, lam=1e-3), wild, dataclasses.replace(base, lam=1e-2)]
    result = train_lockstep(data=data, configs=configs)
    diverged = result.members[1]
    with pytest.raises(DivergenceError) as alone:
        train(data=data, config=wild)
    assert diverged.reason == "diverged" and isinstance(diverged.error, DivergenceError)
    assert diverged.error.step == alone.value.step and str(diverged.error) == str(alone.value)
    assert diverged.steps == alone.value.step
    assert math.isnan(diverged.val_accuracy) and math.isnan(diverged.train_accuracy)
    for i in (0, 2):
        assert result.members[i].reason == "completed"
        assert_same_run(
            result.members[i], train(data=data, config=configs[i]), rtol=1e-9, acc_tol=0.0
        )


def test_a_member_callback_stops_that_member_only() -> None:
    data = synthetic_dataset(dtype="float64")
    configs = members(TrainConfig(**FAST, batch_norm=True, dtype="float64"))

    def stop_after(count: int):
        seen: list[Checkpoint] = []

        def callback(point: Checkpoint) -> bool:
            seen.append(point)
            return len(seen) == count

        return callback

    result = train_lockstep(
        data=data, configs=configs, callbacks=[None, stop_after(3), None, None, stop_after(7)]
    )
    assert [m.reason for m in result.members] == [
        "completed",
        "stopped",
        "completed",
        "completed",
        "stopped",
    ]
    assert len(result.members[1].history) == 3 and len(result.members[4].history) == 7
    for config, got, count in zip(configs, result.members, [0, 3, 0, 0, 7], strict=True):
        want = train(data=data, config=config, callback=stop_after(count) if count else None)
        assert_same_run(got, want, rtol=1e-9, acc_tol=0.0)


def test_a_callback_at_the_last_checkpoint_marks_the_run_stopped_as_train_does() -> None:
    data = synthetic_dataset()
    config = TrainConfig(**FAST)
    last = 96
    (got,) = train_lockstep(
        data=data, configs=[config], callbacks=[lambda p: p.step == last]
    ).members
    want = train(data=data, config=config, callback=lambda p: p.step == last)
    assert got.stopped and want.stopped and got.steps == want.steps == last
    assert got.reason == "stopped"


def test_the_group_callback_prunes_and_the_rest_go_on() -> None:
    data = synthetic_dataset(dtype="float64")
    configs = members(TrainConfig(**FAST, batch_norm=True, dtype="float64"))
    seen: dict[int, int] = {}  # step -> members shown

    def worse_half_at_step_48(points):
        step = next(iter(points.values())).step
        seen[step] = len(points)
        if step != 48:
            return []
        ranked = sorted(points, key=lambda m: points[m].val_accuracy)
        return ranked[: len(points) // 2]

    result = train_lockstep(data=data, configs=configs, group_callback=worse_half_at_step_48)
    pruned = [m.member for m in result.members if m.reason == "pruned"]
    assert len(pruned) == 2
    assert all(result.members[i].steps == 48 and result.members[i].stopped for i in pruned)
    # members at their last step are not shown (they complete anyway)
    assert seen == {step: 5 if step <= 48 else 3 for step in range(4, 96, 4)}
    for config, got in zip(configs, result.members, strict=True):
        if got.reason == "pruned":
            want = train(data=data, config=config, callback=lambda p: p.step == 48)
        else:
            want = train(data=data, config=config)
        assert_same_run(got, want, rtol=1e-9, acc_tol=0.0)


def test_the_group_callback_may_only_stop_members_it_was_shown() -> None:
    data = synthetic_dataset()
    with pytest.raises(ConfigError, match="stopped member 7"):
        train_lockstep(
            data=data, configs=members(TrainConfig(**FAST)), group_callback=lambda points: [7]
        )


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(hidden=(20,)), "hidden"),
        (dict(batch_norm=True), "batch_norm"),
        (dict(batch_size=20), "batch_size"),
        (dict(seed=4), "seed"),
        (dict(bn_alpha=0.5), "bn_alpha"),
        (dict(monitor_size=100), "monitor_size"),
    ],
)
def test_members_must_share_architecture_data_and_seed(change, field) -> None:
    base = TrainConfig(**FAST)
    with pytest.raises(ConfigError, match=f"share {field}"):
        train_lockstep(
            data=synthetic_dataset(), configs=[base, dataclasses.replace(base, **change)]
        )


def test_bad_calls_are_refused() -> None:
    data = synthetic_dataset()
    with pytest.raises(ConfigError, match="at least one"):
        train_lockstep(data=data, configs=[])
    with pytest.raises(ConfigError, match="callbacks"):
        train_lockstep(data=data, configs=[TrainConfig(**FAST)], callbacks=[None, None])
    with pytest.raises(ConfigError, match="float64"):
        train_lockstep(data=data, configs=[TrainConfig(**FAST, dtype="float64")])


def test_trains_with_one_blas_thread_by_default() -> None:
    result = train_lockstep(data=synthetic_dataset(), configs=[TrainConfig(**FAST)] * 2)
    assert result.blas_threads in (1, None)
    assert all(m.blas_threads == result.blas_threads for m in result.members)


def test_stacked_batchnorm_returns_running_statistics_without_mutating() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(2.0, 3.0, size=(32, 6))
    old = RunningStats(np.zeros(6), np.ones(6))
    out = np.empty_like(z)
    _, _, new = batchnorm_relu_forward(
        z.copy(), np.ones(6), np.zeros(6), running=old, alpha=0.9, out=out
    )
    np.testing.assert_array_equal(old.mean, 0)
    np.testing.assert_array_equal(old.var, 1)
    np.testing.assert_allclose(new.mean, 0.1 * z.mean(0))
    np.testing.assert_allclose(new.var, 0.9 + 0.1 * z.var(0))
    np.testing.assert_allclose(out, np.maximum((z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5), 0))


@pytest.mark.data
def test_real_cifar10_members_match_train(real_data_dir) -> None:
    """On real images (a small subset), a lambda grid in float32 tracks train() closely."""
    data = load_cifar10(data_dir=real_data_dir, n_train=1000, n_val=500, progress=False)
    base = TrainConfig(hidden=(30, 20), batch_norm=True, n_s=50, cycles=1, monitor_size=500)
    configs = [dataclasses.replace(base, lam=lam) for lam in (1e-4, 1e-3, 1e-2, 1e-1)]
    result = train_lockstep(data=data, configs=configs)
    for config, got in zip(configs, result.members, strict=True):
        assert_same_run(got, train(data=data, config=config), rtol=1e-3, acc_tol=0.01)


def test_a_weight_decay_factor_of_zero() -> None:
    """2 lambda eta = 1 (lambda 5, eta 0.1) zeroes the weights before each gradient step:
    the member's weight scale becomes 0 and must be folded in, not divided by."""
    data = synthetic_dataset(dtype="float64")
    base = TrainConfig(**FAST, batch_norm=True, dtype="float64", eta_min=0.1, eta_max=0.1)
    configs = [dataclasses.replace(base, lam=lam) for lam in (5.0, 1e-3)]
    result = train_lockstep(data=data, configs=configs)
    assert all(m.reason == "completed" for m in result.members)
    # at lambda 5 the scores are nearly equal across classes: accuracies hinge on ties
    got, want = result.members[0], train(data=data, config=configs[0])
    assert_same_run(got, want, rtol=1e-5, acc_tol=1.0)
    got, want = result.members[1], train(data=data, config=configs[1])
    assert_same_run(got, want, rtol=1e-9, acc_tol=0.0)
