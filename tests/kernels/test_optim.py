"""Optimizer kernel family: SGD and Adam, several steps on every device against the
float64 reference (:mod:`fusednn.bench.reference`)."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import ops


from fusednn.bench.reference import adam_step as keras_adam, sgd_step as keras_sgd


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True), (0.5, True)])
@pytest.mark.parametrize("n", [1, 7, 1000, 70001])
def test_sgd_steps(device, momentum, nesterov, n):
    rng = np.random.default_rng(n)
    w64 = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    v64 = np.zeros(n)
    w, v = device.put(w64.astype(np.float32)), device.put(np.zeros(n, np.float32))
    for _ in range(5):
        g = rng.standard_normal(n).astype(np.float32)
        ops.sgd_update(w, device.put(g), v if momentum else None, learning_rate=0.05, momentum=momentum,
                       nesterov=nesterov)
        w64, v64 = keras_sgd(w64, g.astype(np.float64), v64, 0.05, momentum, nesterov)
    np.testing.assert_allclose(device.get(w), w64, rtol=1e-5, atol=1e-6)
    if momentum:
        np.testing.assert_allclose(device.get(v), v64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 13, 4096, 70001])
@pytest.mark.parametrize("lr,b1,b2,eps", [(1e-3, 0.9, 0.999, 1e-7), (0.1, 0.8, 0.99, 1e-3)])
def test_adam_steps(device, n, lr, b1, b2, eps):
    rng = np.random.default_rng(n)
    w64 = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    m64, v64 = np.zeros(n), np.zeros(n)
    w = device.put(w64.astype(np.float32))
    m, v = device.put(np.zeros(n, np.float32)), device.put(np.zeros(n, np.float32))
    for t in range(1, 8):
        g = rng.standard_normal(n).astype(np.float32)
        ops.adam_update(w, device.put(g), m, v, step=t, learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
        w64, m64, v64 = keras_adam(w64, g.astype(np.float64), m64, v64, t, lr, b1, b2, eps)
    np.testing.assert_allclose(device.get(m), m64, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(device.get(v), v64, rtol=1e-5, atol=1e-9)
    # Adam's step is ~lr per element; compare the accumulated change at lr-relative precision
    np.testing.assert_allclose(device.get(w), w64, rtol=0, atol=1e-5 * max(lr, 1e-2) * 10)


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
