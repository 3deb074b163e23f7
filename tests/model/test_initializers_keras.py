"""Every Keras 3 initializer by class and by name: exact formulas (limits, standard
deviations, fans), moments of large draws within tight statistical bounds,
truncation, orthogonality, seeds, configs round trip and saved with a model."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fusednn
from fusednn import initializers as I, keras

TRUNC = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]
SHAPE = (400, 300)  # 120000 draws: the sample moments are within a few 1e-3 relative


def _check_normal(w, mean, std, truncated):
    n = w.size
    assert abs(w.mean() - mean) < 5 * std / math.sqrt(n) + 1e-7
    # std of the sample std of n draws ~ std / sqrt(2n); 6 sigma
    assert abs(w.std() - std) < 6 * std / math.sqrt(2 * n)
    if truncated:
        assert np.abs(w - mean).max() <= 2 * std / (TRUNC if std != 0 else 1) + 1e-6


@pytest.mark.parametrize("name,cls,scale,mode,dist", [
    ("glorot_uniform", I.GlorotUniform, 1.0, "fan_avg", "uniform"),
    ("glorot_normal", I.GlorotNormal, 1.0, "fan_avg", "truncated_normal"),
    ("he_uniform", I.HeUniform, 2.0, "fan_in", "uniform"),
    ("he_normal", I.HeNormal, 2.0, "fan_in", "truncated_normal"),
    ("lecun_uniform", I.LecunUniform, 1.0, "fan_in", "uniform"),
    ("lecun_normal", I.LecunNormal, 1.0, "fan_in", "truncated_normal"),
])
def test_variance_scaling_family(name, cls, scale, mode, dist):
    init = I.get(name)
    assert type(init) is cls and (init.scale, init.mode, init.distribution) == (scale, mode, dist)
    w = cls(seed=1)(SHAPE).astype(np.float64)
    fan_in, fan_out = SHAPE
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    if dist == "uniform":
        limit = math.sqrt(3 * scale / n)
        assert w.min() >= -limit and w.max() <= limit and w.max() > 0.999 * limit and w.min() < -0.999 * limit
        _check_normal(w, 0.0, limit / math.sqrt(3), False)
    else:
        # the truncated draws have exactly the target variance scale/n (Keras' correction)
        _check_normal(w, 0.0, math.sqrt(scale / n), False)
        assert np.abs(w).max() <= 2 * math.sqrt(scale / n) / TRUNC
    assert cls(seed=1).get_config() == {"seed": 1}
    assert cls(input_axes=[0], output_axes=[1]).get_config() == {"seed": None, "input_axes": [0], "output_axes": [1]}


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("dist", ["truncated_normal", "untruncated_normal", "uniform"])
def test_variance_scaling_formulas(mode, dist):
    shape = (250, 600)
    init = I.VarianceScaling(scale=3.0, mode=mode, distribution=dist, seed=4)
    w = init(shape).astype(np.float64)
    n = {"fan_in": 250, "fan_out": 600, "fan_avg": 425}[mode]
    std = math.sqrt(3.0 / n)
    _check_normal(w, 0.0, std, False)
    if dist == "uniform":
        assert np.abs(w).max() <= math.sqrt(3) * std
    elif dist == "truncated_normal":
        assert np.abs(w).max() <= 2 * std / TRUNC
    else:
        assert np.abs(w).max() > 2 * std / TRUNC  # 150000 normal draws reach past 2.27 sigma
    cfg = init.get_config()
    assert cfg == {"scale": 3.0, "mode": mode, "distribution": dist, "seed": 4}
    assert I.VarianceScaling(distribution="normal").distribution == "truncated_normal"  # Keras' alias


def test_fans_of_conv_shapes_and_vectors():
    # Keras' compute_fans: receptive field times channels; a vector's fan is its length
    w = I.VarianceScaling(1.0, "fan_in", "uniform", seed=0)((3, 3, 16, 200))
    assert np.abs(w).max() <= math.sqrt(3 / (3 * 3 * 16))
    assert np.abs(w).max() > 0.99 * math.sqrt(3 / (3 * 3 * 16))
    v = I.HeUniform(seed=0)((5000,))
    assert np.abs(v).max() <= math.sqrt(6 / 5000)
    # Keras 3.15's input_axes/output_axes: the fans are those axes' products
    a = I.VarianceScaling(1.0, "fan_out", "uniform", seed=0, input_axes=[0], output_axes=[1, 2])((50, 4, 10))
    assert np.abs(a).max() <= math.sqrt(3 / 40) and np.abs(a).max() > 0.99 * math.sqrt(3 / 40)


def test_random_normal_uniform_truncated():
    w = I.RandomNormal(mean=0.5, stddev=0.2, seed=3)(SHAPE).astype(np.float64)
    _check_normal(w, 0.5, 0.2, False)
    u = I.RandomUniform(minval=-0.3, maxval=0.7, seed=3)(SHAPE).astype(np.float64)
    assert u.min() >= -0.3 and u.max() <= 0.7
    assert abs(u.mean() - 0.2) < 5 * (1 / math.sqrt(12)) / math.sqrt(u.size)
    assert abs(u.var() - 1 / 12) < 1e-3
    t = I.TruncatedNormal(mean=1.0, stddev=0.1, seed=3)(SHAPE).astype(np.float64)
    assert np.abs(t - 1.0).max() <= 0.2 + 1e-6
    # no variance correction in TruncatedNormal: std of a [-2, 2]-truncated normal
    assert abs(t.std() - 0.1 * TRUNC) < 6 * 0.1 / math.sqrt(2 * t.size)
    assert abs(t.mean() - 1.0) < 5 * 0.1 / math.sqrt(t.size)
    # defaults are Keras'
    assert I.RandomNormal().get_config() == {"mean": 0.0, "stddev": 0.05, "seed": None}
    assert I.RandomUniform().get_config() == {"minval": -0.05, "maxval": 0.05, "seed": None}
    assert I.TruncatedNormal().get_config() == {"mean": 0.0, "stddev": 0.05, "seed": None}


def test_constant_identity_zeros_ones():
    np.testing.assert_array_equal(I.Constant(0.25)((3, 4)), np.full((3, 4), 0.25, np.float32))
    np.testing.assert_array_equal(I.get("constant")((2,)), np.zeros(2, np.float32))
    np.testing.assert_array_equal(I.Identity(gain=2.0)((3, 5)), 2 * np.eye(3, 5, dtype=np.float32))
    np.testing.assert_array_equal(I.get("identity")((4, 4)), np.eye(4, dtype=np.float32))
    assert (I.get("zero")((2, 2)) == 0).all() and (I.get("one")((2,)) == 1).all()
    with pytest.raises(ValueError, match="2-D"):
        I.Identity()((3,))
    with pytest.raises(ValueError, match="finite number"):
        I.Constant(float("inf"))
    for init in (I.Zeros(), I.Ones(), I.Constant(1.5), I.Identity(0.5)):
        assert init((2, 3)).dtype == np.float32


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (30, 30), (4, 5, 6), (1, 7)])
def test_orthogonal(shape):
    w = I.Orthogonal(gain=1.5, seed=2)(shape).astype(np.float64)
    assert w.shape == shape
    m = w.reshape(-1, shape[-1])
    if m.shape[0] >= m.shape[1]:
        np.testing.assert_allclose(m.T @ m, 2.25 * np.eye(m.shape[1]), atol=1e-5)
    else:
        np.testing.assert_allclose(m @ m.T, 2.25 * np.eye(m.shape[0]), atol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        I.Orthogonal()((5,))


def test_orthogonal_is_uniformly_distributed():
    # sign-fixed QR gives Haar-distributed Q: every entry of a 6x6 has mean 0 and variance 1/6
    draws = np.stack([I.Orthogonal(seed=s)((6, 6)) for s in range(3000)]).astype(np.float64)
    assert np.abs(draws.mean(axis=0)).max() < 5 * math.sqrt(1 / 6 / 3000)
    np.testing.assert_allclose(draws.var(axis=0), 1 / 6, rtol=0.15)


@pytest.mark.parametrize("name", ["random_normal", "random_uniform", "truncated_normal", "zeros", "ones",
                                  "constant", "identity", "orthogonal", "variance_scaling", "glorot_normal",
                                  "glorot_uniform", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
                                  "RandomNormal", "LecunNormal", "Orthogonal", "normal", "uniform"])
def test_names_and_config_round_trip(name):
    init = I.get(name)
    back = I.deserialize(I.serialize(init))
    assert type(back) is type(init) and back.get_config() == init.get_config()
    assert getattr(keras.initializers, name) is type(init) if hasattr(keras.initializers, name) else True


def test_seeds():
    a, b = I.RandomNormal(seed=5)((4, 3)), I.RandomNormal(seed=5)((4, 3))
    np.testing.assert_array_equal(a, b)  # an explicit seed repeats, as in Keras
    fusednn.utils.set_random_seed(9)
    c, d = I.Orthogonal()((5, 5)), I.Orthogonal()((5, 5))
    fusednn.utils.set_random_seed(9)
    np.testing.assert_array_equal(I.Orthogonal()((5, 5)), c)  # the global seed reproduces
    assert not np.array_equal(c, d)
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed"):
            I.RandomUniform(seed=bad)


def test_in_layers_and_saved_models(tmp_path):
    fusednn.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(6,)),
        keras.layers.Dense(6, kernel_initializer="identity", bias_initializer=keras.initializers.Constant(0.1)),
        keras.layers.Dense(4, activation="selu", kernel_initializer="lecun_normal",
                           bias_initializer=keras.initializers.RandomUniform(0.0, 0.01, seed=1)),
        keras.layers.BatchNormalization(gamma_initializer=keras.initializers.Constant(2.0),
                                        beta_initializer="random_normal"),
        keras.layers.Dense(3, kernel_initializer=keras.initializers.Orthogonal(gain=0.5, seed=3)),
    ])
    w = model.get_weights()
    np.testing.assert_array_equal(w[0], np.eye(6, dtype=np.float32))
    np.testing.assert_array_equal(w[1], np.full(6, 0.1, np.float32))
    assert (w[3] >= 0).all() and (w[3] <= 0.01).all()
    np.testing.assert_array_equal(w[4], 2.0)
    np.testing.assert_allclose(w[8].T @ w[8], 0.25 * np.eye(3), atol=1e-6)  # (4, 3): orthonormal columns
    cfg = model.layers[1].get_config()
    assert cfg["kernel_initializer"] == {"class_name": "LecunNormal", "config": {"seed": None}}
    assert cfg["bias_initializer"] == {"class_name": "RandomUniform",
                                       "config": {"minval": 0.0, "maxval": 0.01, "seed": 1}}
    path = tmp_path / "m.npz"
    model.save(str(path))
    back = fusednn.load_model(str(path))
    for a, b in zip(model.layers, back.layers):
        assert a.get_config() == b.get_config()
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)
