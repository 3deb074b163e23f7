"""Backpropagation against central finite differences.

Two checks of the gradients the model's own backward pass computes:
1. the layer code run entirely in float64 (a NumPy backend whose arrays are
   float64, so every op of the real forward/backward/loss runs in double), against
   finite differences of that same model's loss: tight tolerance, no float32 noise;
2. the float32 backward of the numpy and cpu backends against finite differences
   of an independent float64 NumPy re-implementation of the network (whose loss
   is first checked to equal the model's), at float32 accuracy.
"""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import backends, keras
from fusednn.backends.numpy import NumpyBackend

from model_refs import finite_differences, forward64, mse64, preactivations64, rel_diff

ACTS = ["relu", "tanh", "sigmoid"]


class Float64Numpy(NumpyBackend):
    """The NumPy backend with float64 arrays: the same ops, in double precision."""

    name = "numpy"

    def asarray(self, x):
        return np.ascontiguousarray(x, dtype=np.float64)

    def empty(self, shape):
        return np.empty(shape, dtype=np.float64)

    def zeros(self, shape):
        return np.zeros(shape, dtype=np.float64)


def _data(seed=0, n=9, d=5, out=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.uniform(0.1, 0.9, (n, out))


def _net(d=5, out=3):
    return keras.Sequential([
        keras.layers.Dense(7, activation=ACTS[0], input_shape=(d,), bias_initializer="he_uniform"),
        keras.layers.Dense(6, activation=ACTS[1], bias_initializer="he_uniform"),
        keras.layers.Dense(out, activation=ACTS[2], bias_initializer="he_uniform"),
    ])


def _backprop(model, x, y):
    """The model's gradients for one batch, as float64 NumPy copies."""
    be = model._backend
    xb, yb = be.asarray(x.astype(np.float32)), be.asarray(y.astype(np.float32))
    model._compute_gradients(xb, yb, model._workspace(len(x)), be.zeros((1,)))
    return [np.array(be.to_numpy(g), dtype=np.float64) for g in model._grads]


def test_float64_backprop_matches_finite_differences(monkeypatch):
    monkeypatch.setattr(backends, "_active", Float64Numpy())
    fusednn.set_random_seed(1)
    x, y = _data()
    model = _net()
    model.compile(optimizer="sgd", loss="mse")
    assert model._params[0].dtype == np.float64
    # keep relu away from its kink, where finite differences are meaningless
    assert min(np.abs(z).min() for z in preactivations64(model.get_weights(), ACTS, x)) > 1e-4
    grads = _backprop(model, x, y)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    numeric = finite_differences(lambda: model.evaluate(x32, y32, batch_size=len(x), verbose=0), model._params)
    for g, num in zip(grads, numeric):
        assert rel_diff(g, num) < 1e-6


def test_float32_backprop_matches_float64_reference(host_backend_name):
    fusednn.set_random_seed(2)
    x, y = _data(seed=3)
    x, y = x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)
    model = _net()
    model.compile(optimizer="sgd", loss="mse")
    params = [w.astype(np.float64) for w in model.get_weights()]
    assert min(np.abs(z).min() for z in preactivations64(params, ACTS, x)) > 1e-4
    # the reference is the same function as the model
    assert abs(model.evaluate(x, y, verbose=0) - mse64(forward64(params, ACTS, x), y)) < 1e-6
    numeric = finite_differences(lambda: mse64(forward64(params, ACTS, x), y), params)
    for g, num in zip(_backprop(model, x, y), numeric):
        assert g.shape == num.shape
        assert rel_diff(g, num) < 1e-4


def test_activation_layers_and_no_bias_backprop(monkeypatch):
    """Activation layers (including one first, whose input gradient is unused) and
    bias-free Dense layers, in float64 against finite differences."""
    monkeypatch.setattr(backends, "_active", Float64Numpy())
    fusednn.set_random_seed(4)
    x, y = _data(seed=5, n=6, d=4, out=2)
    model = keras.Sequential([
        keras.Input(shape=(4,)),
        keras.layers.Activation("tanh"),
        keras.layers.Dense(5, use_bias=False),
        keras.layers.Activation("sigmoid"),
        keras.layers.Dense(2, activation="tanh"),
        keras.layers.Activation("linear"),
    ])
    model.compile(optimizer="adam", loss="mse")
    assert [w.shape for w in model.get_weights()] == [(4, 5), (5, 2), (2,)]
    grads = _backprop(model, x, y)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    numeric = finite_differences(lambda: model.evaluate(x32, y32, batch_size=len(x), verbose=0), model._params)
    for g, num in zip(grads, numeric):
        assert rel_diff(g, num) < 1e-6


@pytest.mark.parametrize("batch", [1, 4])
def test_gradient_scales_with_batch_mean(host_backend_name, batch):
    """MSE averages over the batch: the gradient of a batch is the mean of the
    per-sample gradients (catches a missing or doubled 1/N)."""
    fusednn.set_random_seed(6)
    x, y = _data(seed=7, n=batch)
    model = _net()
    model.compile(optimizer="sgd", loss="mse")
    whole = _backprop(model, x, y)
    per_sample = [_backprop(model, x[i:i + 1], y[i:i + 1]) for i in range(batch)]
    for k, g in enumerate(whole):
        assert rel_diff(g, np.mean([p[k] for p in per_sample], axis=0)) < 1e-5
