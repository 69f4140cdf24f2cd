"""The coarse-to-fine narrowing rule: ranges nest, shrink and contain the best trial."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from kmlp.study.errors import StudyError
from kmlp.study.narrowing import MAX_RATIO, Scored, narrow, rank


def s(number: int, x: float, value: float) -> Scored:
    return Scored(number=number, log10_lambda=x, value=value)


# (name, low, high, trials, top_k, margin, expected (low, high), expected top, capped)
CASES = [
    (
        "top-3 in the middle, widened by 0.1 * 4 each side",
        -5.0,
        -1.0,
        [s(0, -3.0, 0.50), s(1, -2.5, 0.52), s(2, -2.0, 0.51), s(3, -4.5, 0.30), s(4, -1.2, 0.40)],
        3,
        0.1,
        (-3.4, -1.6),
        (1, 2, 0),
        False,
    ),
    (
        "span clipped at the upper edge",
        -5.0,
        -1.0,
        [s(0, -1.1, 0.55), s(1, -1.5, 0.54), s(2, -4.0, 0.20)],
        2,
        0.1,
        (-1.9, -1.0),
        (0, 1),
        False,
    ),
    (
        "span clipped at the lower edge",
        -5.0,
        -1.0,
        [s(0, -5.0, 0.55), s(1, -4.9, 0.54), s(2, -2.0, 0.20)],
        2,
        0.1,
        (-5.0, -4.5),
        (0, 1),
        False,
    ),
    (
        "one trial: margin on both sides",
        -3.0,
        -1.0,
        [s(7, -2.0, 0.5)],
        5,
        0.1,
        (-2.2, -1.8),
        (7,),
        False,
    ),
    (
        "top trials spread over the whole range: capped window centred on the best",
        -5.0,
        -1.0,
        [s(0, -4.9, 0.50), s(1, -3.0, 0.53), s(2, -1.1, 0.51)],
        3,
        0.1,
        (-4.6, -1.4),
        (1, 2, 0),
        True,
    ),
    (
        "capped window shifted inside at the lower edge",
        -5.0,
        -1.0,
        [s(0, -4.9, 0.55), s(1, -1.1, 0.50)],
        2,
        0.1,
        (-5.0, -1.8),
        (0, 1),
        True,
    ),
    (
        "capped window shifted inside at the upper edge",
        -5.0,
        -1.0,
        [s(0, -4.9, 0.45), s(1, -1.05, 0.50)],
        2,
        0.1,
        (-4.2, -1.0),
        (1, 0),
        True,
    ),
    (
        "ties go to the earlier trial",
        -4.0,
        0.0,
        [s(5, -1.0, 0.5), s(2, -3.0, 0.5), s(9, -2.0, 0.4)],
        1,
        0.05,
        (-3.2, -2.8),
        (2,),
        False,
    ),
    (
        "trials of an earlier, wider stage outside the range are clipped away",
        -3.0,
        -1.0,
        [s(0, -4.5, 0.52), s(1, -2.0, 0.55), s(2, -1.8, 0.53)],
        3,
        0.1,
        (-3.0, -1.6),
        (1, 2, 0),
        False,
    ),
]


@pytest.mark.parametrize(
    "name, low, high, trials, top_k, margin, expected, top, capped",
    CASES,
    ids=[c[0] for c in CASES],
)
def test_narrow_table(name, low, high, trials, top_k, margin, expected, top, capped):
    got = narrow(low=low, high=high, trials=trials, top_k=top_k, margin=margin)
    assert got.low == pytest.approx(expected[0])
    assert got.high == pytest.approx(expected[1])
    assert got.top == top
    assert got.capped is capped


def test_narrow_properties_over_random_inputs():
    """Whatever the trials: the range nests, shrinks strictly, and contains the best trial."""
    rng = np.random.default_rng(1234)
    for _ in range(3000):
        low = rng.uniform(-8, 0)
        high = low + rng.choice([rng.uniform(1e-3, 0.1), rng.uniform(0.1, 6)])
        n = int(rng.integers(1, 40))
        # Trials may come from earlier stages (wider); the best lies in [low, high].
        xs = rng.uniform(low - 2, high + 2, size=n)
        values = rng.choice([rng.uniform(0, 1, size=n), np.round(rng.uniform(0, 1, size=n), 1)])
        best = int(np.argmax(values))
        xs[best] = rng.choice([low, high, rng.uniform(low, high)])
        values[best] = values.max()
        trials = [s(i, float(x), float(v)) for i, (x, v) in enumerate(zip(xs, values, strict=True))]
        top_k = int(rng.integers(1, 10))
        margin = float(rng.uniform(0.01, 0.45))
        got = narrow(low=low, high=high, trials=trials, top_k=top_k, margin=margin)
        best_x = rank(trials)[0].log10_lambda
        assert low <= got.low < got.high <= high
        assert got.high - got.low < high - low
        assert got.high - got.low <= MAX_RATIO * (high - low) * (1 + 1e-12)
        assert got.low <= best_x <= got.high
        assert len(got.top) == min(top_k, n)


def test_repeated_narrowing_keeps_nesting_and_the_best():
    """Simulate stages: each samples its range; every later range nests in the earlier."""
    rng = np.random.default_rng(7)

    def accuracy(x: float) -> float:
        return 0.55 - 0.03 * (x + 2.3) ** 2 + rng.normal(0, 0.004)

    for _ in range(200):
        ranges = [(-5.0, -1.0)]
        trials: list[Scored] = []
        for _stage in range(5):
            low, high = ranges[-1]
            for x in rng.uniform(low, high, size=int(rng.integers(1, 12))):
                trials.append(s(len(trials), float(x), accuracy(float(x))))
            got = narrow(low=low, high=high, trials=trials, top_k=5, margin=0.1)
            ranges.append((got.low, got.high))
            assert got.low <= rank(trials)[0].log10_lambda <= got.high
        for (a_lo, a_hi), (b_lo, b_hi) in itertools.pairwise(ranges):
            assert a_lo <= b_lo < b_hi <= a_hi and b_hi - b_lo < a_hi - a_lo


def test_narrow_refuses_nothing_to_narrow_from():
    with pytest.raises(StudyError, match="no completed trial"):
        narrow(low=-5, high=-1, trials=[], top_k=5, margin=0.1)


def test_narrow_refuses_empty_range():
    with pytest.raises(StudyError, match="low must be < high"):
        narrow(low=-1, high=-1, trials=[s(0, -1, 0.5)], top_k=5, margin=0.1)


def test_narrow_refuses_best_outside_range():
    with pytest.raises(StudyError, match="outside"):
        narrow(low=-3, high=-2, trials=[s(0, -1.5, 0.5)], top_k=1, margin=0.1)


def test_narrowed_range_is_finite():
    got = narrow(low=-5, high=-1, trials=[s(0, -2, 0.5)], top_k=1, margin=0.1)
    assert math.isfinite(got.low) and math.isfinite(got.high)
