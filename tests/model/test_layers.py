"""Layers and initialisers: forward passes against float64 NumPy, Keras' init formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fusednn
from fusednn import initializers, keras

from model_refs import act64, rel_diff


# ------------------------------------------------------------------ initialisers
def test_glorot_uniform_limit_and_spread():
    w = initializers.GlorotUniform(seed=0)((300, 200))
    limit = math.sqrt(6 / 500)
    assert w.dtype == np.float32 and w.shape == (300, 200)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    assert abs(w.std() - limit / math.sqrt(3)) < 0.02 * limit / math.sqrt(3)
    assert abs(w.mean()) < 0.01 * limit


@pytest.mark.parametrize("cls,fan", [(initializers.HeNormal, lambda i, o: i),
                                     (initializers.GlorotNormal, lambda i, o: (i + o) / 2)])
def test_truncated_normals_have_keras_std_and_cut(cls, fan):
    fan_in, fan_out = 400, 300
    scale = 2.0 if cls is initializers.HeNormal else 1.0
    w = cls(seed=1)((fan_in, fan_out))
    std = math.sqrt(scale / fan(fan_in, fan_out))
    cut = 2 * std / 0.87962566103423978  # two standard deviations of the untruncated normal
    assert abs(w.std() - std) < 0.02 * std
    assert np.abs(w).max() <= cut and np.abs(w).max() > 0.95 * cut


def test_he_uniform_limit():
    w = initializers.HeUniform(seed=2)((250, 100))
    limit = math.sqrt(6 / 250)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit


def test_constant_initializers_and_names():
    assert (initializers.get("zeros")((3, 2)) == 0).all()
    assert (initializers.get("ones")((4,)) == 1).all()
    for name, cls in [("glorot_uniform", initializers.GlorotUniform), ("he_normal", initializers.HeNormal),
                      ("he_uniform", initializers.HeUniform), ("glorot_normal", initializers.GlorotNormal)]:
        assert type(initializers.get(name)) is cls
    with pytest.raises(ValueError, match="glorot_uniform"):
        initializers.get("xavier")


def test_seeded_initializer_repeats_and_global_seed_reproduces():
    init = initializers.HeNormal(seed=7)
    np.testing.assert_array_equal(init((5, 4)), init((5, 4)))
    fusednn.set_random_seed(3)
    a = keras.layers.Dense(8)
    a.build(5)
    fusednn.set_random_seed(3)
    b = keras.layers.Dense(8)
    b.build(5)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    c = keras.layers.Dense(8)
    c.build(5)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_same_seed_same_initial_weights_on_every_backend(backend_name):
    fusednn.set_random_seed(11)
    layer = keras.layers.Dense(6, kernel_initializer="glorot_uniform", bias_initializer="he_normal")
    layer.build(3)
    ref = initializers.GlorotUniform(seed=None)
    fusednn.set_random_seed(11)
    np.testing.assert_array_equal(layer.get_weights()[0], ref((3, 6)))


# ------------------------------------------------------------------------ Dense
@pytest.mark.parametrize("act", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_forward_matches_float64(backend_name, act, use_bias):
    rng = np.random.default_rng(0)
    layer = keras.layers.Dense(13, activation=None if act == "linear" else act, use_bias=use_bias,
                               bias_initializer="he_uniform")
    x = rng.standard_normal((37, 9)).astype(np.float32)
    y = fusednn.get_backend().to_numpy(layer(x))
    w = layer.get_weights()
    z = x.astype(np.float64) @ w[0] + (w[1] if use_bias else 0.0)
    assert y.shape == (37, 13) and y.dtype == np.float32
    assert rel_diff(y, act64(z, act)) < 1e-5
    assert layer.count_params() == 9 * 13 + (13 if use_bias else 0)


def test_dense_keras_attributes_and_set_weights(backend_name):
    layer = keras.layers.Dense(3, input_dim=2, name="out")
    layer.build(2)
    assert layer.name == "out" and layer.units == 3 and layer.activation == "linear"
    assert layer.kernel.shape == (2, 3) and layer.bias.shape == (3,)
    assert (layer.get_weights()[1] == 0).all()  # Keras' default bias init
    layer.set_weights([np.arange(6).reshape(2, 3), [1, 2, 3]])
    np.testing.assert_array_equal(layer.get_weights()[0], np.arange(6).reshape(2, 3))
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        layer.set_weights([np.zeros((3, 2)), np.zeros(3)])
    with pytest.raises(ValueError, match="2 weight arrays, got 1"):
        layer.set_weights([np.zeros((2, 3))])


def test_activation_layer_forward(backend_name):
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    for act in ["relu", "sigmoid", "tanh", "linear"]:
        y = fusednn.get_backend().to_numpy(keras.layers.Activation(act)(x))
        assert rel_diff(y, act64(x.astype(np.float64), act)) < 1e-6


def test_automatic_names_are_unique():
    a, b = keras.layers.Dense(1), keras.layers.Dense(1)
    assert a.name != b.name and a.name.startswith("dense") and b.name.startswith("dense")
    assert keras.layers.Activation("relu").name.startswith("activation")


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match="linear, .*relu, .*sigmoid, .*softmax, .*tanh"):
        keras.layers.Dense(3, activation="swishy")
    with pytest.raises(ValueError, match="relu"):
        keras.layers.Activation("gelux")


@pytest.mark.parametrize("units", [0, -1, 2.5, True])
def test_bad_units(units):
    with pytest.raises(ValueError, match="units"):
        keras.layers.Dense(units)
