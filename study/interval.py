"""A best λ with its uncertainty: the λ values whose accuracy is within noise of the best.

Fit. Validation accuracy against x = log10 λ over all completed trials is fitted with a
Gaussian process (squared-exponential kernel, constant mean = the trials' mean accuracy),
a small NumPy implementation. Why a GP rather than a local quadratic (LOESS): a study has
anywhere from 1 to ~100 trials, unevenly spread (dense where the stages narrowed, sparse
in the coarse range); a GP needs no bandwidth to choose and adapts to that spread, takes
each trial's noise as known rather than estimating it from neighbours, behaves with 1-3
trials and duplicates (it falls back to the mean, shrinking towards the data), and gives
a posterior band to draw. LOESS needs enough neighbours in every window, which the coarse
stage's sparse edges do not have. Length scale and signal amplitude are chosen by maximum
marginal likelihood over a grid (no optimiser, so no SciPy and no local optima).

Noise. Each trial's accuracy p is an average over the n_val validation images, so its
sampling noise is the binomial standard error sqrt(p (1 - p) / n_val): 0.7 points at p =
0.5 on 5000 images, about what a change of seed or float rounding moves it. The fit adds
one homoscedastic variance, chosen with the kernel's parameters by maximum marginal
likelihood, for scatter beyond that (training noise); with fewer than 4 trials it is 0.
The noise of the best is ``noise = sqrt(p* (1 - p*) / n_val + extra^2)`` at the fitted
best accuracy p*.

Interval. On a grid over the searched span (lowest to highest log10 λ tried; the fit is
not extrapolated), the fitted curve's maximum p* at x* defines the threshold p* - z *
noise (z = 1 by default). The interval is the stretch of grid around x* where the fitted
accuracy stays at or above the threshold, widened if needed to include the best trial's λ
(so it always brackets the exported λ). ``at_edge`` says the interval reaches an end of
the fitted trials that lies in the outer tenth of the searched ranges (``span``; default:
the fitted trials' own span): the optimum may lie beyond it. An end well inside the
ranges searched is not an edge: trials beyond it were tried and stopped early (pruned)
or did worse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kmlp.study.errors import StudyError
from kmlp.study.narrowing import Scored, rank

GRID_POINTS = 201
LENGTH_SCALES = 25  # grid sizes of the marginal-likelihood search
SIGNAL_STDS = 16
EXTRA_NOISE_FACTORS = (0.0, 0.5, 1.0, 2.0, 4.0)  # times the median binomial standard error
MIN_TRIALS_FOR_EXTRA_NOISE = 4
JITTER = 1e-10


@dataclass(frozen=True)
class CurveFit:
    """The fitted curve on a grid, to draw it: x = log10 λ (g,), mean and std (g,) of the
    fitted validation accuracy (std: the posterior uncertainty of the curve itself)."""

    x: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class LambdaInterval:
    """The λ values within noise of the best, and how they were found.

    Attributes:
        low, high: the interval of λ; log10_low, log10_high: the same in log10 λ.
        best_log10_lambda: the best trial's log10 λ (inside the interval).
        fitted_log10_lambda, fitted_accuracy: where the fitted curve peaks, and its value.
        noise: the noise of one accuracy at the peak (fraction, see module docstring);
        threshold: fitted_accuracy - z * noise, the accuracy the interval keeps above.
        at_edge: the interval reaches an end of the searched span (see module docstring).
        length_scale (decades of λ), signal_std, extra_noise (fraction): the fit's choices.
        n_trials, n_val: how many trials were fitted, on how many validation images.
        curve: the fitted curve and its band on the grid (for a figure).
    """

    low: float
    high: float
    log10_low: float
    log10_high: float
    best_log10_lambda: float
    fitted_log10_lambda: float
    fitted_accuracy: float
    noise: float
    threshold: float
    at_edge: bool
    length_scale: float
    signal_std: float
    extra_noise: float
    n_trials: int
    n_val: int
    curve: CurveFit

    def describe(self) -> str:
        """One phrase, e.g. ``lambda within noise of the best: 2.10e-03 to 1.20e-02 (...)``."""
        text = (
            f"lambda within noise of the best: {self.low:.3e} to {self.high:.3e} "
            f"(log10 {self.log10_low:.3f} to {self.log10_high:.3f}; Gaussian-process fit "
            f"of {self.n_trials} trial{'' if self.n_trials == 1 else 's'}, within "
            f"{100 * (self.fitted_accuracy - self.threshold):.2f} points of its peak "
            f"{100 * self.fitted_accuracy:.2f}%)"
        )
        if self.at_edge:
            text += "; it reaches the edge of the searched span: the optimum may lie beyond"
        return text

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary (without the curve): what an export or report records."""
        return {
            "lambda_interval": [self.low, self.high],
            "log10_lambda_interval": [self.log10_low, self.log10_high],
            "fitted_log10_lambda": self.fitted_log10_lambda,
            "fitted_accuracy": self.fitted_accuracy,
            "noise": self.noise,
            "threshold": self.threshold,
            "at_edge": self.at_edge,
            "method": "gaussian process",
            "n_trials": self.n_trials,
            "n_val": self.n_val,
        }


def _at_edge(
    log_low: float, log_high: float, lo: float, hi: float, span: tuple[float, float]
) -> bool:
    """The interval ends at the fitted trials' end, and that end is in the span's outer
    tenth (the rule by which a next stage may extend, ``study.narrowing``)."""
    tenth = 0.1 * (span[1] - span[0])
    return (log_low <= lo and lo <= span[0] + tenth) or (log_high >= hi and hi >= span[1] - tenth)


def lambda_interval(
    *,
    trials: Sequence[Scored],
    n_val: int,
    best_log10_lambda: float | None = None,
    span: tuple[float, float] | None = None,
    z: float = 1.0,
    grid_points: int = GRID_POINTS,
) -> LambdaInterval:
    """The interval of λ whose fitted validation accuracy is within noise of the best.

    ``trials``: completed trials (log10 λ, validation accuracy as a fraction in [0, 1]).
    ``n_val``: validation images each accuracy was measured on. ``best_log10_lambda``: the
    λ reported as best (default: the best trial, ties to the earlier number); the interval
    contains it. ``span``: (low, high) log10 λ of the ranges searched, pruned trials'
    included (default: the trials' own span), for ``at_edge``. Raises StudyError on no
    trials or bad values.
    """
    x, y = _check(trials, n_val)
    best = rank(trials)[0].log10_lambda if best_log10_lambda is None else best_log10_lambda
    if not math.isfinite(best) or not z > 0 or grid_points < 2:
        raise StudyError("need a finite best log10 lambda, z > 0 and at least 2 grid points")
    binomial = _binomial_var(y, n_val)
    length, signal, extra = _fit(x, y, binomial)
    lo, hi = float(x.min()), float(x.max())
    grid = np.linspace(lo, hi, grid_points) if hi > lo else np.array([lo])
    mean, std = _posterior(x, y, binomial + extra**2, grid, length=length, signal=signal)
    peak = int(np.argmax(mean))
    fitted = float(mean[peak])
    noise = math.sqrt(float(_binomial_var(np.array([fitted]), n_val)[0]) + extra**2)
    threshold = fitted - z * noise
    left, right = peak, peak
    while left > 0 and mean[left - 1] >= threshold:
        left -= 1
    while right < len(grid) - 1 and mean[right + 1] >= threshold:
        right += 1
    log_low = min(float(grid[left]), best)
    log_high = max(float(grid[right]), best)
    return LambdaInterval(
        low=10.0**log_low,
        high=10.0**log_high,
        log10_low=log_low,
        log10_high=log_high,
        best_log10_lambda=best,
        fitted_log10_lambda=float(grid[peak]),
        fitted_accuracy=fitted,
        noise=noise,
        threshold=threshold,
        at_edge=_at_edge(log_low, log_high, lo, hi, span or (lo, hi)) if len(grid) > 1 else False,
        length_scale=length,
        signal_std=signal,
        extra_noise=extra,
        n_trials=len(x),
        n_val=n_val,
        curve=CurveFit(x=tuple(grid.tolist()), mean=tuple(mean.tolist()), std=tuple(std.tolist())),
    )


def _check(trials: Sequence[Scored], n_val: int) -> tuple[np.ndarray, np.ndarray]:
    if not trials:
        raise StudyError("no completed trial to estimate a lambda interval from")
    if isinstance(n_val, bool) or not isinstance(n_val, int) or n_val < 1:
        raise StudyError(f"n_val {n_val!r}: need the number of validation images (>= 1)")
    x = np.array([t.log10_lambda for t in trials], dtype=float)
    y = np.array([t.value for t in trials], dtype=float)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise StudyError("a trial's log10 lambda or accuracy is not a finite number")
    if (y < 0).any() or (y > 1).any():
        raise StudyError("accuracies must be fractions in [0, 1]")
    return x, y


def _binomial_var(p: np.ndarray, n_val: int) -> np.ndarray:
    """p (1 - p) / n_val, with p kept half an image away from 0 and 1 (never zero)."""
    q = np.clip(p, 0.5 / n_val, 1 - 0.5 / n_val)
    return q * (1 - q) / n_val


def _fit(x: np.ndarray, y: np.ndarray, binomial: np.ndarray) -> tuple[float, float, float]:
    """(length scale, signal std, extra noise std) of maximum marginal likelihood."""
    span = float(x.max() - x.min())
    spread = float(y.std())
    base = float(np.sqrt(np.median(binomial)))
    if len(x) == 1 or span == 0:
        return max(span, 1.0), max(spread, base), 0.0
    lengths = np.geomspace(span / 50, 2 * span, LENGTH_SCALES)
    signals = np.geomspace(base / 4, max(4 * spread, base), SIGNAL_STDS)
    extras = EXTRA_NOISE_FACTORS if len(x) >= MIN_TRIALS_FOR_EXTRA_NOISE else (0.0,)
    r = y - y.mean()
    d2 = (x[:, None] - x[None, :]) ** 2
    best = (-math.inf, lengths[0], signals[0], 0.0)
    for length in lengths:
        corr = np.exp(-d2 / (2 * length**2))
        for factor in extras:
            noise = np.diag(binomial + (factor * base) ** 2 + JITTER)
            # all signal amplitudes at once: a stack of covariance matrices
            k = signals[:, None, None] ** 2 * corr[None] + noise[None]
            chol = np.linalg.cholesky(k)
            alpha = np.linalg.solve(chol, np.broadcast_to(r, (len(signals), len(r)))[..., None])
            fit = -0.5 * (alpha[..., 0] ** 2).sum(axis=1)
            logdet = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
            score = fit - logdet
            i = int(np.argmax(score))
            if score[i] > best[0]:
                best = (float(score[i]), float(length), float(signals[i]), factor * base)
    return best[1], best[2], best[3]


def _posterior(
    x: np.ndarray,
    y: np.ndarray,
    noise_var: np.ndarray,
    grid: np.ndarray,
    *,
    length: float,
    signal: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std (g,) of the latent accuracy curve on ``grid``."""
    mean_y = y.mean()
    k = signal**2 * np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * length**2))
    chol = np.linalg.cholesky(k + np.diag(noise_var + JITTER))
    ks = signal**2 * np.exp(-((grid[:, None] - x[None, :]) ** 2) / (2 * length**2))
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y - mean_y))
    v = np.linalg.solve(chol, ks.T)
    var = np.maximum(signal**2 - (v**2).sum(axis=0), 0.0)
    return mean_y + ks @ alpha, np.sqrt(var)
