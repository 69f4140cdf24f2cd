"""The λ interval within noise of the best: synthetic curves whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kmlp.study.errors import StudyError
from kmlp.study.interval import lambda_interval
from kmlp.study.narrowing import Scored, rank


def trials_of(xs, ys) -> list[Scored]:
    return [Scored(i, float(x), float(y)) for i, (x, y) in enumerate(zip(xs, ys, strict=True))]


def binomial_se(p: float, n_val: int) -> float:
    return math.sqrt(p * (1 - p) / n_val)


# (name, peak x0, peak accuracy, curvature a, n_val): accuracy = top - a (x - x0)^2 on
# 60 evenly spread trials over -5..-1, no noise. The true interval is x0 +- sqrt(se / a)
# with se the binomial standard error at the top.
QUADRATICS = [
    ("default-like peak, 5000 images", -2.3, 0.55, 0.02, 5000),
    ("sharper peak", -2.3, 0.55, 0.06, 5000),
    ("peak lower in the range", -3.5, 0.50, 0.05, 5000),
    ("fewer validation images: wider", -2.3, 0.55, 0.02, 1000),
    ("higher accuracy: smaller binomial error", -3.0, 0.80, 0.03, 5000),
]


@pytest.mark.parametrize("name, x0, top, a, n_val", QUADRATICS, ids=[q[0] for q in QUADRATICS])
def test_noiseless_quadratic_gives_the_true_interval(name, x0, top, a, n_val):
    xs = np.linspace(-5, -1, 60)
    got = lambda_interval(trials=trials_of(xs, top - a * (xs - x0) ** 2), n_val=n_val)
    half = math.sqrt(binomial_se(top, n_val) / a)
    assert got.noise == pytest.approx(binomial_se(top, n_val), rel=0.05)
    assert got.fitted_log10_lambda == pytest.approx(x0, abs=0.1)
    assert got.log10_low == pytest.approx(max(-5, x0 - half), abs=0.12)
    assert got.log10_high == pytest.approx(min(-1, x0 + half), abs=0.12)
    assert got.low == pytest.approx(10**got.log10_low) and got.high == 10**got.log10_high
    assert got.log10_low <= got.best_log10_lambda <= got.log10_high


def test_noisy_quadratic_is_close_and_the_extra_noise_is_found():
    rng = np.random.default_rng(3)
    xs = rng.uniform(-5, -1, 80)
    ys = 0.55 - 0.02 * (xs + 2.3) ** 2 + rng.normal(0, 0.02, 80)  # 3x the binomial error
    got = lambda_interval(trials=trials_of(xs, ys), n_val=5000)
    assert got.extra_noise > binomial_se(0.55, 5000)
    assert got.fitted_log10_lambda == pytest.approx(-2.3, abs=0.3)
    assert got.log10_low < -2.3 < got.log10_high
    assert got.noise > binomial_se(0.55, 5000)  # the interval widens with the noise


def test_a_flat_curve_keeps_the_whole_searched_span():
    xs = np.linspace(-5, -1, 30)
    got = lambda_interval(trials=trials_of(xs, np.full(30, 0.5)), n_val=5000)
    assert (got.log10_low, got.log10_high) == (-5.0, -1.0)
    assert got.at_edge


def test_an_optimum_beyond_the_searched_edge_is_flagged():
    xs = np.linspace(-5, -3, 20)
    got = lambda_interval(trials=trials_of(xs, 0.40 + 0.05 * (xs + 5)), n_val=5000)
    assert got.log10_high == -3.0 and got.at_edge
    assert got.log10_low > -3.5  # a steep slope: only the top end is within noise


@pytest.mark.parametrize(
    "xs, ys",
    [
        ([-2.0], [0.5]),
        ([-3.0, -2.0], [0.50, 0.52]),
        ([-4.0, -2.5, -1.5], [0.45, 0.53, 0.50]),
    ],
    ids=["one trial", "two trials", "three trials"],
)
def test_few_trials(xs, ys):
    got = lambda_interval(trials=trials_of(xs, ys), n_val=5000)
    best = rank(trials_of(xs, ys))[0].log10_lambda
    assert got.log10_low <= best <= got.log10_high
    assert min(xs) <= got.log10_low <= got.log10_high <= max(xs)
    assert got.extra_noise == 0.0 and got.n_trials == len(xs)
    if len(xs) == 1:
        assert (got.log10_low, got.log10_high) == (-2.0, -2.0) and not got.at_edge


def test_duplicate_lambdas():
    xs = [-3.0] * 5 + [-2.0] * 5 + [-1.5] * 5
    ys = [0.48, 0.49, 0.47, 0.48, 0.49, 0.55, 0.54, 0.55, 0.56, 0.55, 0.52, 0.51, 0.52, 0.53, 0.51]
    got = lambda_interval(trials=trials_of(xs, ys), n_val=5000)
    assert got.log10_low < -2.0 < got.log10_high
    assert got.log10_low > -3.0  # -3 is 7 points worse: outside


def test_an_outlying_best_trial_is_still_bracketed():
    """The best trial is a lucky outlier far from where the fitted curve peaks."""
    xs = np.linspace(-5, -1, 40)
    ys = 0.55 - 0.05 * (xs + 2.0) ** 2
    ys[3] = 0.56  # at x = -4.69
    got = lambda_interval(trials=trials_of(xs, ys), n_val=5000)
    assert got.best_log10_lambda == pytest.approx(xs[3])
    assert got.log10_low == pytest.approx(xs[3]) and got.log10_high > -2.0
    given = lambda_interval(trials=trials_of(xs, ys), n_val=5000, best_log10_lambda=-1.0)
    assert given.log10_high == -1.0


def test_interval_properties_over_random_inputs():
    rng = np.random.default_rng(11)
    for _ in range(150):
        n = int(rng.integers(1, 40))
        xs = rng.uniform(-6, 0, n)
        if rng.uniform() < 0.3:
            xs = np.round(xs)  # duplicates
        ys = np.clip(rng.uniform(0.1, 0.6) - rng.uniform(0, 0.1) * (xs + 3) ** 2, 0, 1)
        ys = np.clip(ys + rng.normal(0, rng.choice([0.0, 0.01]), n), 0, 1)
        trials = trials_of(xs, ys)
        got = lambda_interval(trials=trials, n_val=int(rng.choice([500, 5000])))
        best = rank(trials)[0].log10_lambda
        assert xs.min() <= got.log10_low <= best <= got.log10_high <= xs.max()
        assert got.noise > 0 and got.threshold < got.fitted_accuracy
        assert len(got.curve.x) == len(got.curve.mean) == len(got.curve.std)
        assert all(s >= 0 for s in got.curve.std)
        record = got.to_dict()
        assert record["lambda_interval"][0] <= 10**best <= record["lambda_interval"][1]


@pytest.mark.parametrize(
    "trials, n_val, match",
    [
        ([], 5000, "no completed trial"),
        ([Scored(0, -2.0, 0.5)], 0, "n_val"),
        ([Scored(0, -2.0, 1.5)], 5000, "fractions"),
        ([Scored(0, math.nan, 0.5)], 5000, "finite"),
    ],
)
def test_bad_input_is_refused(trials, n_val, match):
    with pytest.raises(StudyError, match=match):
        lambda_interval(trials=trials, n_val=n_val)


def test_an_end_inside_the_searched_ranges_is_no_edge():
    # halving pruned the trials beyond -2 (they did worse): the completed trials end at -2,
    # well inside the searched -5..-1, so the optimum is not flagged as beyond
    xs = np.linspace(-4, -2, 20)
    ys = 0.40 + 0.05 * (xs + 5)
    assert lambda_interval(trials=trials_of(xs, ys), n_val=5000).at_edge
    got = lambda_interval(trials=trials_of(xs, ys), n_val=5000, span=(-5.0, -1.0))
    assert got.log10_high == -2.0 and not got.at_edge
    near = lambda_interval(trials=trials_of(xs, ys), n_val=5000, span=(-5.0, -1.9))
    assert near.at_edge  # -2 is in the outer tenth of -5..-1.9
