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


# Extension past the searched edge: (name, low, high, searched, trials, top_k, margin,
# expected (low, high), extended)
EXTEND_CASES = [
    (
        "best at the upper coarse edge: window centred on it, past the edge",
        -5.0,
        -3.0,
        (-5.0, -3.0),
        [s(0, -3.0, 0.50), s(1, -3.2, 0.49), s(2, -3.1, 0.48), s(3, -4.5, 0.30)],
        3,
        0.1,
        (-3.8, -2.2),  # 0.8 * 2 wide, centred on the best
        True,
    ),
    (
        "best at the lower coarse edge",
        -5.0,
        -1.0,
        (-5.0, -1.0),
        [s(0, -4.8, 0.50), s(1, -4.5, 0.49), s(2, -2.0, 0.30)],
        2,
        0.1,
        (-6.4, -3.2),
        True,
    ),
    (
        "best just inside the outer tenth (edge of the tenth included)",
        -5.0,
        -3.0,
        (-5.0, -3.0),
        [s(0, -3.2, 0.50)],
        1,
        0.1,
        (-4.0, -2.4),
        True,
    ),
    (
        "best just outside the outer tenth: ordinary narrowing",
        -5.0,
        -3.0,
        (-5.0, -3.0),
        [s(0, -3.21, 0.50)],
        1,
        0.1,
        (-3.41, -3.01),
        False,
    ),
    (
        "the upper side lies inside the searched extent: nests as before",
        -3.4,
        -1.6,
        (-5.0, -1.0),
        [s(0, -1.65, 0.55), s(1, -1.7, 0.54)],
        2,
        0.1,
        (-1.88, -1.6),
        False,
    ),
    (
        "after an extended stage its outer edge is the searched edge: extends again",
        -3.3,
        -2.7,
        (-5.0, -2.7),
        [s(0, -2.72, 0.55), s(1, -2.8, 0.54), s(2, -3.0, 0.50)],
        2,
        0.1,
        (-2.96, -2.48),
        True,
    ),
    (
        "best in the lower outer tenth, but only the upper side is at the searched edge",
        -4.0,
        -2.0,
        (-5.0, -2.0),
        [s(0, -3.9, 0.55)],
        1,
        0.1,
        (-4.0, -3.7),
        False,
    ),
    (
        "without a searched extent nothing extends (the previous behaviour)",
        -5.0,
        -3.0,
        None,
        [s(0, -3.0, 0.50), s(1, -3.2, 0.49)],
        2,
        0.1,
        (-3.4, -3.0),
        False,
    ),
]


@pytest.mark.parametrize(
    "name, low, high, searched, trials, top_k, margin, expected, extended",
    EXTEND_CASES,
    ids=[c[0] for c in EXTEND_CASES],
)
def test_extension_table(name, low, high, searched, trials, top_k, margin, expected, extended):
    got = narrow(low=low, high=high, trials=trials, top_k=top_k, margin=margin, searched=searched)
    assert (got.low, got.high) == pytest.approx(expected)
    assert got.extended is extended


def test_extension_properties_over_random_inputs():
    """Whatever the trials: strictly narrower, contains the best; an extended range passes
    exactly one searched edge, by less than its own width; otherwise it nests."""
    rng = np.random.default_rng(99)
    extended = 0
    for _ in range(3000):
        low = rng.uniform(-8, 0)
        high = low + rng.uniform(0.05, 6)
        searched = (
            low - rng.choice([0.0, rng.uniform(0, 2)]),
            high + rng.choice([0.0, rng.uniform(0, 2)]),
        )
        n = int(rng.integers(1, 30))
        xs = rng.uniform(low, high, size=n)
        values = rng.uniform(0, 1, size=n)
        best = int(np.argmax(values))
        xs[best] = rng.choice([low, high, rng.uniform(low, high), low + 0.05 * (high - low)])
        trials = [s(i, float(x), float(v)) for i, (x, v) in enumerate(zip(xs, values, strict=True))]
        top_k = int(rng.integers(1, 8))
        margin = float(rng.uniform(0.01, 0.45))
        got = narrow(
            low=low, high=high, trials=trials, top_k=top_k, margin=margin, searched=searched
        )
        best_x = rank(trials)[0].log10_lambda
        width, new_width = high - low, got.high - got.low
        assert 0 < new_width <= MAX_RATIO * width * (1 + 1e-12)
        assert got.low <= best_x <= got.high
        if not got.extended:
            assert low <= got.low < got.high <= high
            continue
        extended += 1
        past_high, past_low = got.high - high, low - got.low
        assert (past_high > 0) != (past_low > 0)  # exactly one side passes its edge
        past = max(past_high, past_low)
        assert 0.3 * width - 1e-9 <= past <= new_width / 2 + 1e-9
        if past_high > 0:
            assert high >= searched[1] and best_x >= high - 0.1 * width and got.low > low
        else:
            assert low <= searched[0] and best_x <= low + 0.1 * width and got.high < high
    assert extended > 300  # the cases above were exercised


def test_a_coarse_range_that_excludes_the_optimum_is_left_stage_by_stage():
    """Accuracy peaks at log10 lambda -2.3; the coarse range -5..-3 excludes it. The first
    narrowing extends past -3 (flagged) to a range that holds the peak; the last range
    still holds it."""
    rng = np.random.default_rng(5)

    def accuracy(x: float) -> float:
        return 0.55 - 0.02 * (x + 2.3) ** 2 + rng.normal(0, 0.001)

    ranges = [(-5.0, -3.0)]
    flags = []
    trials: list[Scored] = []
    for _stage in range(6):
        low, high = ranges[-1]
        for x in rng.uniform(low, high, size=20):
            trials.append(s(len(trials), float(x), accuracy(float(x))))
        searched = (min(r[0] for r in ranges), max(r[1] for r in ranges))
        got = narrow(low=low, high=high, trials=trials, top_k=5, margin=0.1, searched=searched)
        ranges.append((got.low, got.high))
        flags.append(got.extended)
    assert flags[0] and ranges[1][1] > -3.0  # the first narrowing leaves the coarse range
    assert ranges[1][0] <= -2.3 <= ranges[1][1]
    assert abs(rank(trials)[0].log10_lambda + 2.3) < 0.1
    assert ranges[-1][0] <= -2.3 <= ranges[-1][1] and not flags[-1]


def test_searched_extent_must_contain_the_current_range():
    with pytest.raises(StudyError, match="searched extent"):
        narrow(low=-5, high=-1, trials=[s(0, -2, 0.5)], top_k=1, margin=0.1, searched=(-4, -1))
