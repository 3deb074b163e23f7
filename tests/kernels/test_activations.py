"""Activation kernel family: elementwise relu / sigmoid / tanh / linear, forward and
backward, and the bias + activation kernel, on every device against the float64
reference."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import ops

from helpers import ref_act, ref_act_grad, rel_err

ACTS = ["linear", "relu", "sigmoid", "tanh"]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 16, 17, 1000, 65536 + 3, 300001])
def test_activation_forward(device, act, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 5).astype(np.float32)
    out = device.poisoned(n)
    got = ops.activation(device.put(x), act, out=out)
    assert rel_err(device.get(got), ref_act(x, act)) <= 1e-5


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n", [1, 9, 1000, 65536 + 3])
def test_activation_backward(device, act, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    y = ref_act(x, act).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    got = ops.activation_grad(device.put(dy), device.put(y), act, out=device.poisoned(n))
    assert rel_err(device.get(got), ref_act_grad(dy, y, act)) <= 1e-5


def test_named_activation_functions(device):
    x = np.linspace(-6, 6, 101, dtype=np.float32).reshape(101, 1)
    for fn, name in [(ops.relu, "relu"), (ops.sigmoid, "sigmoid"), (ops.tanh, "tanh")]:
        y = fn(device.put(x))
        assert y.shape == x.shape
        assert rel_err(device.get(y), ref_act(x, name)) <= 1e-5
    dy = np.ones_like(x)
    for fn, name in [(ops.relu_grad, "relu"), (ops.sigmoid_grad, "sigmoid"), (ops.tanh_grad, "tanh")]:
        y = ref_act(x, name).astype(np.float32)
        assert rel_err(device.get(fn(device.put(dy), device.put(y))), ref_act_grad(dy, y, name)) <= 1e-5


def test_activation_extremes(device):
    x = np.array([-1e30, -1000, -104, -88, -87.5, -20, -1e-40, 0, 1e-40, 20, 88, 1000, 1e30, np.inf, -np.inf],
                 dtype=np.float32)
    with np.errstate(over="ignore"):
        for act in ("sigmoid", "tanh", "relu"):
            y = device.get(ops.activation(device.put(x), act))
            assert act == "relu" or np.isfinite(y).all()
            assert rel_err(y, ref_act(x, act)) <= 1e-5
    nan = np.array([np.nan, 1.0], dtype=np.float32)
    for act in ("relu", "sigmoid", "tanh"):
        assert np.isnan(device.get(ops.activation(device.put(nan), act))[0]), f"{act} must propagate NaN"


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 17), (32, 64), (129, 7)])
@pytest.mark.parametrize("act", ACTS)
def test_bias_act(device, rows, cols, act):
    rng = np.random.default_rng(rows * cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    b = rng.standard_normal(cols).astype(np.float32)
    out = device.poisoned((rows, cols))
    device.backend.bias_act(device.put(x), device.put(b), out, act)
    assert rel_err(device.get(out), ref_act(x.astype(np.float64) + b, act)) <= 1e-5
