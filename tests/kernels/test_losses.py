"""Loss kernel family (MSE and its gradient) on every device against the float64
reference. The cross-entropy kernels are tested through the losses in
tests/model/test_classification.py and, raw, in test_cuda_kernels.py."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import ops
from fusednn.bench import reference

from helpers import rel_err


@pytest.mark.parametrize("shape", [(1,), (1, 1), (7, 3), (32, 1), (1000, 10), (300, 300)])
def test_mse_and_grad(device, shape):
    rng = np.random.default_rng(sum(shape))
    p = rng.standard_normal(shape).astype(np.float32)
    t = rng.standard_normal(shape).astype(np.float32)
    want = reference.mse(p, t)
    assert abs(ops.mse(device.put(p), device.put(t)) - want) <= 1e-6 * want
    g = ops.mse_grad(device.put(p), device.put(t), out=device.poisoned(shape))
    assert rel_err(device.get(g), reference.mse_grad(p, t)) <= 1e-5


def test_mse_large_is_deterministic_and_accurate(device):
    rng = np.random.default_rng(5)
    p = device.put(rng.standard_normal(1 << 20).astype(np.float32))
    t = device.put(rng.standard_normal(1 << 20).astype(np.float32))
    want = reference.mse(device.get(p), device.get(t))
    v1, v2 = ops.mse(p, t), ops.mse(p, t)
    assert v1 == v2
    assert abs(v1 - want) <= 1e-9 * want


def test_mse_into_device_scalar(device):
    """The loss is written into a one-element slice of a device buffer, nothing else."""
    p = device.put(np.array([[1.0], [3.0]], np.float32))
    t = device.put(np.zeros((2, 1), np.float32))
    buf = device.put(np.zeros(4, np.float32))
    r = device.backend.mse(p, t, out=buf[2:3])
    if device.xp is np:  # host backends also return the value (a GPU one would have to wait for it)
        assert r == pytest.approx(5.0)
    host = device.get(buf)
    assert host[2] == pytest.approx(5.0) and host[[0, 1, 3]].sum() == 0
