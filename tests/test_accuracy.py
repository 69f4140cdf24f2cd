"""The published bar on the real data, default settings (2 cycles, lambda 0.005, seed 0)."""

from __future__ import annotations

import pytest

from network import TrainConfig
from network.evaluate import train_and_test

THREE = (50, 50)
NINE = (50, 30, 20, 20, 10, 10, 10, 10)


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize(
    ("hidden", "batch_norm", "bar"),
    [(THREE, False, 0.525), (THREE, True, 0.530), (NINE, False, 0.45), (NINE, True, 0.51)],
    ids=["3-layer", "3-layer-bn", "9-layer", "9-layer-bn"],
)
def test_test_accuracy_meets_the_published_bar(real_data, hidden, batch_norm, bar) -> None:
    run = train_and_test(data=real_data, config=TrainConfig(hidden=hidden, batch_norm=batch_norm))
    print(
        f"{len(hidden) + 1} layers, BN {batch_norm}: test {run.test_accuracy:.4f}, "
        f"val {run.result.val_accuracy:.4f}, {run.result.seconds_per_epoch:.3f} s/epoch"
    )
    assert run.test_accuracy >= bar
