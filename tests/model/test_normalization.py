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


def test_keras_axis_invert_and_given_statistics(host_backend_name):
    x, _ = data(5)
    be = fusednn.get_backend()
    # axis=None: one mean and variance over every value
    one = keras.layers.Normalization(axis=None).adapt(x)
    assert one.mean.shape == () and one.mean == pytest.approx(x.mean())
    np.testing.assert_allclose(be.to_numpy(one(x)), (x - x.mean()) / x.std(), rtol=1e-5, atol=1e-5)
    # invert=True maps normalised values back: mean + x * max(sqrt(var), 1e-7)
    inv = keras.layers.Normalization(invert=True).adapt(x)
    fwd = keras.layers.Normalization().adapt(x)
    z = be.to_numpy(fwd(x))
    np.testing.assert_allclose(be.to_numpy(inv(z)), x, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(be.to_numpy(inv(np.ones((1, 5))))[0], x.mean(0) + np.maximum(x.std(0), 1e-7),
                               rtol=1e-6)
    # mean/variance given: a scalar broadcasts to every feature, a vector per feature
    s = keras.layers.Normalization(mean=2.0, variance=4.0)
    np.testing.assert_allclose(be.to_numpy(s(np.array([[2.0, 4.0, 0.0]]))), [[0.0, 1.0, -1.0]])
    v = keras.layers.Normalization(axis=1, mean=[1.0, 2.0], variance=[1.0, 0.25])
    np.testing.assert_allclose(be.to_numpy(v(np.array([[2.0, 2.5]]))), [[1.0, 1.0]])
    # Keras' example: invert=True after adapt
    k = keras.layers.Normalization(axis=-1, invert=True)
    k.adapt(np.array([[0.0, 7.0, 4.0], [2.0, 9.0, 6.0], [0.0, 7.0, 4.0], [2.0, 9.0, 6.0]]))
    np.testing.assert_allclose(be.to_numpy(k(np.array([[1.0, 2.0, 3.0]]))), [[2.0, 10.0, 8.0]])


def test_adapt_batches_equals_adapt_all():
    x, _ = data(6)
    whole = keras.layers.Normalization().adapt(x)
    parts = keras.layers.Normalization().adapt([x[:7], x[7:50], x[50:]])
    gen = keras.layers.Normalization().adapt((x[i:i + 16], None) for i in range(0, len(x), 16))

    class Seq:  # a keras.utils.PyDataset-like object of (x, y) batches
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[i * 30:(i + 1) * 30], np.zeros(len(x[i * 30:(i + 1) * 30]))

    pyd = keras.layers.Normalization().adapt(Seq())
    for layer in (parts, pyd):
        np.testing.assert_allclose(layer.mean, x.mean(0), rtol=1e-12)
        np.testing.assert_allclose(layer.variance, x.var(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gen.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(gen.variance, whole.variance, rtol=1e-10, atol=1e-12)
    scalar = keras.layers.Normalization(axis=None).adapt([x[:60], x[60:]])
    assert scalar.mean == pytest.approx(x.mean()) and scalar.variance == pytest.approx(x.var())
    # re-adapting a built layer updates it (as Keras allows)
    whole.build(5)
    whole.adapt(x * 2)
    np.testing.assert_allclose(fusednn.get_backend().to_numpy(whole(x * 2)), (x - x.mean(0)) / np.maximum(
        x.std(0), 5e-8), rtol=1e-5, atol=1e-5)


def test_bad_axis_and_shapes():
    with pytest.raises(ValueError, match="axis"):
        keras.layers.Normalization(axis=0)
    with pytest.raises(ValueError, match="axis"):
        keras.layers.Normalization(axis=2)
    with pytest.raises(ValueError, match="more axes"):
        keras.layers.Normalization(axis=None, mean=[1.0, 2.0], variance=[1.0, 1.0])
    with pytest.raises(ValueError, match="same shape"):
        keras.layers.Normalization(mean=[1.0, 2.0], variance=[1.0])
    with pytest.raises(ValueError, match="2-D batches"):
        keras.layers.Normalization().adapt(np.ones((4, 2, 2)))
    with pytest.raises(ValueError, match="features"):
        keras.layers.Normalization().adapt([np.ones((4, 2)), np.ones((4, 3))])
    with pytest.raises(ValueError, match="at least one"):
        keras.layers.Normalization().adapt([])
    layer = keras.layers.Normalization(mean=[0.0, 1.0], variance=[1.0, 1.0])
    with pytest.raises(ValueError, match="statistics for 2 features"):
        keras.Sequential([keras.Input(shape=(3,)), layer])


def test_config_round_trip_and_save(tmp_path):
    x, y = data(7)
    layer = keras.layers.Normalization(axis=None, invert=True).adapt(x)
    cfg = layer.get_config()
    assert cfg["axis"] == [] and cfg["invert"] is True and cfg["mean"] == pytest.approx(x.mean())
    back = keras.layers.Normalization.from_config(cfg)
    assert back.axis == () and back.invert and back.variance == pytest.approx(x.var())
    m = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Normalization(axis=-1).adapt(x),
                          keras.layers.Dense(1)])
    m.compile("adam", "mse")
    m.fit(x, y, epochs=1, verbose=0)
    m.save(str(tmp_path / "m.npz"))
    back = fusednn.load_model(str(tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    assert back.layers[0].axis == (-1,)
