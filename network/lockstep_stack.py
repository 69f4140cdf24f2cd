"""The parameters of K networks side by side, as lockstep training keeps them.

Member k of a stack with layer sizes [d, h1, ..., c] has:

- first layer: weights ``scale[k] * v1[:, k*h1:(k+1)*h1]`` with v1 (d, K*h1) and scale (K,)
  float64; ``b1`` (K*h1,) without batch norm;
- layers l >= 2: ``weights[l][k]`` (h_{l-1}, h_l) and ``biases[l]`` (K*h_l,) side by side;
- with batch norm, hidden layers' ``gamma[l]``, ``beta[l]`` (K*h_l,) and ``running[l]``
  (mean, var of K*h_l,), and no hidden bias, as ``MLP``.

``scale`` carries each member's weight decay (it is multiplied by 1 - 2 lambda eta per
step) so the wide first-layer matrix is not rescaled every step; ``rescale`` folds it
into v1 before its magnitude gets small enough to cost float32 range (or reaches 0, when
2 lambda eta = 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kmlp.network.init import parse_init
from kmlp.network.layers import RunningStats
from kmlp.network.lockstep_layers import (
    affine_forward,
    batchnorm_relu_eval,
    eval_scores_loss,
    first_forward,
    relu_forward,
)

Array = np.ndarray
RENORMALISE_BELOW = 2.0**-10  # fold scale into v1 once a member's scale is below this


@dataclass
class StackedNets:
    """K networks' parameters side by side (layout in the module docstring)."""

    sizes: list[int]
    batch_norm: bool
    v1: Array
    scale: Array
    weights: dict[int, Array]
    biases: dict[int, Array]
    gamma: dict[int, Array]
    beta: dict[int, Array]
    running: dict[int, RunningStats]

    @property
    def k(self) -> int:
        """Number of members."""
        return int(self.scale.shape[0])

    @property
    def layers(self) -> int:
        """Number of affine layers."""
        return len(self.sizes) - 1

    @classmethod
    def initial(
        cls,
        *,
        sizes: list[int],
        batch_norm: bool,
        inits: Sequence[str],
        rng: np.random.Generator,
        dtype: np.dtype,
    ) -> StackedNets:
        """Fresh members, one per init spec, drawn exactly as ``MLP`` draws one network.

        ``init_params`` draws one standard-normal (fan_in, fan_out) matrix per layer, in
        order, and multiplies it by the scheme's std; every member here takes the same
        draws times its own std (so the same ``rng`` state gives each member the weights
        ``MLP(seed=rng)`` would). Biases and beta start at 0, gamma at 1.
        """
        schemes = [parse_init(spec) for spec in inits]
        k = len(schemes)
        layers = len(sizes) - 1
        weights: dict[int, Array] = {}
        biases: dict[int, Array] = {}
        gamma: dict[int, Array] = {}
        beta: dict[int, Array] = {}
        v1 = np.empty((sizes[0], k * sizes[1]), dtype=dtype)
        for layer in range(1, layers + 1):
            fan_in, fan_out = sizes[layer - 1], sizes[layer]
            draw = rng.standard_normal((fan_in, fan_out))
            stds = [s.std(fan_in=fan_in, fan_out=fan_out) for s in schemes]
            if layer == 1:
                for j, std in enumerate(stds):
                    v1[:, j * fan_out : (j + 1) * fan_out] = (draw * std).astype(dtype)
            else:
                weights[layer] = np.stack([(draw * std).astype(dtype) for std in stds])
            hidden = layer < layers
            if batch_norm and hidden:
                gamma[layer] = np.ones(k * fan_out, dtype=dtype)
                beta[layer] = np.zeros(k * fan_out, dtype=dtype)
            else:
                biases[layer] = np.zeros(k * fan_out, dtype=dtype)
        return cls(
            sizes=list(sizes),
            batch_norm=batch_norm,
            v1=v1,
            scale=np.ones(k),
            weights=weights,
            biases=biases,
            gamma=gamma,
            beta=beta,
            running={},
        )

    def select(self, positions: Sequence[int]) -> StackedNets:
        """A new stack of the members at ``positions`` (copies, in that order)."""
        pos = np.asarray(positions, dtype=np.intp)
        k = self.k

        def cols(a: Array) -> Array:
            return np.ascontiguousarray(a.reshape(*a.shape[:-1], k, -1)[..., pos, :]).reshape(
                *a.shape[:-1], -1
            )

        return StackedNets(
            sizes=list(self.sizes),
            batch_norm=self.batch_norm,
            v1=cols(self.v1),
            scale=self.scale[pos].copy(),
            weights={i: np.ascontiguousarray(w[pos]) for i, w in self.weights.items()},
            biases={i: cols(b) for i, b in self.biases.items()},
            gamma={i: cols(g) for i, g in self.gamma.items()},
            beta={i: cols(b) for i, b in self.beta.items()},
            running={i: RunningStats(cols(r.mean), cols(r.var)) for i, r in self.running.items()},
        )

    def rescale(self, scale: Array) -> None:
        """Set the members' scales to ``scale`` (K,), folding them into v1 (in place) and
        resetting them to 1 if any magnitude is below ``RENORMALISE_BELOW``."""
        if np.abs(scale).min() >= RENORMALISE_BELOW:
            self.scale = scale
            return
        v3 = self.v1.reshape(self.v1.shape[0], self.k, -1)
        v3 *= scale.astype(self.v1.dtype)[None, :, None]
        self.scale = np.ones(self.k)

    def member_params(self, position: int) -> tuple[dict[str, Array], dict[int, RunningStats]]:
        """Member ``position``'s parameters in ``MLP.params`` layout, and its running stats."""
        k, h1 = self.k, self.sizes[1]
        dtype = self.v1.dtype
        params: dict[str, Array] = {}
        v = self.v1[:, position * h1 : (position + 1) * h1]
        params["W1"] = (v * dtype.type(self.scale[position])).astype(dtype)

        def cols(a: Array) -> Array:
            return a.reshape(k, -1)[position].copy()

        for layer in range(1, self.layers + 1):
            if layer > 1:
                params[f"W{layer}"] = self.weights[layer][position].copy()
            if layer in self.biases:
                params[f"b{layer}"] = cols(self.biases[layer])
            if layer in self.gamma:
                params[f"gamma{layer}"] = cols(self.gamma[layer])
                params[f"beta{layer}"] = cols(self.beta[layer])
        running = {
            layer: RunningStats(cols(r.mean), cols(r.var)) for layer, r in self.running.items()
        }
        return params, running

    def squared_weights(self) -> Array:
        """Per member, sum over layers of ||W_l||_F^2 (K,) float64 (what lambda multiplies)."""
        k = self.k
        first = np.einsum("ij,ij->j", self.v1, self.v1).reshape(k, -1).sum(axis=1, dtype=float)
        total = first * self.scale**2
        for w in self.weights.values():
            total += np.einsum("kij,kij->k", w, w).astype(float)
        return total

    def eval_forward(self, x: Array, *, bn_eps: float = 1e-5) -> Array:
        """Evaluation-mode class scores (n, K*c) of every member for x (n, d)."""
        n, k = x.shape[0], self.k
        dtype = self.v1.dtype
        z = np.empty((n, self.v1.shape[1]), dtype=dtype)
        first_forward(x, self.v1, self.scale.astype(dtype), self.biases.get(1), out=z)
        if self.layers == 1:
            return z
        h = self._hidden_eval(1, z, bn_eps)
        for layer in range(2, self.layers + 1):
            z = np.empty((n, k * self.sizes[layer]), dtype=dtype)
            affine_forward(h, self.weights[layer], self.biases.get(layer), out=z)
            h = self._hidden_eval(layer, z, bn_eps) if layer < self.layers else z
        return h

    def _hidden_eval(self, layer: int, z: Array, eps: float) -> Array:
        if self.batch_norm:
            running = self.running.get(layer)
            if running is None:  # never trained: normalise with this batch's statistics
                mean = z.mean(axis=0)
                running = RunningStats(mean, ((z - mean) ** 2).mean(axis=0))
            return batchnorm_relu_eval(z, self.gamma[layer], self.beta[layer], running, eps=eps)
        return relu_forward(z, out=z)[0]

    def evaluate(self, x: Array, y: Array, *, chunk: int = 4096) -> tuple[Array, Array]:
        """Per member mean cross-entropy (K,) and accuracy (K,) on x (n, d), y (n,)."""
        n = x.shape[0]
        loss = np.zeros(self.k)
        correct = np.zeros(self.k, dtype=np.int64)
        for start in range(0, n, chunk):
            scores = self.eval_forward(x[start : start + chunk])
            part_loss, part_correct = eval_scores_loss(scores, y[start : start + chunk], self.k)
            loss += part_loss
            correct += part_correct
        return loss / n, correct / n
