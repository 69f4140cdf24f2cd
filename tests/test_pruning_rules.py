"""Pure pruning rules: successive halving of a lockstep group (and the median rule)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kmlp.study.pruning import halving_rule, is_decision_step, median_rule

NAN = math.nan

# (name, accuracies by member, min_group, reduction, members stopped)
HALVING = [
    ("four: the worse two stop", {0: 0.50, 1: 0.40, 2: 0.45, 3: 0.30}, 1, 2, {1, 3}),
    ("five: keep three, stop two", {0: 0.1, 1: 0.5, 2: 0.3, 3: 0.4, 4: 0.2}, 1, 2, {0, 4}),
    ("one member: nothing to halve", {7: 0.3}, 1, 2, set()),
    ("two members: the worse stops", {3: 0.51, 9: 0.49}, 1, 2, {9}),
    ("two with a minimum group of two", {3: 0.51, 9: 0.49}, 2, 2, set()),
    (
        "six with a minimum of four: only two stop",
        dict(enumerate([6, 5, 4, 3, 2, 1])),
        4,
        2,
        {4, 5},
    ),
    ("a tie at the cut keeps every tied member", {0: 0.5, 1: 0.4, 2: 0.4, 3: 0.3}, 1, 2, {3}),
    ("all equal: nothing stops", {0: 0.4, 1: 0.4, 2: 0.4}, 1, 2, set()),
    ("NaN ranks last", {0: 0.5, 1: NAN, 2: 0.4, 3: 0.45}, 1, 2, {1, 2}),
    ("all NaN: nothing stops", {0: NAN, 1: NAN}, 1, 2, set()),
    ("a NaN would be kept: NaNs tie, nothing stops", {0: 0.5, 1: NAN, 2: NAN, 3: NAN}, 1, 2, set()),
    ("reduction three: keep a third", dict(enumerate([1, 2, 3, 4, 5, 6])), 1, 3, {0, 1, 2, 3}),
    ("empty group", {}, 1, 2, set()),
]


@pytest.mark.parametrize(
    "name, values, min_group, reduction, stopped", HALVING, ids=[c[0] for c in HALVING]
)
def test_halving_table(name, values, min_group, reduction, stopped):
    got = halving_rule(values=values, min_group=min_group, reduction=reduction)
    assert got == frozenset(stopped)


def test_halving_properties_over_random_groups():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(0, 20))
        values = {
            int(k): float(v)
            for k, v in zip(
                rng.permutation(100)[:n], np.round(rng.uniform(0, 1, n), 1), strict=True
            )
        }
        min_group = int(rng.integers(1, 5))
        stopped = halving_rule(values=values, min_group=min_group)
        kept = set(values) - stopped
        assert stopped <= set(values)
        assert len(kept) >= min(n, max(math.ceil(n / 2), min_group))
        if stopped and kept:  # every stopped member is worse than every kept one
            assert max(values[m] for m in stopped) < min(values[m] for m in kept)


@pytest.mark.parametrize("kwargs", [dict(min_group=0), dict(reduction=1)])
def test_halving_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        halving_rule(values={0: 0.5}, **kwargs)


# the median rule is unchanged: a few rows to pin it down
MEDIAN = [
    ("below the median", 0.40, 10, [{10: 0.5}, {10: 0.45}, {10: 0.6}], 3, True),
    ("at the median", 0.50, 10, [{10: 0.5}, {10: 0.45}, {10: 0.6}], 3, False),
    ("too few peers", 0.10, 10, [{10: 0.5}, {10: 0.45}], 3, False),
    ("peers without that step", 0.10, 10, [{20: 0.5}, {20: 0.45}, {20: 0.6}], 1, False),
    ("NaN never prunes", NAN, 10, [{10: 0.5}], 1, False),
]


@pytest.mark.parametrize(
    "name, value, step, peers, n_startup, pruned", MEDIAN, ids=[c[0] for c in MEDIAN]
)
def test_median_table(name, value, step, peers, n_startup, pruned):
    assert median_rule(value=value, step=step, peers=peers, n_startup=n_startup) is pruned


@pytest.mark.parametrize(
    "step, previous, expected",
    [(90, 80, False), (100, 90, True), (105, 95, True), (110, 100, False), (300, 290, True)],
)
def test_decision_points_are_warmup_end_and_cycle_ends(step, previous, expected):
    assert (
        is_decision_step(step=step, previous_step=previous, warmup_steps=100, cycle_steps=100)
        is expected
    )
