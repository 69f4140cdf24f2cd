from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--hidden", "50,,x"], "hidden"),
        (["--lam", "-1"], "lam"),
        (["--lam", "nan"], "lam"),
        (["--init", "foo"], "init"),
        (["--init", "sigma=-1"], "sigma"),
        (["--cycles", "0"], "cycles"),
        (["--dtype", "float16"], "dtype"),
        (["--data", "/nonexistent/cifar"], "/nonexistent/cifar"),
    ],
)
def test_bad_training_input_is_one_line(args: list[str], fragment: str) -> None:
    assert_one_line_error(run_cli("train", "--n-train", "100", *args), fragment)


def test_missing_and_corrupt_data_files_are_one_line(tmp_path, real_data_dir) -> None:
    broken = tmp_path / "cifar-10-batches-py"
    broken.mkdir()
    for name in (
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "test_batch",
        "batches.meta",
    ):
        (broken / name).write_bytes((real_data_dir / name).read_bytes())
    assert_one_line_error(run_cli("train", "--data", str(broken)), "data_batch_5")
    (broken / "data_batch_5").write_bytes((real_data_dir / "data_batch_5").read_bytes()[:5000])
    assert_one_line_error(run_cli("train", "--data", str(broken)), "data_batch_5")


def test_train_json_save_and_plot(tmp_path, real_data_dir) -> None:
    model, plot = tmp_path / "m.npz", tmp_path / "curves.png"
    result = run_cli(
        "train",
        "--data",
        str(real_data_dir),
        "--n-train",
        "2000",
        "--n-val",
        "500",
        "--hidden",
        "20",
        "--bn",
        "--cycles",
        "1",
        "--json",
        "--save",
        str(model),
        "--plot",
        str(plot),
    )
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    for key in ("val_accuracy", "test_accuracy", "seconds", "seconds_per_epoch"):
        assert isinstance(summary[key], float)
    assert 0.2 < summary["test_accuracy"] < 1 and summary["config"]["hidden"] == [20]
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"

    from kmlp.network import load_cifar10, load_model

    data = load_cifar10(data_dir=real_data_dir, n_train=2000, n_val=500, progress=False)
    net = load_model(model)
    assert net.accuracy(data.test.X, data.test.y) == pytest.approx(summary["test_accuracy"])
    assert np.all(net.predict(data.test.X[:5]) < 10)


def test_gradcheck_command_json() -> None:
    result = run_cli("gradcheck", "--hidden", "20,10", "--bn", "--json")
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} >= {"W1", "gamma1", "beta2", "W3", "b3"}
    assert max(r["relative_error"] for r in rows) < 1e-6
