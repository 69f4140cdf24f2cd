"""The triangular cyclical learning rate (Smith, 2017)."""

from __future__ import annotations


def cyclical_lr(step: int, *, eta_min: float, eta_max: float, n_s: int) -> float:
    """Learning rate at update ``step`` (0-based) of a triangular cycle of 2 * n_s steps.

    Rises linearly from eta_min at step 0 to eta_max at step n_s, falls back to eta_min
    at step 2 * n_s, and repeats.
    """
    t = step % (2 * n_s)
    frac = t / n_s if t <= n_s else 2.0 - t / n_s
    return eta_min + frac * (eta_max - eta_min)
