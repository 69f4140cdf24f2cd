from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kmlp.network import MLP, DivergenceError, TrainConfig, load_model, save_model, train
from kmlp.network.errors import ConfigError
from kmlp.network.layers import RunningStats, batchnorm_forward

FAST = dict(hidden=(20,), batch_size=50, n_s=24, cycles=2, monitor_size=600)


def test_training_learns_the_synthetic_problem(small_data) -> None:
    result = train(data=small_data, config=TrainConfig(**FAST, lam=1e-3))
    assert result.val_accuracy > 0.6  # chance is 0.1
    assert result.steps == 2 * 24 * 2
    assert result.epochs == pytest.approx(96 * 50 / 600)
    assert not result.stopped


def test_history_has_at_least_ten_checkpoints_per_cycle(small_data) -> None:
    result = train(data=small_data, config=TrainConfig(**FAST, batch_norm=True))
    steps = [p.step for p in result.history]
    assert len(steps) >= 10 * 2 and steps == sorted(steps) and steps[-1] == result.steps
    for point in result.history:
        assert point.train_cost >= point.train_loss and 0 <= point.val_accuracy <= 1
    assert result.val_accuracy == result.history[-1].val_accuracy


def test_same_seed_same_result_other_seed_other_result(small_data) -> None:
    config = TrainConfig(**FAST, batch_norm=True, seed=3)
    a, b = train(data=small_data, config=config), train(data=small_data, config=config)
    c = train(data=small_data, config=dataclasses.replace(config, seed=4))
    np.testing.assert_array_equal(a.net.params["W1"], b.net.params["W1"])
    assert not np.array_equal(a.net.params["W1"], c.net.params["W1"])


def test_callback_can_stop_training(small_data) -> None:
    seen = []

    def callback(point):
        seen.append(point.step)
        return len(seen) == 3

    result = train(data=small_data, config=TrainConfig(**FAST), callback=callback)
    assert result.stopped and len(result.history) == 3 and result.steps == seen[-1]


def test_divergence_raises_naming_the_step(small_data) -> None:
    config = TrainConfig(**FAST, eta_min=1e6, eta_max=1e7, init="sigma=10")
    with pytest.raises(DivergenceError) as info:
        train(data=small_data, config=config)
    assert info.value.step >= 0 and f"step {info.value.step}" in str(info.value)


def test_float64_training_keeps_float64(small_data) -> None:
    from tests.conftest import synthetic_dataset

    data = synthetic_dataset(dtype="float64")
    result = train(data=data, config=TrainConfig(**FAST, dtype="float64", batch_norm=True))
    assert all(v.dtype == np.float64 for v in result.net.params.values())
    with pytest.raises(ConfigError):
        train(data=small_data, config=TrainConfig(**FAST, dtype="float64"))


def test_float32_training_keeps_float32(small_data) -> None:
    result = train(data=small_data, config=TrainConfig(**FAST, batch_norm=True))
    assert all(v.dtype == np.float32 for v in result.net.params.values())
    assert all(s.mean.dtype == np.float32 for s in result.net.running.values())


def test_saved_model_loads_back_to_the_same_predictions(small_data, tmp_path) -> None:
    config = TrainConfig(**FAST, batch_norm=True)
    net = train(data=small_data, config=config).net
    path = save_model(net, tmp_path / "model.npz", config=config)
    assert path.exists() and path.with_suffix(".json").exists()
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(small_data.test.X), net.predict(small_data.test.X))
    np.testing.assert_array_equal(loaded.scores(small_data.test.X), net.scores(small_data.test.X))
    with np.load(path, allow_pickle=False) as npz:  # plain arrays, no pickle
        assert "running_mean1" in npz.files


def test_params_layout() -> None:
    net = MLP(layer_sizes=[3072, 50, 50, 10], batch_norm=True, init="he", seed=0, dtype="float64")
    assert set(net.params) == {"W1", "W2", "W3", "b3", "gamma1", "gamma2", "beta1", "beta2"}
    assert net.params["W1"].shape == (3072, 50) and net.params["W3"].shape == (50, 10)
    plain = MLP(layer_sizes=[3072, 50, 10], seed=0)
    assert set(plain.params) == {"W1", "b1", "W2", "b2"} and plain.params["W1"].dtype == np.float32
    assert plain.params["W1"].std() == pytest.approx(np.sqrt(2 / 3072), rel=0.05)
    fixed = MLP(layer_sizes=[3072, 50, 10], init="sigma=1e-3", seed=0)
    assert fixed.params["W2"].std() == pytest.approx(1e-3, rel=0.2)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lam=-1.0),
        dict(init="glorious"),
        dict(init="sigma=-2"),
        dict(hidden=(5, 0)),
        dict(dtype="float16"),
        dict(cycles=0),
        dict(eta_min=0.2, eta_max=0.1),
    ],
)
def test_bad_configuration_is_refused(kwargs) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


def test_config_round_trips_through_a_dict() -> None:
    config = TrainConfig(hidden=(50, 30), batch_norm=True, lam=0.007, init="sigma=1e-3")
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})


def test_batchnorm_running_statistics_are_returned_not_mutated() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(64, 4))
    gamma, beta = np.ones(4), np.zeros(4)
    out, _, first = batchnorm_forward(x, gamma, beta, train=True, running=None)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(0), 1, rtol=1e-4)
    np.testing.assert_allclose(first.mean, x.mean(0))
    np.testing.assert_allclose(first.var, x.var(0))  # biased variance
    old = RunningStats(np.zeros(4), np.ones(4))
    _, _, new = batchnorm_forward(x, gamma, beta, train=True, running=old, alpha=0.9)
    np.testing.assert_array_equal(old.mean, 0)
    np.testing.assert_allclose(new.mean, 0.1 * x.mean(0))
    evald, cache, same = batchnorm_forward(x, gamma, beta, train=False, running=new)
    assert cache is None and same is new
    np.testing.assert_allclose(evald, (x - new.mean) / np.sqrt(new.var + 1e-5))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_sgd_step_is_a_gradient_step(batch_norm: bool) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 12)), rng.integers(0, 10, size=16)
    net = MLP(layer_sizes=[12, 8, 6, 10], batch_norm=batch_norm, seed=1, dtype="float64")
    before = {k: v.copy() for k, v in net.params.items()}
    grads = net.gradients(X, y, 0.02)
    mean_loss = net.cost(X, y, 0.0)
    loss, running = net.sgd_step(X, y, lam=0.02, eta=0.3)
    assert loss == pytest.approx(mean_loss, rel=1e-12)
    for key, value in net.params.items():
        np.testing.assert_allclose(value, before[key] - 0.3 * grads[key], rtol=1e-12, atol=1e-14)
    assert set(running) == ({1, 2} if batch_norm else set())
