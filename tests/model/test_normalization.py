"""The Normalization layer: statistics from data or a fitted scaler, its forward and
backward on every backend, the fused path with a leading Normalization, and its
statistics surviving save/load."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras, preprocessing


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((120, 5)) * [1, 10, 0.1, 5, 3] + [0, 100, -3, 7, 1]
    x[:, 4] = 2.0  # a constant feature: Keras divides by max(sqrt(0), 1e-7)
    return x, x @ rng.standard_normal((5, 1)) * 0.01


def test_adapt_and_forward_match_standardisation(backend_name):
    x, _ = data()
    layer = keras.layers.Normalization()
    layer.adapt(x)
    be = fusednn.get_backend()
    got = be.to_numpy(layer(x))
    std = x.std(axis=0)
    ref = (x - x.mean(axis=0)) / np.where(std > 0, std, 1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [lambda: preprocessing.StandardScaler(),
                                  lambda: preprocessing.StandardScaler(with_mean=False),
                                  lambda: preprocessing.MinMaxScaler(feature_range=(-1, 2))])
def test_from_scaler_equals_transform(host_backend_name, make):
    x, _ = data(1)
    scaler = make().fit(x)
    layer = keras.layers.Normalization.from_scaler(scaler)
    np.testing.assert_allclose(layer(x), scaler.transform(x), rtol=1e-5, atol=1e-5)


def test_backward_scales_the_gradient(host_backend_name):
    x, _ = data(2)
    layer = keras.layers.Normalization().adapt(x)
    be = fusednn.get_backend()
    layer.build(5)
    buf = layer.make_buffers(3)
    layer.forward(be.asarray(x[:3]), buf)
    dy = np.ones((3, 5), np.float32)
    dx = be.to_numpy(layer.backward(be.asarray(dy), buf, True))
    std = x.std(axis=0)
    np.testing.assert_allclose(dx, np.broadcast_to(1 / np.maximum(std, 1e-7), (3, 5)), rtol=1e-6)


def test_bad_statistics():
    with pytest.raises(ValueError, match="both mean and variance"):
        keras.layers.Normalization(mean=[0.0])
    with pytest.raises(ValueError, match=">= 0"):
        keras.layers.Normalization(mean=[0.0], variance=[-1.0])
    with pytest.raises(RuntimeError, match="no statistics"):
        keras.Sequential([keras.layers.Normalization(input_shape=(3,)), keras.layers.Dense(1)])


def model_with_norm(x, fused="auto"):
    fusednn.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Normalization().adapt(x), keras.layers.Dense(8, activation="tanh"),
                          keras.layers.Dense(1)])
    m.compile("adam", "mse", fused=fused)
    return m


def test_fused_path_with_leading_normalization_equals_per_op():
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        x, y = data(3)
        a, b = model_with_norm(x, fused=True), model_with_norm(x, fused=False)
        fusednn.utils.set_random_seed(1)
        a.fit(x, y, epochs=3, batch_size=16, verbose=0)
        fusednn.utils.set_random_seed(1)
        b.fit(x, y, epochs=3, batch_size=16, verbose=0)
        assert a._fused is not None and b._fused is None
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    finally:
        fusednn.set_backend(prev)


def test_statistics_survive_save_and_load(host_backend_name, tmp_path):
    x, y = data(4)
    model = model_with_norm(x)
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fusednn.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
