"""Centred-difference gradients that mirror ``MLP.gradients``, and their comparison.

Like the course's ComputeGradsNumSlow: each parameter entry is moved by +-h and the
training-mode cost J recomputed. Meant for float64 networks on a few samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kmlp.network.checks import real
from kmlp.network.model import MLP


def numerical_gradients(
    net: MLP, X: np.ndarray, y: np.ndarray, lam: float, *, h: float = 1e-5
) -> dict[str, np.ndarray]:
    """dJ/dparam by centred differences (J(p + h) - J(p - h)) / 2h; same keys as ``params``.

    X (n, d), y (n,). The network's parameters are restored exactly afterwards.
    ConfigError if ``h`` is not a finite step in (0, 1].
    """
    h = check_step(h)
    grads: dict[str, np.ndarray] = {}
    for key, param in net.params.items():
        grad = np.zeros_like(param)
        flat, gflat = param.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            plus = net.cost(X, y, lam)
            flat[i] = old - h
            minus = net.cost(X, y, lam)
            flat[i] = old
            gflat[i] = (plus - minus) / (2 * h)
        grads[key] = grad
    return grads


def check_step(h: float) -> float:
    """``h`` if it is a usable finite-difference step, in (0, 1]; ConfigError otherwise.

    A step of 0 divides by zero, nan or inf make every difference nan, and a step above
    1 measures the cost's secant across the whole parameter, not its gradient.
    """
    return real("gradient-check step h", h, low=0.0, low_open=True, high=1.0)


def relative_errors(
    analytic: np.ndarray, numeric: np.ndarray, *, floor: float = 1e-8
) -> np.ndarray:
    """Per-entry |a - n| / max(|a| + |n|, floor); the floor keeps 0/0 entries at 0."""
    return np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)


@dataclass(frozen=True)
class GradCheckRow:
    """One parameter's comparison of analytic a and numerical n gradients.

    ``relative_error`` is ||a - n|| / (||a|| + ||n||) over the whole parameter (Frobenius
    norms), the measure the check is judged by: per entry, centred differences carry
    about 1e-10 of rounding noise, which swamps entries whose gradient is itself tiny,
    so ``max_entry_relative_error`` (|a - n| / (|a| + |n|), floored at 1e-8) is shown for
    information only.
    """

    name: str
    shape: tuple[int, ...]
    relative_error: float
    max_entry_relative_error: float
    max_absolute_error: float
    max_gradient: float


def gradient_check(
    net: MLP, X: np.ndarray, y: np.ndarray, lam: float, *, h: float = 1e-5
) -> list[GradCheckRow]:
    """Compare ``net.gradients`` with ``numerical_gradients``, one row per parameter."""
    h = check_step(h)
    analytic = net.gradients(X, y, lam)
    numeric = numerical_gradients(net, X, y, lam, h=h)
    rows = []
    for key in net.params:
        a, n = analytic[key], numeric[key]
        rows.append(
            GradCheckRow(
                name=key,
                shape=tuple(a.shape),
                relative_error=float(
                    np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), 1e-300)
                ),
                max_entry_relative_error=float(relative_errors(a, n).max()),
                max_absolute_error=float(np.abs(a - n).max()),
                max_gradient=float(np.abs(a).max()),
            )
        )
    return rows


def randomise_bn_params(net: MLP, rng: np.random.Generator) -> None:
    """Move gamma and beta (and biases) away from their initial 1 and 0, for checks."""
    for key, value in net.params.items():
        if key.startswith("gamma"):
            value[...] = rng.uniform(0.5, 1.5, size=value.shape)
        elif key.startswith(("beta", "b")):
            value[...] = rng.normal(0.0, 0.1, size=value.shape)
