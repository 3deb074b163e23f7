"""Flatten/Reshape at the API boundary, the activation layers, Identity and the
training-only Gaussian noise layers (issue 11): Keras' formulas, finite-difference
gradients, fused == per-op where they run in the fused trainer, and configs."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras
from fusednn.layers import philox

from helpers import numeric_grad

HAS_CPU = "cpu" in fusednn.backends.available()
_PREVIOUS = fusednn.get_backend().name


@pytest.fixture(autouse=True)
def _restore_backend():
    """Tests here switch backends; leave the one that was active."""
    global _PREVIOUS
    _PREVIOUS = fusednn.get_backend().name
    yield
    fusednn.set_backend(_PREVIOUS)
L = keras.layers


def _x(shape=(6, 5), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("layer, ref", [
    (lambda: L.ReLU(), lambda x: np.maximum(x, 0)),
    (lambda: L.ReLU(max_value=0.5, negative_slope=0.1, threshold=-0.2),
     lambda x: np.minimum(np.where(x >= -0.2, x, 0.1 * (x + 0.2)), 0.5)),
    (lambda: L.LeakyReLU(), lambda x: np.where(x >= 0, x, 0.3 * x)),
    (lambda: L.LeakyReLU(negative_slope=0.05), lambda x: np.where(x >= 0, x, 0.05 * x)),
    (lambda: L.ELU(), lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))),
    (lambda: L.ELU(alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0)))),
    (lambda: L.Softmax(), lambda x: np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)),
    (lambda: L.Identity(), lambda x: x),
])
def test_activation_layers_forward_and_gradient(host_backend_name, layer, ref):
    x = _x()
    x[np.abs(x) < 0.05] = 0.3  # away from kinks, for the finite differences
    x[np.abs(x - 0.5) < 0.05] = 0.7
    x[np.abs(x + 0.2) < 0.05] = -0.4
    lay = layer()
    got = np.asarray(lay(x))
    np.testing.assert_allclose(got, ref(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    w = _x(seed=1).astype(np.float64)
    buf = lay.make_buffers(x.shape[0])
    lay.forward(lay.backend.asarray(x), buf)
    dx = np.asarray(lay.backward(lay.backend.asarray(w.astype(np.float32)), buf, True))
    num = numeric_grad(lambda v: float((w * ref(v)).sum()), x.astype(np.float64))
    np.testing.assert_allclose(dx, num, rtol=1e-4, atol=1e-4)


def test_gaussian_noise_layers(host_backend_name):
    x = _x((40, 30))
    gn = L.GaussianNoise(0.5, seed=4)
    np.testing.assert_array_equal(np.asarray(gn(x)), x)
    y = np.asarray(gn(x, training=True))
    np.testing.assert_array_equal(y, x + np.float32(0.5) * philox.normal(40, 30, 4, 0))
    z = philox.normal(400, 300, 1, 0).astype(np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01  # Box-Muller over Philox is N(0, 1)
    gd = L.GaussianDropout(0.2, seed=8)
    np.testing.assert_array_equal(np.asarray(gd(x)), x)
    y = np.asarray(gd(x, training=True))
    factor = np.float32(1) + np.float32(np.sqrt(0.2 / 0.8)) * philox.normal(40, 30, 8, 0)
    np.testing.assert_array_equal(y, x * factor)
    with pytest.raises(ValueError, match="stddev"):
        L.GaussianNoise(-1)
    with pytest.raises(ValueError, match="rate"):
        L.GaussianDropout(1.0)


def test_noise_layers_train_per_op(host_backend_name):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([L.GaussianNoise(0.1, seed=1, input_shape=(5,)), L.Dense(8), L.LeakyReLU(),
                          L.GaussianDropout(0.1, seed=2), L.Dense(1)])
    m.compile("adam", "mse")
    h = m.fit(_x((50, 5)), _x((50, 1)), epochs=3, verbose=0)
    assert np.isfinite(h.history["loss"]).all()
    assert m.layers[0].counter[0] == 6  # 2 steps x 3 epochs


def test_flatten_takes_images(host_backend_name, tmp_path):
    x = _x((30, 8, 8))
    y = x.reshape(30, -1)[:, :1] * 2
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input(shape=(8, 8)), L.Flatten(), L.Dense(16, activation="relu"), L.Dense(1)])
    m.compile("adam", "mse")
    m.fit(x, y, epochs=2, verbose=0)
    p = np.asarray(m.predict(x, verbose=0))
    np.testing.assert_array_equal(p, np.asarray(m.predict(x.reshape(30, 64), verbose=0)))  # C order, as Keras
    assert m.input_shape == (None, 64)
    with pytest.raises(ValueError, match="shape"):
        m.predict(_x((3, 4, 16)), verbose=0)
    m2 = keras.Sequential([L.Flatten(input_shape=(4, 4)), L.Reshape((16,)), L.Dense(2)])
    assert m2.input_shape == (None, 16)
    path = tmp_path / "flat.npz"
    m2.save(path)
    loaded = keras.models.load_model(path)
    xx = _x((3, 4, 4))
    np.testing.assert_array_equal(np.asarray(m2.predict(xx, verbose=0)), np.asarray(loaded.predict(xx, verbose=0)))
    with pytest.raises(ValueError, match="flat"):
        L.Reshape((4, 4))
    with pytest.raises(ValueError, match="reshape"):
        keras.Sequential([L.Dense(3, input_shape=(2,)), L.Reshape((5,))])


@pytest.mark.skipif(not HAS_CPU, reason="cpu backend not built")
def test_fused_program_with_relu_identity_flatten():
    fusednn.set_backend("cpu")
    try:
        out = []
        for fused in (True, False):
            keras.utils.set_random_seed(0)
            m = keras.Sequential([L.Flatten(input_shape=(2, 5)), L.Dense(8), L.ReLU(), L.Identity(),
                                  L.BatchNormalization(), L.Dense(1), L.Identity()])
            m.compile("sgd", "mse", fused=fused)
            if fused:
                assert m.fused_reason is None
            keras.utils.set_random_seed(3)
            h = m.fit(_x((20, 2, 5)), _x((20, 1)), epochs=2, batch_size=8, verbose=0)
            out.append((h.history["loss"], m.get_weights()))
        assert out[0][0] == out[1][0]
        for a, b in zip(out[0][1], out[1][1]):
            np.testing.assert_array_equal(a, b)
        m = keras.Sequential([L.Dense(3, input_shape=(2,)), L.LeakyReLU(), L.Dense(1)])
        m.compile("adam", "mse")
        assert m.fused_reason is None  # an act_param step (tests/model/test_fused_steps_more.py)
    finally:
        fusednn.set_backend(_PREVIOUS)


def test_layer_configs_round_trip():
    for layer in (L.ReLU(max_value=2.0), L.LeakyReLU(0.1), L.ELU(0.5), L.Softmax(), L.Identity(),
                  L.GaussianNoise(0.2, seed=3), L.GaussianDropout(0.3, seed=4), L.Flatten(), L.Reshape((-1,)),
                  L.Dropout(0.25, noise_shape=(None, 1), seed=9), L.BatchNormalization(momentum=0.9, center=False)):
        config = layer.get_config()
        config.pop("name")
        again = type(layer).from_config(config)
        c2 = again.get_config()
        c2.pop("name")
        assert c2 == config


def test_layer_normalization_against_float64_and_finite_differences(host_backend_name):
    x = (_x((5, 7)) * 3 + 2).astype(np.float32)
    ln = L.LayerNormalization()
    ln(x)  # builds
    gamma, beta = _x((1, 7), 2)[0], _x((1, 7), 3)[0]
    ln.set_weights([gamma, beta])

    def ref(v, g=gamma.astype(np.float64), b=beta.astype(np.float64)):
        m, s = v.mean(1, keepdims=True), v.var(1, keepdims=True)
        return (v - m) / np.sqrt(s + 1e-3) * g + b

    x64 = x.astype(np.float64)
    np.testing.assert_allclose(np.asarray(ln(x)), ref(x64), rtol=1e-4, atol=1e-5)
    w = _x((5, 7), 4).astype(np.float64)
    buf = ln.make_buffers(5)
    ln.forward(ln.backend.asarray(x), buf)
    dx = np.asarray(ln.backward(ln.backend.asarray(w.astype(np.float32)), buf, True))
    np.testing.assert_allclose(dx, numeric_grad(lambda v: float((w * ref(v)).sum()), x64.copy()), rtol=1e-3, atol=1e-4)
    dg = numeric_grad(lambda g: float((w * ref(x64, g=g)).sum()), gamma.astype(np.float64))
    np.testing.assert_allclose(np.asarray(ln.grads[0]), dg, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ln.grads[1]), w.sum(0), rtol=1e-5, atol=1e-5)
    keras.utils.set_random_seed(0)
    m = keras.Sequential([L.Dense(6, input_shape=(4,)), L.LayerNormalization(), L.Dense(1)])
    m.compile("adam", "mse")
    h = m.fit(_x((30, 4)), _x((30, 1)), epochs=2, verbose=0)
    assert np.isfinite(h.history["loss"]).all()
    if host_backend_name == "cpu":  # a fused step on cpu (tests/model/test_fused_layernorm.py)
        assert m.fused_reason is None


@pytest.mark.skipif(not HAS_CPU, reason="cpu backend not built")
@pytest.mark.parametrize("act", ["gelu", "elu", "swish"])
def test_fused_activation_steps_equal_per_op(act):
    """Activation steps after a Dense, including those whose backward needs the input."""
    fusednn.set_backend("cpu")
    try:
        out = []
        for fused in (True, False):
            keras.utils.set_random_seed(0)
            m = keras.Sequential([L.Dense(8, input_shape=(5,)), L.BatchNormalization(), L.Activation(act),
                                  L.Dropout(0.2, seed=1), L.Dense(1)])
            m.compile("adam", "mse", fused=fused)
            if fused:
                assert m.fused_reason is None
            keras.utils.set_random_seed(3)
            h = m.fit(_x((20, 5)), _x((20, 1)), epochs=2, batch_size=8, verbose=0)
            out.append((h.history["loss"], m.get_weights()))
        assert out[0][0] == out[1][0]
        for a, b in zip(out[0][1], out[1][1]):
            np.testing.assert_array_equal(a, b)
    finally:
        fusednn.set_backend(_PREVIOUS)
