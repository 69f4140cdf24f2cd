"""The published bar on the real data, default settings (2 cycles, lambda 0.005), as the
mean over seeds 0, 1 and 2 at one BLAS thread (kmlp's default): one seed moves the test
accuracy by about half a point, as much as the margin to the bar."""

from __future__ import annotations

import dataclasses
import statistics

import pytest

from kmlp.network import TrainConfig
from kmlp.network.evaluate import train_and_test

THREE = (50, 50)
NINE = (50, 30, 20, 20, 10, 10, 10, 10)
SEEDS = (0, 1, 2)


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize(
    ("hidden", "batch_norm", "bar"),
    [(THREE, False, 0.525), (THREE, True, 0.530), (NINE, False, 0.45), (NINE, True, 0.51)],
    ids=["3-layer", "3-layer-bn", "9-layer", "9-layer-bn"],
)
def test_mean_test_accuracy_meets_the_published_bar(real_data, hidden, batch_norm, bar) -> None:
    base = TrainConfig(hidden=hidden, batch_norm=batch_norm)
    accuracies = []
    for seed in SEEDS:
        run = train_and_test(data=real_data, config=dataclasses.replace(base, seed=seed))
        assert run.result.blas_threads in (1, None)
        accuracies.append(run.test_accuracy)
        print(
            f"{len(hidden) + 1} layers, BN {batch_norm}, seed {seed}: test "
            f"{run.test_accuracy:.4f}, val {run.result.val_accuracy:.4f}, "
            f"{run.result.seconds_per_epoch:.3f} s/epoch"
        )
    mean = statistics.mean(accuracies)
    print(f"mean {mean:.4f} over seeds {SEEDS}")
    assert mean >= bar
