"""layer.trainable / model.trainable: frozen weights stay unchanged in the fused trainer
and on the per-op path (both giving the same numbers), BatchNormalization frozen runs
in inference mode, summary/trainable_weights counts, and the change taking effect at
compile as in Keras. Counts are compared with real Keras 3 where it is installed."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fusednn
from fusednn import keras

L = keras.layers


def _data(n=64, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, k, n)


def _model(seed=1):
    fusednn.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)),
                             L.Dense(8, activation="relu", name="f1", kernel_regularizer="l2"),
                             L.Dense(8, activation="tanh", name="f2"),
                             L.Dense(3, activation="softmax", name="head")])


@pytest.mark.parametrize("fused", ["auto", False])
def test_frozen_layer_unchanged_and_fused_equals_per_op(host_backend_name, fused):
    x, y = _data()
    runs = {}
    for mode in (fused, False):
        model = _model()
        model.get_layer("f1").trainable = False
        model.compile(optimizer=keras.optimizers.Adam(0.01, clipnorm=1.0), loss="sparse_categorical_crossentropy",
                      fused=mode)
        if host_backend_name == "cpu" and mode == "auto":
            assert model.fused_reason is None  # a frozen Dense runs in the fused trainer
        before = model.get_weights()
        fusednn.set_random_seed(3)
        hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0).history
        after = model.get_weights()
        np.testing.assert_array_equal(before[0], after[0])
        np.testing.assert_array_equal(before[1], after[1])
        assert all(not np.array_equal(b, a) for b, a in zip(before[2:], after[2:]))
        assert len(model.optimizer.param_states()) == 4  # state for the 4 trained arrays only
        runs[mode] = (hist, after)
    (h1, w1), (h2, w2) = runs[fused], runs[False]
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_frozen_regularizer_is_not_in_the_loss():
    # Keras counts the regularization losses of trainable weights only
    x, y = _data()
    model = _model()
    model.get_layer("f1").trainable = False
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    frozen = model.evaluate(x, y, verbose=0)
    model.get_layer("f1").trainable = True
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    trained = model.evaluate(x, y, verbose=0)
    k = model.get_layer("f1").get_weights()[0].astype(np.float64)
    np.testing.assert_allclose(trained - frozen, 0.01 * (k ** 2).sum(), rtol=1e-4)


def test_trainable_takes_effect_at_compile():
    x, y = _data()
    model = _model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.get_layer("f1").trainable = False  # not recompiled: still trained, as Keras documents
    before = model.get_layer("f1").get_weights()[0]
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(before, model.get_layer("f1").get_weights()[0])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = model.get_layer("f1").get_weights()[0]
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(before, model.get_layer("f1").get_weights()[0])


def test_frozen_batchnorm_runs_in_inference_mode(host_backend_name):
    x, y = _data()
    fusednn.set_random_seed(2)
    model = keras.Sequential([keras.Input((6,)), L.Dense(8), L.BatchNormalization(name="bn"),
                              L.Activation("relu"), L.Dense(3, activation="softmax")])
    bn = model.get_layer("bn")
    bn.set_weights([np.full(8, 1.5), np.full(8, 0.1), np.full(8, 0.2), np.full(8, 2.0)])
    bn.trainable = False
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    if host_backend_name == "cpu":
        assert model.fused_reason is None  # an inference-mode step in the fused trainer
    before = bn.get_weights()
    k0 = model.layers[0].get_weights()[0]
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)  # gamma, beta and the moving statistics
    assert not np.array_equal(k0, model.layers[0].get_weights()[0])  # the gradient flows through
    # the gradient through the frozen layer is the affine map's: one SGD step on a single
    # batch against the float64 chain rule
    fusednn.set_random_seed(4)
    m = keras.Sequential([keras.Input((6,)), L.Dense(4, name="d"), L.BatchNormalization(name="bn")])
    m.get_layer("bn").set_weights([np.full(4, 1.5), np.full(4, 0.1), np.full(4, 0.2), np.full(4, 2.0)])
    m.get_layer("bn").trainable = False
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    t = np.ones((64, 4), np.float32)
    k, b = (w.astype(np.float64) for w in m.get_layer("d").get_weights())
    s = 1.5 / np.sqrt(2.0 + 1e-3)
    out = ((x @ k + b) - 0.2) * s + 0.1
    g = 2 * (out - t) / out.size * s
    m.fit(x, t, batch_size=64, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(m.get_layer("d").get_weights()[0], k - 0.1 * x.T.astype(np.float64) @ g, rtol=1e-4,
                               atol=1e-6)


def test_model_trainable_and_counts():
    model = _model()
    assert len(model.trainable_weights) == 6 and model.non_trainable_weights == []
    model.get_layer("f2").trainable = False
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 2
    lines = []
    model.summary(print_fn=lines.append)
    assert "Trainable params: 83" in lines and "Non-trainable params: 72" in lines
    model.trainable = False
    assert model.trainable_weights == [] and all(not layer.trainable for layer in model.layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = _data()
    before = model.get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_trainable_is_saved(tmp_path):
    model = _model()
    model.get_layer("f2").trainable = False
    model.save(tmp_path / "m.npz")
    again = keras.models.load_model(tmp_path / "m.npz")
    assert [layer.trainable for layer in again.layers] == [True, False, True]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_counts_match_keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    k3 = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")
    if k3.backend.backend() != "torch":  # pragma: no cover
        pytest.skip(f"Keras runs on {k3.backend.backend()!r}, this test needs the torch backend")

    def build(k):
        a = k.Input(shape=(5,), name="a")
        b = k.Input(shape=(3,), name="b")
        h = k.layers.Dense(7, activation="relu", name="h")(a)
        h = k.layers.BatchNormalization(name="bn")(h)
        g = k.layers.Dense(7, name="g")(b)
        s = k.layers.Add(name="s")([h, g])
        c = k.layers.Concatenate(name="c")([s, b])
        o1 = k.layers.Dense(1, name="o1")(c)
        o2 = k.layers.Dense(4, activation="softmax", name="o2")(s)
        m = k.Model([a, b], [o1, o2])
        m.get_layer("h").trainable = False
        return m

    ours, theirs = build(keras), build(k3)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert ours.count_params() == theirs.count_params()
    assert sum(int(np.prod(w.shape)) for w in ours.trainable_weights) == \
        sum(int(np.prod(w.shape)) for w in theirs.trainable_weights)
    assert sum(int(np.prod(w.shape)) for w in ours.non_trainable_weights) == \
        sum(int(np.prod(w.shape)) for w in theirs.non_trainable_weights)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    # real Keras rebuilds our functional config (the layout kinterop's .keras files use)
    again = k3.Model.from_config(ours.get_config())
    assert again.count_params() == ours.count_params()
    assert [layer.name for layer in again.layers] == [layer.name for layer in theirs.layers]


@pytest.mark.parametrize("fused", ["auto", False])
def test_frozen_batchnorm_fused_equals_per_op(host_backend_name, fused):
    x, y = _data()
    runs = []
    for mode in (fused, False):
        fusednn.set_random_seed(5)
        model = keras.Sequential([keras.Input((6,)), L.Dense(8), L.BatchNormalization(name="bn"),
                                  L.Activation("relu"), L.Dense(8), L.BatchNormalization(), L.Dense(3, activation="softmax")])
        model.get_layer("bn").set_weights([np.full(8, 1.5), np.full(8, 0.1), np.full(8, 0.2), np.full(8, 2.0)])
        model.get_layer("bn").trainable = False
        model.compile(optimizer=keras.optimizers.Adam(0.01, global_clipnorm=1.0), loss="sparse_categorical_crossentropy",
                      fused=mode)
        fusednn.set_random_seed(6)
        hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
        runs.append((hist, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
