"""Weight initialisation schemes: He, Xavier, or a fixed standard deviation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kmlp.network.checks import show
from kmlp.network.errors import ConfigError


@dataclass(frozen=True)
class InitScheme:
    """How weights are drawn: ``kind`` is "he", "xavier" or "sigma" (then ``sigma`` is set)."""

    kind: str
    sigma: float | None = None

    def std(self, *, fan_in: int, fan_out: int) -> float:
        """Standard deviation of the normal a (fan_in, fan_out) weight matrix is drawn from."""
        if self.kind == "he":
            return math.sqrt(2.0 / fan_in)
        if self.kind == "xavier":  # Glorot & Bengio (2010), normal form
            return math.sqrt(2.0 / (fan_in + fan_out))
        assert self.sigma is not None
        return self.sigma

    def __str__(self) -> str:
        return self.kind if self.sigma is None else f"sigma={self.sigma:g}"


# Weights are drawn in float64 and stored as float32 or float64: a larger std would make
# them overflow to inf in float32 (a 10-sigma draw of 1e30 is still finite).
MAX_SIGMA = 1e30


def parse_init(spec: str) -> InitScheme:
    """Parse "he", "xavier" or "sigma=<float>" (e.g. "sigma=1e-3"); ConfigError otherwise."""
    if not isinstance(spec, str) or len(spec) > 100:
        raise ConfigError(f"init must be he, xavier or sigma=<std>, got {show(spec)}")
    text = spec.strip().lower()
    if text in ("he", "xavier"):
        return InitScheme(text)
    if text.startswith("sigma="):
        try:
            sigma = float(text.removeprefix("sigma="))
        except ValueError:
            sigma = math.nan
        if not (math.isfinite(sigma) and 0 < sigma <= MAX_SIGMA):
            raise ConfigError(
                f"init {spec!r}: sigma must be a positive number up to {MAX_SIGMA:g}, "
                "as in sigma=1e-3"
            )
        return InitScheme("sigma", sigma)
    raise ConfigError(f"unknown init {spec!r}: use he, xavier or sigma=<std>, e.g. sigma=1e-3")


def init_params(
    *,
    layer_sizes: list[int],
    batch_norm: bool,
    scheme: InitScheme,
    rng: np.random.Generator,
    dtype: np.dtype,
) -> dict[str, np.ndarray]:
    """Fresh parameters for the layer sizes [d, h1, ..., c].

    W{l} (d_{l-1}, d_l) normal with the scheme's std; b{l} zeros. With batch norm,
    gamma{l} ones and beta{l} zeros for each hidden layer l, and no hidden bias b{l}:
    the mean subtraction cancels it (its gradient is identically zero) and beta{l}
    takes its place.
    """
    params: dict[str, np.ndarray] = {}
    k = len(layer_sizes) - 1
    for layer in range(1, k + 1):
        fan_in, fan_out = layer_sizes[layer - 1], layer_sizes[layer]
        std = scheme.std(fan_in=fan_in, fan_out=fan_out)
        params[f"W{layer}"] = (rng.standard_normal((fan_in, fan_out)) * std).astype(dtype)
        hidden = layer < k
        if not (batch_norm and hidden):
            params[f"b{layer}"] = np.zeros(fan_out, dtype=dtype)
        if batch_norm and hidden:
            params[f"gamma{layer}"] = np.ones(fan_out, dtype=dtype)
            params[f"beta{layer}"] = np.zeros(fan_out, dtype=dtype)
    return params
