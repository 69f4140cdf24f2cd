"""The k-layer fully connected network: affine -> [batch norm] -> ReLU, ..., affine -> softmax."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kmlp.network import checks
from kmlp.network.errors import ConfigError
from kmlp.network.init import init_params, parse_init
from kmlp.network.layers import (
    RunningStats,
    affine_backward,
    affine_forward,
    batchnorm_backward,
    batchnorm_forward,
    relu_backward,
    relu_forward,
    softmax_cross_entropy,
)

_DTYPES = ("float32", "float64")
EVAL_CHUNK = 10000  # images scored at once in evaluation mode (bounds its memory)


def check_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype for "float32" or "float64"; ConfigError otherwise."""
    if str(dtype) not in _DTYPES:
        raise ConfigError(f"dtype {checks.show(dtype)}: use float32 or float64")
    return np.dtype(str(dtype))


class MLP:
    """k-layer MLP for inputs (n, d) and c classes; ``layer_sizes`` is [d, h1, ..., h_{k-1}, c].

    ``params`` maps W1..Wk (d_{l-1}, d_l), b{l} (d_l,), and with batch norm gamma{l},
    beta{l} (d_l,) for the hidden layers l < k, which then have no bias b{l} (beta takes
    its place). Batch norm sits before each hidden ReLU. ``running`` holds each BN
    layer's moving averages once the network has trained on a batch.
    The cost is J = mean cross-entropy + lam * sum_l ||W_l||_F^2 (weights only).
    """

    def __init__(
        self,
        *,
        layer_sizes: Sequence[int],
        batch_norm: bool = False,
        init: str = "he",
        seed: int | np.random.Generator = 0,
        dtype: str = "float32",
        bn_alpha: float = 0.9,
        bn_eps: float = 1e-5,
    ) -> None:
        sizes = list(checks.widths("layer sizes", layer_sizes))
        if len(sizes) < 2:
            raise ConfigError(f"layer sizes {checks.show(sizes)}: need [d, ..., c]")
        if not isinstance(seed, np.random.Generator):
            seed = checks.whole("seed", seed, low=0, high=checks.MAX_SEED)
        self.dtype = check_dtype(dtype)
        # Refuse before allocating: the weights alone of an absurd width would not fit.
        checks.check_fits(
            f"a network of layer sizes {checks.show(sizes)}",
            checks.network_bytes(layer_sizes=sizes, itemsize=self.dtype.itemsize, rows=0),
        )
        self.layer_sizes = sizes
        self.batch_norm = checks.flag("batch_norm", batch_norm)
        self.init = str(parse_init(init))
        self.bn_alpha = checks.real("bn_alpha", bn_alpha, low=0.0, high=1.0, high_open=True)
        self.bn_eps = checks.real("bn_eps", bn_eps, low=0.0, low_open=True)
        rng = np.random.default_rng(seed)
        self.params = init_params(
            layer_sizes=sizes,
            batch_norm=self.batch_norm,
            scheme=parse_init(init),
            rng=rng,
            dtype=self.dtype,
        )
        self.running: dict[int, RunningStats] = {}

    @property
    def k(self) -> int:
        """Number of affine layers."""
        return len(self.layer_sizes) - 1

    # -- forward and backward -------------------------------------------------------
    def forward(
        self, X: np.ndarray, *, train: bool
    ) -> tuple[np.ndarray, list[tuple], dict[int, RunningStats]]:
        """Class scores (n, c) for X (n, d), the caches backward needs, new running stats.

        ``train`` selects batch statistics (and returns updated moving averages) or the
        stored moving averages for batch norm. Does not modify the network.
        """
        p = self.params
        caches: list[tuple] = []
        new_running: dict[int, RunningStats] = {}
        h = X
        for layer in range(1, self.k):
            z, aff = affine_forward(h, p[f"W{layer}"], p.get(f"b{layer}"))
            bn = None
            if self.batch_norm:
                z, bn, stats = batchnorm_forward(
                    z,
                    p[f"gamma{layer}"],
                    p[f"beta{layer}"],
                    train=train,
                    running=self.running.get(layer),
                    alpha=self.bn_alpha,
                    eps=self.bn_eps,
                )
                if stats is not None:
                    new_running[layer] = stats
            h, relu = relu_forward(z)
            caches.append((aff, bn, relu))
        scores, aff = affine_forward(h, p[f"W{self.k}"], p[f"b{self.k}"])
        caches.append((aff, None, None))
        return scores, caches, new_running

    def backward(
        self, dscores: np.ndarray, caches: list[tuple], lam: float
    ) -> dict[str, np.ndarray]:
        """dJ/dparam for every key of ``params`` from dscores (n, c) = d mean loss / d scores."""
        grads: dict[str, np.ndarray] = {}
        dh = dscores
        for layer in range(self.k, 0, -1):
            aff, bn, relu = caches[layer - 1]
            if relu is not None:
                dz = relu_backward(dh, relu)
                if bn is not None:
                    dz, grads[f"gamma{layer}"], grads[f"beta{layer}"] = batchnorm_backward(dz, bn)
            else:
                dz = dh
            dh, dW, db = affine_backward(dz, aff, need_dx=layer > 1)
            if lam:
                dW += (2 * lam) * self.params[f"W{layer}"]
            grads[f"W{layer}"] = dW
            if f"b{layer}" in self.params:
                grads[f"b{layer}"] = db
        return grads

    def regulariser(self, lam: float) -> float:
        """lam * sum of squared weights (biases, gamma and beta are not penalised)."""
        if not lam:
            return 0.0
        return lam * sum(
            float(np.vdot(self.params[f"W{i}"], self.params[f"W{i}"])) for i in range(1, self.k + 1)
        )

    def loss_and_gradients(
        self, X: np.ndarray, y: np.ndarray, lam: float
    ) -> tuple[float, dict[str, np.ndarray], dict[int, RunningStats]]:
        """Training-mode mean loss, gradients of J and the new BN running statistics."""
        scores, caches, new_running = self.forward(X, train=True)
        loss, dscores, _ = softmax_cross_entropy(scores, y)
        return loss, self.backward(dscores, caches, lam), new_running

    def sgd_step(
        self, X: np.ndarray, y: np.ndarray, *, lam: float, eta: float
    ) -> tuple[float, dict[int, RunningStats]]:
        """One SGD update of ``params`` in place, on the batch X (n, d), y (n,).

        Same update as ``p -= eta * gradients(X, y, lam)[p]``, but eta is folded into the
        output gradient and the L2 term into a decay of the weights, so no gradient array
        is scaled or added to separately. Returns the batch's mean loss (before the
        update) and the new BN running statistics, which the caller stores.
        """
        scores, caches, new_running = self.forward(X, train=True)
        loss, dscores, _ = softmax_cross_entropy(scores, y)
        dscores *= eta
        steps = self.backward(dscores, caches, 0.0)
        decay = 1.0 - 2.0 * lam * eta
        for key, step in steps.items():
            param = self.params[key]
            if decay != 1.0 and key.startswith("W"):
                param *= decay
            param -= step
        return loss, new_running

    def gradients(self, X: np.ndarray, y: np.ndarray, lam: float) -> dict[str, np.ndarray]:
        """dJ/dparam in training mode, same keys as ``params``; X (n, d), y (n,) int labels."""
        return self.loss_and_gradients(X, y, lam)[1]

    def cost(self, X: np.ndarray, y: np.ndarray, lam: float) -> float:
        """J = mean cross-entropy + lam * sum ||W||^2 in training mode (batch statistics)."""
        scores, _, _ = self.forward(X, train=True)
        return softmax_cross_entropy(scores, y)[0] + self.regulariser(lam)

    # -- evaluation -----------------------------------------------------------------
    def scores(self, X: np.ndarray, *, chunk: int = EVAL_CHUNK) -> np.ndarray:
        """Evaluation-mode class scores (n, c), computed in chunks to bound memory."""
        parts = [self.forward(X[i : i + chunk], train=False)[0] for i in range(0, len(X), chunk)]
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (n,) in evaluation mode."""
        return self.scores(X).argmax(axis=1)

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        """Fraction of X (n, d) classified as y (n,), evaluation mode."""
        return float((self.predict(X) == y).mean())

    def evaluate(self, X: np.ndarray, y: np.ndarray, lam: float) -> tuple[float, float, float]:
        """(mean loss, cost J, accuracy) in evaluation mode."""
        scores = self.scores(X)
        loss = softmax_cross_entropy(scores, y)[0]
        acc = float((scores.argmax(axis=1) == y).mean())
        return loss, loss + self.regulariser(lam), acc
