"""Forward/backward pairs for K networks side by side (the stacked form of ``layers.py``).

Layout: the activations of K members sit side by side in one (n, K*m) matrix; member k owns
columns k*m .. (k+1)*m - 1. Per-feature work (bias, batch norm, ReLU) is then the single
network's work on a wider matrix, and the products are per member: a batched matmul over
``split`` views, one BLAS call per member, no copies. Weights of the layers after the first
are stacked as (K, m_in, m_out); the first layer's are one (d, K*m) matrix (see
``first_forward``), so that its forward product is a single wide GEMM.

These run in the hot loop, so they write into ``out`` buffers the caller owns. Apart from
``out`` and an argument documented as consumed (a scratch array whose values the cache
keeps), they modify nothing and keep no state; batch norm returns its new running
statistics. Arrays keep their dtype (float32 in training, float64 in tests).
"""

from __future__ import annotations

import numpy as np

from kmlp.network.layers import RunningStats

Array = np.ndarray


def split(a: Array, k: int) -> Array:
    """The (K, n, m) view of a side-by-side (n, K*m) matrix (no copy)."""
    n, width = a.shape
    return a.reshape(n, k, width // k).transpose(1, 0, 2)


def column_sums(a: Array) -> Array:
    """Sums over the rows of a (n, F) -> (F,), as one BLAS matrix-vector product (about
    twice as fast as ``a.sum(axis=0)`` at these sizes)."""
    return np.ones(a.shape[0], dtype=a.dtype) @ a


def per_member(a: Array, factors: Array) -> Array:
    """Multiply member k's columns of a (n, K*m) by factors[k] (K,), in place; returns a."""
    # one factor per column: broadcasting a row runs ~6x faster than (1, K, 1) over (n, K, m)
    a *= np.repeat(factors, a.shape[1] // factors.shape[0])
    return a


def first_forward(x: Array, v: Array, scale: Array, b: Array | None, *, out: Array) -> Array:
    """The first layer for all members: x (n, d) @ v (d, K*m), scaled, plus b (K*m,).

    Member k's weight matrix is ``scale[k] * v[:, k*m:(k+1)*m]``: keeping weight decay in
    the (K,) scale spares a pass over the (d, K*m) weights every step. ``out`` (n, K*m).
    """
    np.matmul(x, v, out=out)
    per_member(out, scale)
    if b is not None:
        out += b
    return out


def affine_forward(h: Array, w: Array, b: Array | None, *, out: Array) -> tuple[Array, tuple]:
    """Per member h_k @ w_k (+ b): h (n, K*m), w (K, m, p), b (K*p,) or None -> out (n, K*p)."""
    k = w.shape[0]
    np.matmul(split(h, k), w, out=split(out, k))
    if b is not None:
        out += b
    return out, (h, w)


def affine_backward(
    dout: Array, cache: tuple, *, dh_out: Array | None, dw_out: Array
) -> tuple[Array | None, Array, Array]:
    """Gradients of ``affine_forward``: dout (n, K*p) -> dh (n, K*m) into ``dh_out`` (or
    None when not needed), dw (K, m, p) into ``dw_out``, db (K*p,)."""
    h, w = cache
    k = w.shape[0]
    d3 = split(dout, k)
    np.matmul(split(h, k).transpose(0, 2, 1), d3, out=dw_out)
    if dh_out is not None:
        np.matmul(d3, w.transpose(0, 2, 1), out=split(dh_out, k))
    return dh_out, dw_out, column_sums(dout)


def relu_forward(z: Array, *, out: Array) -> tuple[Array, Array]:
    """max(z, 0) into ``out`` (may be z itself); the cache is the output."""
    _relu(z, out)
    return out, out


def _relu(z: Array, out: Array) -> None:
    # np.maximum against a zero row runs ~2.5x faster than against the scalar 0
    np.maximum(z, np.zeros(z.shape[1], dtype=z.dtype), out=out)


def relu_backward(dout: Array, cache: Array) -> Array:
    """Zero ``dout`` (consumed, updated in place) where the ReLU output was not positive."""
    np.multiply(dout, cache > 0, out=dout)
    return dout


def batchnorm_relu_forward(
    z: Array,
    gamma: Array,
    beta: Array,
    *,
    running: RunningStats | None,
    alpha: float,
    eps: float = 1e-5,
    out: Array,
) -> tuple[Array, tuple, RunningStats]:
    """Training-mode batch norm of every column of z (n, F), then ReLU, into ``out``.

    Same statistics as ``layers.batchnorm_forward``: batch mean, biased batch variance,
    running averages ``alpha * running + (1 - alpha) * batch`` (the batch's own at the
    first batch). ``z`` is consumed: it is overwritten with its centred values, which the
    cache keeps. gamma, beta (F,). Returns (out, cache, new running statistics).
    """
    n = z.shape[0]
    mean = column_sums(z)
    mean /= n
    z -= mean
    np.multiply(z, z, out=out)  # out is scratch until written below
    var = column_sums(out)
    var /= n
    inv_std = 1.0 / np.sqrt(var + eps)
    # gamma * (z - mean) * inv_std + beta, as one product and one sum over the matrix
    np.multiply(z, inv_std * gamma, out=out)
    out += beta
    _relu(out, out)
    if running is None:
        new = RunningStats(mean, var)
    else:
        new = RunningStats(
            alpha * running.mean + (1 - alpha) * mean, alpha * running.var + (1 - alpha) * var
        )
    return out, (z, gamma, inv_std, out), new


def batchnorm_relu_backward(dout: Array, cache: tuple) -> tuple[Array, Array, Array]:
    """Gradients of ``batchnorm_relu_forward``: dout (n, F) -> dz (n, F), dgamma, dbeta (F,).

    ``dout`` and the cache's arrays are consumed (dz is written into ``dout``; the
    centred input and ReLU output serve as scratch), so call it after every other use of
    the layer's output (the next layer's weight gradient).
    Closed form: dz = gamma * inv_std * (dxhat' - mean(dxhat') - xhat *
    mean(dxhat' * xhat)) with dxhat' the ReLU-masked gradient over gamma.
    """
    zc, gamma, inv_std, relu_out = cache
    n = dout.shape[0]
    relu_backward(dout, relu_out)
    dbeta = column_sums(dout)
    np.multiply(dout, zc, out=relu_out)  # the ReLU output is no longer needed: scratch
    dgamma = column_sums(relu_out)
    dgamma *= inv_std
    coef = gamma * inv_std
    # dz = coef * dout - (zc * (coef * inv_std * dgamma / n) + coef * dbeta / n)
    zc *= coef * inv_std * dgamma / n
    zc += coef * dbeta / n
    dout *= coef
    dout -= zc
    return dout, dgamma, dbeta


def batchnorm_relu_eval(
    z: Array, gamma: Array, beta: Array, running: RunningStats, *, eps: float = 1e-5
) -> Array:
    """Evaluation-mode batch norm (running statistics) then ReLU, in place in z (n, F)."""
    a = gamma / np.sqrt(running.var + eps)
    z *= a
    z += beta - running.mean * a
    _relu(z, z)
    return z


def softmax_cross_entropy(scores: Array, y: Array, k: int, *, scale: Array) -> tuple[Array, Array]:
    """Each member's mean cross-entropy on the batch, and its scaled gradient.

    scores (n, K*c), consumed: it becomes d mean loss / d scores times ``scale[k]``
    (K,) in member k's columns (the learning rate rides in here). y (n,) ints in [0, c).
    Returns (mean loss per member (K,) in nats, the gradient (n, K*c)).
    """
    n = scores.shape[0]
    s3 = scores.reshape(n, k, -1)
    # Work class-major, (c, n, K): reductions over the c classes then run over whole
    # contiguous (n, K) planes instead of a length-c inner loop per row (4x faster).
    t = np.ascontiguousarray(s3.transpose(2, 0, 1))
    t -= np.maximum.reduce(t, axis=0)
    rows = np.arange(n)
    picked = t[y, rows, :]
    np.exp(t, out=t)
    sums = np.add.reduce(t, axis=0)
    losses = np.log(sums)
    losses -= picked
    step = scale / n
    t *= step / sums
    t[y, rows, :] -= step
    s3[...] = t.transpose(1, 2, 0)
    return np.add.reduce(losses, axis=0) / n, scores


def eval_scores_loss(scores: Array, y: Array, k: int) -> tuple[Array, Array]:
    """Per member: summed cross-entropy (K,) float64 and correct predictions (K,) int.

    scores (n, K*c) in evaluation mode, consumed; y (n,). A prediction is the first
    arg-max, as ``MLP.predict``.
    """
    n = scores.shape[0]
    s3 = scores.reshape(n, k, -1)
    correct = (s3.argmax(axis=2) == y[:, None]).sum(axis=0)
    s3 -= s3.max(axis=2, keepdims=True)
    picked = s3[np.arange(n), :, y]
    np.exp(s3, out=s3)
    losses = np.log(s3.sum(axis=2))
    losses -= picked
    return losses.sum(axis=0, dtype=np.float64), correct
