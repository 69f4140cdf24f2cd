"""Forward/backward pairs of pure layer functions (the shape of cs231n's ``layers.py``).

Every ``*_forward`` returns its output and a cache; the matching ``*_backward`` takes
the upstream gradient and that cache. Nothing here mutates an argument, draws random
numbers or keeps state: batch norm returns its new running statistics instead.
Arrays keep the dtype they come in (float32 in training, float64 in gradient checks).
Shapes: ``n`` samples, ``d`` input features, ``m`` output features.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

Array = np.ndarray


def affine_forward(x: Array, w: Array, b: Array | None) -> tuple[Array, tuple[Array, Array]]:
    """``x @ w + b``: x (n, d), w (d, m), b (m,) or None -> out (n, m)."""
    out = x @ w
    if b is not None:
        out += b
    return out, (x, w)


def affine_backward(
    dout: Array, cache: tuple[Array, Array], *, need_dx: bool = True
) -> tuple[Array | None, Array, Array]:
    """Gradients of ``affine_forward``: dout (n, m) -> dx (n, d) or None, dw (d, m), db (m,).

    ``need_dx=False`` skips the input gradient, which the first layer never needs and
    which would cost as much as its forward product.
    """
    x, w = cache
    dx = dout @ w.T if need_dx else None
    return dx, x.T @ dout, dout.sum(axis=0)


def relu_forward(x: Array) -> tuple[Array, Array]:
    """max(x, 0), elementwise; the cache is the output, whose sign is the mask."""
    out = np.maximum(x, 0)
    return out, out


def relu_backward(dout: Array, cache: Array) -> Array:
    """Gradient of ``relu_forward``: passes dout where the output was positive."""
    return np.where(cache > 0, dout, 0).astype(dout.dtype, copy=False)


class RunningStats(NamedTuple):
    """Moving averages of a batch-norm layer's inputs: mean (m,), biased variance (m,)."""

    mean: Array
    var: Array


def batchnorm_forward(
    x: Array,
    gamma: Array,
    beta: Array,
    *,
    train: bool,
    running: RunningStats | None,
    alpha: float = 0.9,
    eps: float = 1e-5,
) -> tuple[Array, tuple | None, RunningStats | None]:
    """Batch normalisation with learnable scale and shift.

    x (n, m); gamma, beta (m,). In training mode the batch mean and biased variance
    normalise x and the new running statistics are ``alpha * running + (1 - alpha) *
    batch`` (or the batch's own statistics when ``running`` is None, i.e. at the first
    batch). In evaluation mode ``running`` normalises x (the batch's statistics when it
    is None) and is returned unchanged; the cache is then None.

    Returns (out (n, m), cache, new running statistics).
    """
    if train or running is None:
        mean = x.mean(axis=0)
        centred = x - mean
        var = np.einsum("ij,ij->j", centred, centred) / x.shape[0]
    else:
        mean, var = running
        centred = x - mean
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = centred
    xhat *= inv_std  # centred is ours, so normalise it in place
    out = xhat * gamma
    out += beta
    if not train:
        return out, None, running
    if running is None:
        new_running = RunningStats(mean, var)
    else:
        new_running = RunningStats(
            alpha * running.mean + (1 - alpha) * mean, alpha * running.var + (1 - alpha) * var
        )
    return out, (xhat, gamma, inv_std), new_running


def batchnorm_backward(dout: Array, cache: tuple) -> tuple[Array, Array, Array]:
    """Gradients of ``batchnorm_forward`` in training mode.

    dout (n, m) -> dx (n, m), dgamma (m,), dbeta (m,). Uses the closed form
    dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
    """
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.einsum("ij,ij->j", dout, xhat)
    # mean(dxhat) = gamma * dbeta / n and mean(dxhat * xhat) = gamma * dgamma / n
    dx = dout - dbeta / n
    dx -= xhat * (dgamma / n)
    dx *= gamma * inv_std
    return dx, dgamma, dbeta


def softmax_cross_entropy(scores: Array, y: Array) -> tuple[float, Array, Array]:
    """Mean cross-entropy of softmax(scores) against integer labels.

    scores (n, c), y (n,) ints in [0, c). Returns (mean loss in nats, dscores (n, c) =
    d loss / d scores, per-sample losses (n,)).
    """
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    losses = np.log(sums[:, 0]) - shifted[rows, y]
    probs = exp
    probs /= sums
    probs[rows, y] -= 1
    probs /= n
    return float(losses.mean()), probs, losses
