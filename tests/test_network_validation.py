"""Bad values to the network package are one-line ConfigErrors, decided before any work:
configurations (as exports carry them through ``TrainConfig.from_dict``), network sizes
that cannot fit in memory, gradient-check steps, output paths, BLAS thread counts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from kmlp.network import MLP, TrainConfig, plot_curves, save_model
from kmlp.network.checks import format_bytes, physical_memory, show
from kmlp.network.curves import check_plot_path
from kmlp.network.errors import ConfigError, DataError
from kmlp.network.gradcheck import check_step, gradient_check, numerical_gradients
from kmlp.network.persist import check_model_path
from kmlp.network.threads import check_blas_threads, usable_cores

HUGE = 10**5000  # what json.loads gives for a 5000-digit integer in an export

BAD_CONFIG_VALUES = [
    ({"seed": -1}, "seed must be from 0"),
    ({"seed": "3"}, "seed must be a whole number, got '3'"),
    ({"seed": 1.0}, "seed must be a whole number, got 1.0"),
    ({"seed": HUGE}, r"seed must be from 0 to 2\^63-1, got a 5001-digit number"),
    ({"batch_size": 100.0}, "batch size must be a whole number, got 100.0"),
    ({"batch_size": 0}, "batch size must be from 1"),
    ({"batch_size": HUGE}, "5001-digit"),
    ({"cycles": 2.5}, "cycles must be a whole number"),
    ({"cycles": 2.0}, "cycles must be a whole number"),
    ({"cycles": True}, "cycles must be a whole number, got True"),
    ({"cycles": 10**7}, "checkpoints"),
    ({"n_s": "10"}, "n_s must be a whole number"),
    ({"n_s": -5}, "n_s must be from 1"),
    ({"hidden": "55"}, "hidden widths must be a list of whole numbers, got '55'"),
    ({"hidden": 55}, "hidden widths must be a list"),
    ({"hidden": [5.0]}, "hidden widths entry must be a whole number"),
    ({"hidden": [0]}, "hidden widths entry must be from 1"),
    ({"hidden": [HUGE]}, "5001-digit"),
    ({"hidden": {"a": 1}}, "hidden widths must be a list"),
    ({"batch_norm": "false"}, "batch_norm must be true or false, got 'false'"),
    ({"batch_norm": 1}, "batch_norm must be true or false"),
    ({"lam": "0.1"}, "lambda must be a number"),
    ({"lam": float("nan")}, "lambda must be a finite number"),
    ({"lam": float("inf")}, "lambda must be a finite number"),
    ({"lam": HUGE}, "lambda must be a finite number, got a 5001-digit number"),
    ({"lam": -1e-3}, r"lambda must be in \[0, inf\]"),
    ({"eta_min": 0}, r"eta_min must be in \(0, inf\]"),
    ({"eta_max": float("inf")}, "eta_max must be a finite number"),
    ({"eta_min": 0.2, "eta_max": 0.1}, "need min <= max"),
    ({"bn_alpha": 1.0}, r"bn_alpha must be in \[0, 1\)"),
    ({"bn_alpha": None}, "bn_alpha must be a number"),
    ({"init": "sigma=nan"}, "sigma must be a positive number"),
    ({"init": "sigma=inf"}, "sigma must be a positive number"),
    ({"init": "sigma=1e999"}, "sigma must be a positive number"),
    ({"init": "sigma=0"}, "sigma must be a positive number"),
    ({"init": "sigma=1e31"}, "up to 1e"),
    ({"init": ["he"]}, "init must be a string"),
    (
        {"init": "x" * 5000},
        r"init must be he, xavier or sigma=<std>, got 'xxx.*\(5002 characters\)",
    ),
    ({"dtype": "float16"}, "dtype 'float16'"),
    ({"dtype": 32}, "dtype must be a string"),
    ({"checkpoints_per_cycle": 0}, "checkpoints_per_cycle must be from 1"),
    ({"monitor_size": 0.5}, "monitor_size must be a whole number"),
]


@pytest.mark.parametrize(("values", "complaint"), BAD_CONFIG_VALUES)
def test_bad_configuration_values_are_one_line(values, complaint):
    for build in (lambda: TrainConfig(**values), lambda: TrainConfig.from_dict(values)):
        with pytest.raises(ConfigError, match=complaint) as err:
            build()
        message = str(err.value)
        assert "\n" not in message and len(message) < 300, message


def test_an_export_config_with_hostile_types_is_refused_from_json():
    """The whole path an export takes: JSON text -> dict -> TrainConfig."""
    good = TrainConfig(hidden=(10,), seed=4).to_dict()
    assert TrainConfig.from_dict(json.loads(json.dumps(good))) == TrainConfig(hidden=(10,), seed=4)
    for key, value in [("batch_size", 100.5), ("cycles", 3.0), ("seed", "4"), ("hidden", "55")]:
        text = json.dumps({**good, key: value})
        with pytest.raises(ConfigError):
            TrainConfig.from_dict(json.loads(text))
    for not_a_dict in ([1, 2], "config", None, 5):
        with pytest.raises(ConfigError, match="must be a JSON object"):
            TrainConfig.from_dict(not_a_dict)
    with pytest.raises(ConfigError, match="unknown training configuration keys: 'colour'"):
        TrainConfig.from_dict({**good, "colour": "red"})


def test_valid_values_are_normalised():
    config = TrainConfig(hidden=[np.int64(20)], lam=0, seed=np.int64(3), eta_min=np.float32(1e-5))
    assert config.hidden == (20,) and type(config.hidden[0]) is int
    assert config.lam == 0.0 and type(config.lam) is float
    assert config.seed == 3 and type(config.seed) is int
    assert config == TrainConfig.from_dict(config.to_dict())


# ---------------------------------------------------------------- memory


def test_sizes_that_cannot_fit_are_refused_with_the_estimate():
    memory = physical_memory()
    assert memory is not None and memory > 10**8
    config = TrainConfig(hidden=(100_000_000,))
    needed = config.memory_needed()
    # the first layer's float32 weights alone are 3072 x 1e8 x 4 bytes
    assert needed > 3072 * 100_000_000 * 4 > memory
    with pytest.raises(ConfigError) as err:
        config.check_memory()
    assert format_bytes(needed) in str(err.value) and format_bytes(memory) in str(err.value)
    TrainConfig().check_memory()  # the method's network fits
    assert TrainConfig().memory_needed() > 60000 * 3072 * 4  # the data as float32


def test_mlp_refuses_an_absurd_width_before_allocating():
    with pytest.raises(ConfigError, match=r"layer sizes .* needs about .* TB of memory"):
        MLP(layer_sizes=[3072, 100_000_000, 10])
    for sizes, complaint in [
        ([3072], r"need \[d, ..., c\]"),
        ([3072, 0, 10], "from 1"),
        ([3072, 5.5, 10], "whole number"),
        ("3072", "must be a list"),
    ]:
        with pytest.raises(ConfigError, match=complaint):
            MLP(layer_sizes=sizes)
    with pytest.raises(ConfigError, match="seed must be from 0"):
        MLP(layer_sizes=[4, 3], seed=-1)
    with pytest.raises(ConfigError, match="bn_eps"):
        MLP(layer_sizes=[4, 3], bn_eps=float("nan"))


def test_format_bytes_and_show_stay_short():
    assert format_bytes(999) == "999 bytes" and format_bytes(1_500_000) == "1.5 MB"
    assert format_bytes(10**40) == "about 10^40 bytes"
    assert show(HUGE) == "a 5001-digit number" and show(-(10**20)) == "a 21-digit number"
    assert len(show("x" * 10_000)) < 80 and "\n" not in show("a\nb")


# ---------------------------------------------------------------- gradient check step


@pytest.mark.parametrize("h", [0.0, -1e-5, float("nan"), float("inf"), -float("inf"), 2.0, "1e-5"])
def test_bad_gradient_check_steps_are_refused(h):
    with pytest.raises(ConfigError, match="gradient-check step h"):
        check_step(h)
    net = MLP(layer_sizes=[3, 2], seed=0, dtype="float64")
    X, y = np.ones((2, 3)), np.array([0, 1])
    with pytest.raises(ConfigError):
        numerical_gradients(net, X, y, 0.0, h=h)
    with pytest.raises(ConfigError):
        gradient_check(net, X, y, 0.0, h=h)


# ---------------------------------------------------------------- output paths


def test_output_paths_are_checked_before_training(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    refusals = [
        (lambda: check_model_path(folder, name="--save"), "is a folder"),
        (lambda: check_model_path(f"{tmp_path}/new{os.sep}", name="--save"), "is a folder"),
        (lambda: check_model_path(a_file / "m.npz", name="--save"), "is not a folder"),
        (lambda: check_model_path("/proc/kmlp/m.npz", name="--save"), "cannot write there"),
        (lambda: check_model_path(tmp_path / ("x" * 300), name="--save"), "too long"),
        (lambda: check_plot_path(tmp_path / "x.xyz", name="--plot"), "unknown image format 'xyz'"),
        (lambda: check_plot_path(folder, name="--plot"), "is a folder"),
        (lambda: check_plot_path("/proc/kmlp/x.png", name="--plot"), "cannot write there"),
        (lambda: check_plot_path("", name="--plot"), "an empty path"),
    ]
    for check, complaint in refusals:
        with pytest.raises(ConfigError, match=complaint) as err:
            check()
        assert str(err.value).startswith("--"), err.value
        assert "\n" not in str(err.value)
    # nothing was created by checking (the write probe is removed at once)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert check_model_path(tmp_path / "new" / "m") == tmp_path / "new" / "m.npz"
    assert check_plot_path(tmp_path / "c.PDF") == tmp_path / "c.PDF"
    assert not (tmp_path / "new").exists()


def test_writing_to_an_unwritable_place_later_is_one_data_error(tmp_path):
    net = MLP(layer_sizes=[4, 3], seed=0)
    with pytest.raises(DataError, match="cannot save the model"):
        save_model(net, "/proc/kmlp/model.npz")
    history = {k: [0.0, 1.0] for k in ("step", "train_loss", "val_loss", "train_cost")}
    history |= {k: [0.0, 1.0] for k in ("val_cost", "train_accuracy", "val_accuracy")}
    with pytest.raises(DataError, match="cannot write the plot"):
        plot_curves(history, tmp_path / "curves.xyz")
    with pytest.raises(DataError, match="cannot write the plot"):
        plot_curves(history, Path("/proc/kmlp/c.png"))
    assert plot_curves(history, tmp_path / "c.svg").read_text().startswith("<?xml")


# ---------------------------------------------------------------- BLAS threads


def test_thread_counts_above_the_cores_are_refused():
    cores = usable_cores()
    assert check_blas_threads(cores) == cores
    for threads, complaint in [
        (cores + 1, f"more than the {cores} core"),
        (1_000_000, f"use 1 to {cores}"),
        (0, "BLAS threads must be from 1"),
        (2.0, "must be a whole number"),
        (HUGE, "5001-digit"),
    ]:
        with pytest.raises(ConfigError, match=complaint):
            check_blas_threads(threads)
