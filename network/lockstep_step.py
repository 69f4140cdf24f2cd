"""One SGD update of every member of a lockstep group: forward, backward and the step.

The update is ``MLP.sgd_step``'s for each member: with the learning rate eta_k folded
into the output gradient, W <- (1 - 2 lambda_k eta_k) W - eta_k dLoss/dW for the weights
and p <- p - eta_k dLoss/dp for biases, gamma and beta. The first layer keeps its decay in
the stack's scale (W = scale * V), so its step is V <- V - X^T dZ / scale_new, done by one
GEMM that accumulates into V (BLAS's C <- alpha A B + beta C with beta = 1): no (d, K*m)
gradient array is written and read back.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kmlp.network.lockstep_layers import (
    affine_backward,
    affine_forward,
    batchnorm_relu_backward,
    batchnorm_relu_forward,
    first_forward,
    per_member,
    relu_backward,
    relu_forward,
    softmax_cross_entropy,
)
from kmlp.network.lockstep_stack import StackedNets

Array = np.ndarray
FirstLayerUpdate = Callable[[Array, Array, Array], None]


class Workspace:
    """Preallocated arrays of one step for K members and batches of up to ``batch`` rows.

    ``xb`` (batch, d) the gathered batch; per layer l: ``z[l]`` (batch, K*h_l) affine
    outputs (the last is the scores), and for hidden layers ``h[l]`` activations and
    ``dh[l]`` their gradients; ``dw[l]`` (K, h_{l-1}, h_l) for l >= 2.
    """

    def __init__(self, sizes: list[int], *, k: int, batch: int, dtype: np.dtype) -> None:
        layers = len(sizes) - 1
        hidden = range(1, layers)

        def acts(layer: int) -> Array:
            return np.empty((batch, k * sizes[layer]), dtype=dtype)

        self.xb = np.empty((batch, sizes[0]), dtype=dtype)
        self.z = {layer: acts(layer) for layer in range(1, layers + 1)}
        self.h = {layer: acts(layer) for layer in hidden}
        self.dh = {layer: acts(layer) for layer in hidden}
        self.dw = {
            layer: np.empty((k, sizes[layer - 1], sizes[layer]), dtype=dtype)
            for layer in range(2, layers + 1)
        }


def first_layer_update(dtype: np.dtype) -> FirstLayerUpdate:
    """``update(v, x, dz)``: v (d, F) -= x.T @ dz for x (n, d), dz (n, F), in place.

    One ``?gemm`` call from SciPy's BLAS with beta = 1, on transposed views that are
    Fortran-ordered, so f2py passes v's memory to BLAS without copying.
    """
    from scipy.linalg.blas import get_blas_funcs

    gemm = get_blas_funcs("gemm", dtype=dtype)

    def update(v: Array, x: Array, dz: Array) -> None:
        out = gemm(-1.0, dz.T, x.T, beta=1.0, c=v.T, trans_b=1, overwrite_c=1)
        if not np.may_share_memory(out, v):  # f2py had to copy (never with these layouts)
            v[...] = out.T

    return update


def sgd_step(
    stack: StackedNets,
    work: Workspace,
    xb: Array,
    yb: Array,
    *,
    eta: Array,
    lam: Array,
    bn_alpha: float,
    update: FirstLayerUpdate,
) -> Array:
    """One update of every member on the batch xb (n, d), yb (n,), in place in ``stack``.

    eta, lam (K,) float64: each member's learning rate and L2 strength. Returns each
    member's mean batch loss (K,) before the update; the caller checks it is finite. Also
    stores the new batch-norm running statistics in ``stack.running``.
    """
    n, k, layers = xb.shape[0], stack.k, stack.layers
    dtype = stack.v1.dtype
    decay = 1.0 - 2.0 * lam * eta
    # forward
    h = first_forward(
        xb, stack.v1, stack.scale.astype(dtype), stack.biases.get(1), out=work.z[1][:n]
    )
    hidden: dict[int, tuple] = {}
    affine: dict[int, tuple] = {}
    running = {}
    for layer in range(1, layers):
        z = h
        if layer > 1:
            z, affine[layer] = affine_forward(
                h, stack.weights[layer], stack.biases.get(layer), out=work.z[layer][:n]
            )
        if stack.batch_norm:
            h, hidden[layer], running[layer] = batchnorm_relu_forward(
                z,
                stack.gamma[layer],
                stack.beta[layer],
                running=stack.running.get(layer),
                alpha=bn_alpha,
                out=work.h[layer][:n],
            )
        else:
            h, hidden[layer] = relu_forward(z, out=work.h[layer][:n])
    if layers > 1:
        h, affine[layers] = affine_forward(
            h, stack.weights[layers], stack.biases[layers], out=work.z[layers][:n]
        )
    losses, dout = softmax_cross_entropy(h, yb, k, scale=eta.astype(dtype))
    # backward, last layer first; each layer's parameters step once its gradient is used
    decay32 = decay.astype(dtype)
    for layer in range(layers, 1, -1):
        dh, dw, db = affine_backward(
            dout, affine[layer], dh_out=work.dh[layer - 1][:n], dw_out=work.dw[layer]
        )
        w = stack.weights[layer]
        w *= decay32[:, None, None]
        w -= dw
        if layer in stack.biases:
            stack.biases[layer] -= db
        below = layer - 1
        if stack.batch_norm:
            dout, dgamma, dbeta = batchnorm_relu_backward(dh, hidden[below])
            stack.gamma[below] -= dgamma
            stack.beta[below] -= dbeta
        else:
            dout = relu_backward(dh, hidden[below])
    if 1 in stack.biases:
        stack.biases[1] -= dout.sum(axis=0)
    # W_new = decay * W - X^T dZ  <=>  V_new = V - X^T dZ / scale_new, scale_new = scale * decay
    stack.rescale(stack.scale * decay)
    per_member(dout, (1.0 / stack.scale).astype(dtype))
    update(stack.v1, xb, dout)
    if running:
        stack.running = running
    return losses
