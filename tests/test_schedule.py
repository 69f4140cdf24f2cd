from __future__ import annotations

import pytest

from kmlp.network.schedule import cyclical_lr
from kmlp.network.training import checkpoint_steps

LO, HI = 1e-5, 1e-1


@pytest.mark.parametrize(
    ("step", "n_s", "expected"),
    [
        (0, 10, LO),
        (5, 10, LO + 0.5 * (HI - LO)),
        (10, 10, HI),
        (15, 10, LO + 0.5 * (HI - LO)),
        (20, 10, LO),  # a new cycle starts
        (30, 10, HI),
        (2250, 2250, HI),
        (4500, 2250, LO),
        (1125, 2250, LO + 0.5 * (HI - LO)),
        (3375, 2250, LO + 0.5 * (HI - LO)),
        (1, 1, HI),
        (2, 1, LO),
    ],
)
def test_cyclical_lr_table(step: int, n_s: int, expected: float) -> None:
    assert cyclical_lr(step, eta_min=LO, eta_max=HI, n_s=n_s) == pytest.approx(expected)


def test_cyclical_lr_stays_in_range_and_is_periodic() -> None:
    values = [cyclical_lr(s, eta_min=LO, eta_max=HI, n_s=7) for s in range(100)]
    assert min(values) >= LO and max(values) <= HI
    assert values[:14] == values[14:28]


@pytest.mark.parametrize(
    ("total", "n_s", "per_cycle", "expected"),
    [
        (20, 10, 10, list(range(2, 21, 2))),
        (9000, 2250, 10, list(range(450, 9001, 450))),
        (25, 10, 10, [*range(2, 25, 2), 25]),  # the last step is always a checkpoint
        (3, 10, 10, [2, 3]),  # a run cut short still ends on a checkpoint
        (1, 1, 10, [1]),
    ],
)
def test_checkpoint_steps_table(total: int, n_s: int, per_cycle: int, expected: list[int]) -> None:
    assert checkpoint_steps(total_steps=total, n_s=n_s, per_cycle=per_cycle) == expected
