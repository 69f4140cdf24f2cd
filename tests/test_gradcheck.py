from __future__ import annotations

import numpy as np
import pytest

from kmlp.network import MLP
from kmlp.network.gradcheck import gradient_check, numerical_gradients, randomise_bn_params

NETS = {
    2: [50],
    3: [50, 50],
    4: [50, 30, 20],
    9: [50, 30, 20, 20, 10, 10, 10, 10],
}


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("k", sorted(NETS))
def test_analytic_gradients_match_centred_differences(k: int, batch_norm: bool) -> None:
    rng = np.random.default_rng(100 + k)
    d, n = 15, 8
    X = rng.standard_normal((n, d))
    y = rng.integers(0, 10, size=n)
    net = MLP(layer_sizes=[d, *NETS[k], 10], batch_norm=batch_norm, seed=k, dtype="float64")
    randomise_bn_params(net, rng)
    if batch_norm:
        assert not any(np.allclose(net.params[f"gamma{layer}"], 1) for layer in range(1, k))
        assert not any(np.allclose(net.params[f"beta{layer}"], 0) for layer in range(1, k))
    rows = gradient_check(net, X, y, 0.05)
    assert [r.name for r in rows] == list(net.params)
    for row in rows:
        assert row.max_gradient > 0, row
        assert row.relative_error < 1e-6, row
        assert row.max_absolute_error < 1e-7, row


def test_gradient_check_detects_a_wrong_gradient() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 10)), rng.integers(0, 10, size=6)
    net = MLP(layer_sizes=[10, 20, 10], batch_norm=True, seed=0, dtype="float64")
    randomise_bn_params(net, rng)
    numeric = numerical_gradients(net, X, y, 0.05)
    analytic = net.gradients(X, y, 0.0)  # the L2 term left out: must show
    err = np.linalg.norm(analytic["W1"] - numeric["W1"]) / np.linalg.norm(numeric["W1"])
    assert err > 1e-3


def test_numerical_gradients_restore_parameters() -> None:
    rng = np.random.default_rng(1)
    net = MLP(layer_sizes=[5, 4, 3], batch_norm=True, seed=0, dtype="float64")
    before = {k: v.copy() for k, v in net.params.items()}
    numerical_gradients(net, rng.standard_normal((4, 5)), np.array([0, 1, 2, 0]), 0.1)
    for key, value in net.params.items():
        np.testing.assert_array_equal(value, before[key])
