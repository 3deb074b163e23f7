"""The functional API and subclassed models (fusednn.Model): Concatenate/Add against
NumPy and finite differences, chain models == Sequential bit for bit (fused and
per-op), graph models' gradients against a float64 reference, multi-output losses
against a hand computation, save/load round trips, get_layer and errors."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras

L = keras.layers


def _w(model):
    return [w.copy() for w in model.get_weights()]


def test_merge_layers_forward_and_finite_differences(backend_name):
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(5, d)).astype(np.float32) for d in (3, 1, 3))
    be = fusednn.get_backend()
    cat = L.Concatenate()
    y = be.to_numpy(cat([a, b, c]))
    np.testing.assert_array_equal(y, np.concatenate([a, b, c], axis=1))
    add = L.Add()
    np.testing.assert_allclose(be.to_numpy(add([a, c])), a + c, rtol=1e-6)
    np.testing.assert_allclose(be.to_numpy(L.Subtract()([a, c])), a - c, rtol=1e-6)
    np.testing.assert_allclose(be.to_numpy(L.Multiply()([a, c, a])), a * c * a, rtol=1e-6)
    np.testing.assert_allclose(be.to_numpy(L.Average()([a, c])), (a + c) / 2, rtol=1e-6)
    # gradients: loss = sum(r * merge(x)) for a random r; d loss / d x_i by central differences
    r = rng.normal(size=(5, 7))
    cases = ((L.Concatenate(axis=1), [a, b, c]), (L.Add(), [a, c, a * 2]), (L.Subtract(), [a, c]),
             (L.Multiply(), [a, c, c + 1]), (L.Average(), [a, c, a - c]))
    for layer, xs in cases:
        layer([be.asarray(x) for x in xs])  # build
        buf = layer.make_buffers(5)
        out = layer.forward([be.asarray(x) for x in xs], buf)
        rr = r[:, :out.shape[1]]
        grads = layer.backward(be.asarray(rr.astype(np.float32)), buf, True)

        def f(vals):
            out = layer.forward([be.asarray(v.astype(np.float32)) for v in vals], layer.make_buffers(5))
            return float((rr * be.to_numpy(out)).sum())
        for i, x in enumerate(xs):
            num = np.zeros_like(x, dtype=np.float64)
            for idx in np.ndindex(*x.shape):
                h = 1e-2
                up = [v.astype(np.float64).copy() for v in xs]
                dn = [v.astype(np.float64).copy() for v in xs]
                up[i][idx] += h
                dn[i][idx] -= h
                num[idx] = (f(up) - f(dn)) / (2 * h)
            np.testing.assert_allclose(be.to_numpy(grads[i]), num, rtol=1e-3, atol=1e-3)


def test_merge_layer_errors():
    with pytest.raises(ValueError, match="axis"):
        L.Concatenate(axis=0)
    with pytest.raises(ValueError, match="equal shape"):
        L.Add()([keras.Input((3,)), keras.Input((4,))])
    with pytest.raises(ValueError, match="at least 2"):
        L.Concatenate()([keras.Input((3,))])
    with pytest.raises(ValueError, match="one input tensor"):
        L.Dense(2)([keras.Input((3,)), keras.Input((3,))])
    with pytest.raises(TypeError, match="arithmetic"):
        keras.Input((3,)) * 2


def _chain_pair(seed, fused):
    fusednn.set_random_seed(seed)
    inp = keras.Input(shape=(6,), name="x")
    h = L.Dense(16, activation="relu")(inp)
    h = L.Dropout(0.2, seed=3)(h)
    out = L.Dense(3, activation="softmax")(h)
    functional = keras.Model(inp, out)
    fusednn.set_random_seed(seed)
    seq = keras.Sequential([keras.Input(shape=(6,)), L.Dense(16, activation="relu"), L.Dropout(0.2, seed=3),
                            L.Dense(3, activation="softmax")])
    for m in (functional, seq):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], fused=fused)
    return functional, seq


@pytest.mark.parametrize("fused", ["auto", False])
def test_chain_model_equals_sequential_bit_for_bit(host_backend_name, fused):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 6)).astype(np.float32)
    y = rng.integers(0, 3, 90)
    functional, seq = _chain_pair(7, fused)
    for a, b in zip(functional.get_weights(), seq.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert functional.fused_reason == seq.fused_reason
    if host_backend_name == "cpu" and fused == "auto":
        assert functional.fused_reason is None  # the chain runs in the fused native trainer
    fusednn.set_random_seed(5)
    h1 = functional.fit(x, y, epochs=3, batch_size=16, verbose=0).history
    fusednn.set_random_seed(5)
    h2 = seq.fit(x, y, epochs=3, batch_size=16, verbose=0).history
    assert h1 == h2
    for a, b in zip(functional.get_weights(), seq.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(functional.predict(x, verbose=0), seq.predict(x, verbose=0))
    np.testing.assert_array_equal(np.asarray(functional(x, training=False)), functional.predict(x, verbose=0))


def _np_wide_deep(ws, x, y):
    """float64 reference forward of the wide & deep graph below and its MSE."""
    k1, b1, k2, b2, k3, b3, k4, b4 = ws
    h1 = np.maximum(x @ k1 + b1, 0)
    h2 = np.tanh(h1 @ k2 + b2)
    s = h2 + (x @ k3 + b3)                      # Add
    out = np.concatenate([x, s], axis=1) @ k4 + b4  # Concatenate
    return ((out - y) ** 2).mean()


def test_graph_model_sgd_step_matches_float64_gradient(host_backend_name):
    fusednn.set_random_seed(0)
    inp = keras.Input(shape=(4,))
    h1 = L.Dense(5, activation="relu")(inp)
    h2 = L.Dense(3, activation="tanh")(h1)
    skip = L.Dense(3)(inp)
    s = L.add([h2, skip])
    out = L.Dense(2)(L.concatenate([inp, s]))
    model = keras.Model(inp, out)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Dense", "Dense", "Dense", "Add",
                                                              "Concatenate", "Dense"]
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    if host_backend_name == "cpu":  # a merge of a merge: merge blocks of the fused trainer
        assert model.fused_reason is None
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = rng.normal(size=(12, 2)).astype(np.float32)
    # Keras' get_weights order follows model.layers: dense, dense_1, dense_2 (skip), dense_3
    w0 = [w.astype(np.float64) for w in model.get_weights()]
    order = [0, 1, 2, 3, 4, 5, 6, 7]
    ref = [w0[i] for i in order]
    grads = []
    for i, w in enumerate(ref):
        g = np.zeros_like(w)
        for idx in np.ndindex(*w.shape):
            up = [v.copy() for v in ref]
            dn = [v.copy() for v in ref]
            up[i][idx] += 1e-6
            dn[i][idx] -= 1e-6
            g[idx] = (_np_wide_deep(up, x, y) - _np_wide_deep(dn, x, y)) / 2e-6
        grads.append(g)
    model.fit(x, y, batch_size=12, epochs=1, shuffle=False, verbose=0)
    for w, w_before, g in zip(model.get_weights(), w0, grads):
        np.testing.assert_allclose(w, w_before - 0.1 * g, rtol=1e-4, atol=1e-5)


def _two_in_two_out():
    fusednn.set_random_seed(3)
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(2,), name="b")
    h = L.Dense(4, activation="tanh", name="h")(a)
    out_a = L.Dense(1, name="out_a")(L.concatenate([h, b]))
    out_b = L.Dense(3, activation="softmax", name="out_b")(L.add([h, L.Dense(4, name="g")(b)]))
    return keras.Model(inputs={"a": a, "b": b}, outputs={"out_a": out_a, "out_b": out_b}, name="two")


def test_multi_output_losses_match_hand_computation(host_backend_name):
    model = _two_in_two_out()
    model.compile(optimizer="adam", loss={"out_a": "mse", "out_b": "sparse_categorical_crossentropy"},
                  loss_weights={"out_a": 2.0, "out_b": 0.5}, metrics={"out_b": ["accuracy"]})
    rng = np.random.default_rng(4)
    xa, xb = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    ya, yb = rng.normal(size=40), rng.integers(0, 3, 40)
    hist = model.fit({"a": xa, "b": xb}, {"out_a": ya, "out_b": yb}, epochs=2, batch_size=8, verbose=0,
                     validation_data=({"a": xa, "b": xb}, {"out_a": ya, "out_b": yb}))
    assert set(hist.history) == {"loss", "out_a_loss", "out_b_loss", "out_b_accuracy", "val_loss",
                                 "val_out_a_loss", "val_out_b_loss", "val_out_b_accuracy"}
    pred = model.predict({"a": xa, "b": xb}, verbose=0)
    assert set(pred) == {"out_a", "out_b"} and pred["out_a"].shape == (40, 1) and pred["out_b"].shape == (40, 3)
    pa, pb = pred["out_a"].astype(np.float64), pred["out_b"].astype(np.float64)
    mse = ((pa[:, 0] - ya) ** 2).mean()
    ce = -np.log(np.clip(pb[np.arange(40), yb], 1e-7, 1)).mean()
    acc = (pb.argmax(1) == yb).mean()
    loss, la, lb, a = model.evaluate({"a": xa, "b": xb}, {"out_a": ya, "out_b": yb}, batch_size=40, verbose=0)
    np.testing.assert_allclose([la, lb, a], [mse, ce, acc], rtol=1e-4)
    np.testing.assert_allclose(loss, 2.0 * mse + 0.5 * ce, rtol=1e-4)
    # lists in input/output order work the same
    assert np.allclose(model.evaluate([xa, xb], [ya, yb], batch_size=40, verbose=0), [loss, la, lb, a])


def test_save_load_round_trips(tmp_path, host_backend_name):
    model = _two_in_two_out()
    model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[1.0, 0.3],
                  metrics=[[], ["accuracy"]])
    rng = np.random.default_rng(5)
    x = {"a": rng.normal(size=(16, 3)), "b": rng.normal(size=(16, 2))}
    y = {"out_a": rng.normal(size=16), "out_b": rng.integers(0, 3, 16)}
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    again = keras.models.load_model(path)
    assert isinstance(again, keras.Model) and again.name == "two"
    for p, q in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(p, q)
    p1, p2 = model.predict(x, verbose=0), again.predict(x, verbose=0)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert model.evaluate(x, y, verbose=0) == again.evaluate(x, y, verbose=0)
    # the config is Keras' functional layout
    cfg = model.get_config()
    assert [s["class_name"] for s in cfg["layers"]][:2] == ["InputLayer", "InputLayer"]
    assert cfg["input_layers"] == {"a": ["a", 0, 0], "b": ["b", 0, 0]}
    assert cfg["output_layers"] == {"out_a": ["out_a", 0, 0], "out_b": ["out_b", 0, 0]}
    # weights only
    model.save_weights(tmp_path / "w.npz")
    other = _two_in_two_out()
    other.load_weights(tmp_path / "w.npz")
    for p, q in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(p, q)


def test_subclassed_model_traces_call_and_trains_like_sequential(host_backend_name):
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = L.Dense(8, activation="relu")
            self.drop = L.Dropout(0.25, seed=1)
            self.out = L.Dense(2)

        def call(self, inputs, training=None):
            return self.out(self.drop(self.hidden(inputs), training=training))

    fusednn.set_random_seed(11)
    net = Net()
    assert net.name.startswith("net") and [layer.name for layer in net.layers] == [net.hidden.name, net.drop.name,
                                                                                 net.out.name]
    fusednn.set_random_seed(11)
    seq = keras.Sequential([L.Dense(8, activation="relu"), L.Dropout(0.25, seed=1), L.Dense(2)])
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(50, 5)).astype(np.float32), rng.normal(size=(50, 2)).astype(np.float32)
    for m in (net, seq):
        m.compile(optimizer="sgd", loss="mse")
    fusednn.set_random_seed(2)
    h1 = net.fit(x, y, epochs=2, batch_size=10, verbose=0).history
    fusednn.set_random_seed(2)
    h2 = seq.fit(x, y, epochs=2, batch_size=10, verbose=0).history
    assert h1 == h2
    assert net.get_layer(index=0) is net.hidden
    if host_backend_name == "cpu":
        assert net.fused_reason is None


def test_subclassed_model_with_arithmetic_is_refused_clearly():
    class Bad(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(3)

        def call(self, inputs, training=None):
            return self.d(inputs) * 2.0

    with pytest.raises(TypeError, match=r"cannot trace Bad.call\(\).*arithmetic"):
        Bad().predict(np.ones((2, 4)), verbose=0)


def test_model_structure_api():
    inp = keras.Input(shape=(4,), name="inp")
    h = L.Dense(3, name="h")(inp)
    model = keras.models.Model(inputs=inp, outputs=L.Dense(1, name="o")(h), name="m")
    assert model.get_layer("h") is model.layers[1] and model.get_layer(index=-1).name == "o"
    assert type(model.get_layer(index=0)).__name__ == "InputLayer" and model.layers[0].name == "inp"  # as Keras
    with pytest.raises(ValueError, match="No such layer: nope"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="only a layer name or a layer index"):
        model.get_layer("h", 0)
    with pytest.raises(ValueError, match="either a layer name or layer index"):
        model.get_layer()
    assert [t.shape for t in model.inputs] == [(None, 4)] and [t.shape for t in model.outputs] == [(None, 1)]
    with pytest.raises(AttributeError, match="Sequential"):
        model.add(L.Dense(2))
    with pytest.raises(ValueError, match="Graph disconnected"):
        keras.Model(keras.Input((2,)), h)
    with pytest.raises(NotImplementedError, match="more than once"):
        d = L.Dense(4)
        x = keras.Input((4,))
        keras.Model(x, d(d(x)))
    seq = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    assert seq.inputs[0].shape == (None, 3) and seq.outputs[0].shape == (None, 2)
    seq.add(L.Dense(1))
    assert seq.pop().units == 1 and seq.output_shape == (None, 2)


def test_shaped_input_with_flatten_chain():
    inp = keras.Input(shape=(2, 3))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(inp)))
    x = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               x.reshape(4, 6) @ model.get_weights()[0] + model.get_weights()[1], rtol=1e-5)
    with pytest.raises(ValueError, match="Flatten"):
        L.Dense(2)(keras.Input(shape=(2, 3)))


def test_model_called_inside_another_model(host_backend_name):
    fusednn.set_random_seed(8)
    base = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu", name="b1"), L.Dense(4, name="b2")])
    base.trainable = False
    inp = keras.Input((6,))
    model = keras.Model(inp, L.Dense(2, name="top")(base(inp)))
    assert [layer.name for layer in model.layers[1:]] == ["b1", "b2", "top"]
    assert all(a is b for a, b in zip(model.layers[1:], base.layers))  # the same layers, shared weights
    model.compile(optimizer="adam", loss="mse")
    if host_backend_name == "cpu":
        assert model.fused_reason is None
    frozen = base.get_weights()
    rng = np.random.default_rng(9)
    x = rng.normal(size=(30, 6)).astype(np.float32)
    model.fit(x, rng.normal(size=(30, 2)), epochs=2, verbose=0)
    for a, b in zip(frozen, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               base.predict(x, verbose=0) @ model.get_layer("top").get_weights()[0]
                               + model.get_layer("top").get_weights()[1], rtol=1e-5, atol=1e-6)
    # a functional model replayed on new inputs; training=False with an active Dropout is refused
    a = keras.Input((3,))
    inner = keras.Model(a, L.concatenate([a, L.Dense(2)(a)]))
    b = keras.Input((3,))
    outer = keras.Model(b, L.Dense(1)(inner(b)))
    assert len(outer.layers) == 4 and outer.count_params() == inner.count_params() + 6
    drop = keras.Sequential([keras.Input((3,)), L.Dropout(0.5)])
    with pytest.raises(NotImplementedError, match="training=False"):
        drop(keras.Input((3,)), training=False)


def _graph_model(fused):
    fusednn.set_random_seed(0)
    inp = keras.Input(shape=(5,))
    h1 = L.Dropout(0.2, seed=1)(L.Dense(12, activation="relu")(inp))
    h2 = L.Dense(12, activation="gelu")(h1)
    skip = L.Dense(12)(h1)
    h3 = L.BatchNormalization()(L.Dense(4, activation="tanh")(L.Add()([h2, skip])))
    out = L.Dense(3, activation="softmax")(L.concatenate([inp, h3, h1]))
    model = keras.Model(inp, out)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(1e-2, clipnorm=1.0),
                  metrics=["accuracy"], fused=fused)
    return model


def test_graph_with_merges_fused_equals_per_op(host_backend_name):
    """Concatenate/Add of Dense outputs (with a branch read three times, Dropout and
    BatchNormalization steps) in the fused trainer's graph blocks: the same history and
    weights as the per-op path, bit for bit."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5)).astype(np.float32)
    y = (x.sum(1) > 0).astype(int) + (x[:, 0] > 1)
    runs = []
    for fused in ("auto", False):
        model = _graph_model(fused)
        if host_backend_name == "cpu" and fused == "auto":
            assert model.fused_reason is None
        fusednn.set_random_seed(3)
        hist = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0).history
        runs.append((hist, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_residual_graph_fused_equals_per_op(host_backend_name):
    """Residual blocks (Add of a shortcut and Dense/BatchNormalization/Dense, then relu, read
    by the next Dense and the next Add): merge blocks in the fused trainer, bit for bit."""
    def build(fused):
        fusednn.set_random_seed(0)
        inp = keras.Input((7,))
        h = L.Dense(8, activation="relu")(inp)
        for _ in range(2):
            r = L.Dense(8)(L.BatchNormalization()(L.Dense(8, activation="relu")(h)))
            h = L.Activation("relu")(L.Add()([h, r]))
        model = keras.Model(inp, L.Dense(3, activation="softmax")(h))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], fused=fused)
        return model

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(70, 7)).astype(np.float32), rng.integers(0, 3, 70)
    runs = []
    for fused in ("auto", False):
        model = build(fused)
        if host_backend_name == "cpu" and fused == "auto":
            assert model.fused_reason is None
        fusednn.set_random_seed(1)
        runs.append((model.fit(x, y, epochs=2, batch_size=16, verbose=0).history, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_graph_fused_reasons():
    a = keras.Input((4,))
    model = keras.Model(a, L.Dense(1)(L.concatenate([L.Dropout(0.5)(a), L.Dense(3)(a)])))
    model.compile(optimizer="sgd", loss="mse")
    if fusednn.get_backend().name == "cpu":  # a step on the model input itself: an identity block
        assert model.fused_reason is None
    norm = keras.Model(a, L.Dense(1)(L.Normalization(mean=0.0, variance=1.0)(L.Dense(3)(a))))
    norm.compile(optimizer="sgd", loss="mse")
    if fusednn.get_backend().name == "cpu":  # a Normalization inside the graph is not
        assert "(Normalization) is not fused" in norm.fused_reason
    b = keras.Input((4,))
    two = keras.Model(b, [L.Dense(1)(b), L.Dense(2)(b)])
    two.compile(optimizer="sgd", loss="mse")
    assert "2 outputs" in two.fused_reason or two.fused_reason.startswith("backend")


def test_subclassed_model_save_load(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.a = L.Dense(4, activation="relu")
            self.b = L.Dense(2)

        def call(self, inputs, training=None):
            return self.b(self.a(inputs))

    net = Net()
    net.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    net.fit(x, x[:, :2], epochs=1, verbose=0)
    assert [type(layer).__name__ for layer in net.layers] == ["Dense", "Dense"]  # no InputLayer, as Keras
    net.save(tmp_path / "n.npz")
    again = keras.models.load_model(tmp_path / "n.npz")
    assert [layer.name for layer in again.layers] == [layer.name for layer in net.layers]
    np.testing.assert_array_equal(again.predict(x, verbose=0), net.predict(x, verbose=0))


def test_graph_model_onnx_export(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
    fusednn.set_random_seed(4)
    inp = keras.Input((5,))
    h = L.Dense(6, activation="tanh")(inp)
    g = L.Dense(6)(inp)
    m = L.concatenate([L.add([h, g]), L.subtract([h, g]), L.multiply([h, g]), L.average([h, g]), inp])
    model = keras.Model(inp, L.Dense(2, activation="sigmoid")(m))
    path = tmp_path / "m.onnx"
    model.export_onnx(path)
    x = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    got = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
