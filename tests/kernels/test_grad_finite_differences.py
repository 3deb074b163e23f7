"""Gradient ops against central finite differences of float64 functions."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import ops

from helpers import numeric_grad, ref_act

@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "linear"])
def test_activation_grad_finite_differences(host_backend_name, act):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)) * 2
    x[np.abs(x) < 1e-2] = 0.5  # keep relu away from its kink
    dy = rng.standard_normal((4, 5))
    num = numeric_grad(lambda z: float(np.sum(dy * ref_act(z, act))), x.copy())
    y = ops.activation(x, act)  # float32 forward output, as a layer caches it
    got = ops.activation_grad(dy, y, act)
    np.testing.assert_allclose(got, num, rtol=1e-4, atol=1e-5)


def test_mse_grad_finite_differences(host_backend_name):
    rng = np.random.default_rng(1)
    p = rng.standard_normal((6, 3))
    t = rng.standard_normal((6, 3))
    num = numeric_grad(lambda z: float(np.mean((z - t) ** 2)), p.copy())
    np.testing.assert_allclose(ops.mse_grad(p, t), num, rtol=1e-4, atol=1e-7)


def test_dense_gradients_through_matmul_and_sum_rows(host_backend_name):
    """dW = x^T dz, db = sum_rows(dz), dx = dz W^T for L = sum(G * (x W + b))."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 4))
    w = rng.standard_normal((4, 3))
    b = rng.standard_normal(3)
    G = rng.standard_normal((7, 3))
    loss = lambda x_, w_, b_: float(np.sum(G * (x_ @ w_ + b_)))  # noqa: E731
    np.testing.assert_allclose(ops.matmul(x, G, transpose_a=True),
                               numeric_grad(lambda z: loss(x, z, b), w.copy()), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ops.sum_rows(G), numeric_grad(lambda z: loss(x, w, z), b.copy()),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ops.matmul(G, w, transpose_b=True),
                               numeric_grad(lambda z: loss(z, w, b), x.copy()), rtol=1e-4, atol=1e-5)
