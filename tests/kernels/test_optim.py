"""SGD and Adam kernels: several steps against a float64 re-implementation."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import ops


def keras_sgd(w, g, v, lr, mu, nesterov):
    if mu == 0:
        return w - lr * g, v
    v = mu * v - lr * g
    return (w + mu * v - lr * g if nesterov else w + v), v


def keras_adam(w, g, m, v, t, lr, b1, b2, eps):
    # Keras holds the hyperparameters as float32 and forms 1 - beta in float32
    # (1 - float32(0.999) is 1.3e-5 away from 0.001); the rest is float64 here.
    c1 = float(np.float32(1) - np.float32(b1))
    c2 = float(np.float32(1) - np.float32(b2))
    m = m + (g - m) * c1
    v = v + (g * g - v) * c2
    alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    return w - m * alpha / (np.sqrt(v) + eps), m, v


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True), (0.5, True)])
@pytest.mark.parametrize("n", [1, 7, 1000, 70001])
def test_sgd_steps(host_backend_name, momentum, nesterov, n):
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(np.float32)
    v = np.zeros(n, np.float32)
    w64, v64 = w.astype(np.float64), v.astype(np.float64)
    for _ in range(5):
        g = rng.standard_normal(n).astype(np.float32)
        ops.sgd_update(w, g, v if momentum else None, learning_rate=0.05, momentum=momentum, nesterov=nesterov)
        w64, v64 = keras_sgd(w64, g.astype(np.float64), v64, 0.05, momentum, nesterov)
    np.testing.assert_allclose(w, w64, rtol=1e-5, atol=1e-6)
    if momentum:
        np.testing.assert_allclose(v, v64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 13, 4096, 70001])
@pytest.mark.parametrize("lr,b1,b2,eps", [(1e-3, 0.9, 0.999, 1e-7), (0.1, 0.8, 0.99, 1e-3)])
def test_adam_steps(host_backend_name, n, lr, b1, b2, eps):
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(np.float32)
    m = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    w64, m64, v64 = w.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    for t in range(1, 8):
        g = rng.standard_normal(n).astype(np.float32)
        ops.adam_update(w, g, m, v, step=t, learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
        w64, m64, v64 = keras_adam(w64, g.astype(np.float64), m64, v64, t, lr, b1, b2, eps)
    np.testing.assert_allclose(m, m64, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v, v64, rtol=1e-5, atol=1e-9)
    # Adam's step is ~lr per element; compare the accumulated change at lr-relative precision
    np.testing.assert_allclose(w, w64, rtol=0, atol=1e-5 * max(lr, 1e-2) * 10)


def test_update_needs_float32_contiguous_writeable_param(host_backend_name):
    g = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="float32"):
        ops.sgd_update(np.ones(4), g, learning_rate=0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.sgd_update(np.ones(8, np.float32)[::2], g, learning_rate=0.1)
    ro = np.ones(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.sgd_update(ro, g, learning_rate=0.1)
    with pytest.raises(ValueError, match="velocity"):
        ops.sgd_update(np.ones(4, np.float32), g, learning_rate=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="step"):
        ops.adam_update(np.ones(4, np.float32), g, np.zeros(4, np.float32), np.zeros(4, np.float32), step=0)
    with pytest.raises(ValueError, match="same shape"):
        ops.adam_update(np.ones(4, np.float32), g, np.zeros(3, np.float32), np.zeros(4, np.float32), step=1)
    # a float64 gradient is converted once at the boundary
    w = np.ones(4, np.float32)
    ops.sgd_update(w, np.ones(4), learning_rate=0.5)
    np.testing.assert_array_equal(w, np.full(4, 0.5, np.float32))
