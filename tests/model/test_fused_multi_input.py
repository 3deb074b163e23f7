"""Functional models with several inputs, and the Subtract/Multiply/Average merges, in the
fused CPU trainer's graph blocks (fusednn/trainer.h): the same history and weights as the
per-op path bit for bit, ``fused_reason`` None, a one-step SGD update against a float64
finite-difference gradient, what stays unfused says why, and (where Keras 3 is
installed) a two-input model trained by real Keras."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fusednn
from fusednn import keras

L = keras.layers


def _wide_deep():
    """Two inputs: the deep one through two Dense layers, the wide one straight into the
    Concatenate (a model input as a merge source)."""
    wide, deep = keras.Input((5,), name="wide"), keras.Input((3,), name="deep")
    h = L.Dense(8, activation="relu")(deep)
    h = L.Dense(7, activation="relu")(h)
    out = L.Dense(2)(L.concatenate([wide, h]))
    return [wide, deep], out, "mse"


def _two_towers_add():
    """Two towers added, BatchNormalization and Dropout after the merge."""
    a, b = keras.Input((4,)), keras.Input((6,))
    s = L.Add()([L.Dense(5, activation="tanh")(a), L.Dense(5, activation="relu")(b)])
    s = L.Dropout(0.25, seed=3)(L.BatchNormalization()(s))
    return [a, b], L.Dense(3, activation="softmax")(s), "sparse_categorical_crossentropy"


def _shared_input_three():
    """Three inputs (one of width 1): an input read by two Dense layers, an input added
    elementwise to a Dense output, a concatenation of two inputs."""
    a, b, c = keras.Input((3,)), keras.Input((1,)), keras.Input((4,))
    h1 = L.Dense(4, activation="gelu")(a)
    h2 = L.Dense(4)(a)
    m = L.Multiply()([h1, c])            # a Dense output times a model input
    s = L.Subtract()([h2, m])
    cat = L.concatenate([b, s, a])       # inputs at both ends of a concatenation
    return [a, b, c], L.Dense(1, activation="sigmoid")(cat), "binary_crossentropy"


def _merges_of_inputs():
    """Elementwise merges of model inputs themselves (odd widths), Average of three."""
    a, b = keras.Input((5,)), keras.Input((5,))
    d = L.Subtract()([a, b])
    p = L.Multiply()([a, b])
    h = L.Dense(5, activation="elu")(d)
    avg = L.Average()([h, p, d])
    return [a, b], L.Dense(2)(L.BatchNormalization()(avg)), "mse"


def _single_input_new_merges():
    """One input: Subtract, Multiply (three operands, one of them twice) and Average of
    Dense outputs of width 1 and odd widths, Dropout/BatchNormalization after the merges."""
    x = keras.Input((7,))
    u = L.Dense(3, activation="tanh")(x)
    v = L.Dense(3, activation="sigmoid")(x)
    m = L.Dropout(0.2, seed=5)(L.Multiply()([u, v, u]))
    s = L.BatchNormalization()(L.Subtract()([m, v]))
    one_a, one_b = L.Dense(1)(s), L.Dense(1, activation="relu")(x)
    avg = L.Average()([one_a, one_b])
    return x, L.Dense(2)(L.concatenate([avg, s])), "mse"


def _average_ensemble_output():
    """The model's output is a merge: the Average of three Dense branches (an ensemble)."""
    x = keras.Input((6,))
    branches = [L.Dense(2)(L.Dense(u, activation=act)(x)) for u, act in ((5, "relu"), (3, "tanh"), (1, "elu"))]
    return x, L.Average()(branches), "mse"


def _multiply_output_by_input():
    """The output is a Dense output times a model input (a gate given as data)."""
    a, gate = keras.Input((4,)), keras.Input((2,))
    return [a, gate], L.Multiply()([L.Dense(2)(L.Dense(3, activation="relu")(a)), gate]), "mse"


def _merge_then_steps_output():
    """The output is a merge followed by steps (the loss reads the last step's output)."""
    a, b = keras.Input((3,)), keras.Input((2,))
    s = L.Subtract()([L.Dense(2, activation="relu")(a), b])
    return [a, b], L.Activation("tanh")(L.BatchNormalization()(s)), "mse"


def _steps_on_inputs():
    """Steps on model inputs that are slices of the packed batch (identity blocks):
    BatchNormalization on one input, Dropout on the other, both concatenated."""
    a, b = keras.Input((4,)), keras.Input((3,))
    cat = L.concatenate([L.Dense(3, activation="relu")(a), L.BatchNormalization()(b), L.Dropout(0.3, seed=1)(a)])
    return [a, b], L.Dense(2)(cat), "mse"


TOPOLOGIES = {"steps_on_inputs": _steps_on_inputs, "merge_steps_output": _merge_then_steps_output, "wide_deep": _wide_deep, "two_towers_add": _two_towers_add, "shared_input": _shared_input_three,
              "merges_of_inputs": _merges_of_inputs, "single_input_merges": _single_input_new_merges,
              "average_output": _average_ensemble_output, "multiply_output": _multiply_output_by_input}


def _data(inputs, loss, n=53, seed=0):
    rng = np.random.default_rng(seed)
    ins = inputs if isinstance(inputs, list) else [inputs]
    xs = [rng.normal(size=(n, t.shape[1])).astype(np.float32) for t in ins]
    if loss == "mse":
        y = rng.normal(size=(n, 2)).astype(np.float32)
    elif loss == "binary_crossentropy":
        y = (xs[0][:, :1] > 0).astype(np.float32)
    else:
        y = rng.integers(0, 3, n)
    return (xs if isinstance(inputs, list) else xs[0]), y


def _train(topology, fused, optimizer="adam"):
    fusednn.set_random_seed(0)
    inputs, out, loss = TOPOLOGIES[topology]()
    model = keras.Model(inputs, out)
    model.compile(optimizer=optimizer, loss=loss, fused=fused)
    x, y = _data(inputs, loss)
    fusednn.set_random_seed(4)
    hist = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.2, verbose=0).history
    return model, hist


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_fused_equals_per_op_bit_for_bit(topology):
    previous = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        fused, hist_f = _train(topology, "auto")
        assert fused.fused_reason is None
        per_op, hist_p = _train(topology, False)
        assert per_op.fused_reason is not None  # (fused=False: the per-op path)
    finally:
        fusednn.set_backend(previous)
    assert hist_f == hist_p
    for a, b in zip(fused.get_weights(), per_op.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fused_with_clipping_and_frozen_layer_equals_per_op():
    """A frozen Dense inside a multi-input graph and global gradient clipping."""
    def run(fused):
        fusednn.set_random_seed(1)
        a, b = keras.Input((4,)), keras.Input((2,))
        frozen = L.Dense(3, name="frozen")
        h = L.Multiply()([frozen(a), L.Dense(3, activation="tanh")(b)])
        out = L.Dense(1)(L.Average()([h, L.Dense(3)(a)]))
        model = keras.Model([a, b], out)
        frozen.trainable = False
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, global_clipnorm=0.5), loss="mse",
                      fused=fused)
        if fused == "auto":
            assert model.fused_reason is None
        rng = np.random.default_rng(3)
        x = {model.input_names[0]: rng.normal(size=(40, 4)).astype(np.float32),
             model.input_names[1]: rng.normal(size=(40, 2)).astype(np.float32)}
        y = rng.normal(size=(40, 1)).astype(np.float32)
        fusednn.set_random_seed(2)
        w0 = model.get_layer("frozen").get_weights()
        hist = model.fit(x, y, epochs=2, batch_size=7, verbose=0).history
        for u, v in zip(w0, model.get_layer("frozen").get_weights()):
            np.testing.assert_array_equal(u, v)
        return hist, model.get_weights()

    previous = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        (hf, wf), (hp, wp) = run("auto"), run(False)
    finally:
        fusednn.set_backend(previous)
    assert hf == hp
    for a, b in zip(wf, wp):
        np.testing.assert_array_equal(a, b)


def _np_forward(ws, a, b, y):
    """float64 reference of the model in test_sgd_step_matches_float64_gradient: its MSE."""
    k1, b1, k2, b2, k3, b3, k4, b4 = ws
    u = np.tanh(a @ k1 + b1)
    v = b @ k2 + b2
    w = a @ k3 + b3
    m = u * v * w
    s = m - v
    avg = (s + u + b[:, :3]) / 3
    out = np.concatenate([a, avg], axis=1) @ k4 + b4
    return ((out - y) ** 2).mean()


def test_sgd_step_matches_float64_gradient(host_backend_name):
    """One full-batch SGD step of a two-input model with Multiply (three operands),
    Subtract and Average (of a model input's columns too): the update is -lr times the
    float64 central-difference gradient (fused on cpu, per-op on numpy)."""
    fusednn.set_random_seed(0)
    a, b = keras.Input((4,)), keras.Input((3,))
    u = L.Dense(3, activation="tanh")(a)
    v = L.Dense(3)(b)
    w = L.Dense(3)(a)
    s = L.Subtract()([L.Multiply()([u, v, w]), v])
    avg = L.Average()([s, u, b])
    out = L.Dense(2)(L.concatenate([a, avg]))
    model = keras.Model([a, b], out)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    if host_backend_name == "cpu":
        assert model.fused_reason is None
    rng = np.random.default_rng(2)
    xa, xb = rng.normal(size=(9, 4)).astype(np.float32), rng.normal(size=(9, 3)).astype(np.float32)
    y = rng.normal(size=(9, 2)).astype(np.float32)
    want = [u.layer, v.layer, w.layer, out.layer]  # the reference's parameter order
    ref = [np.asarray(p, dtype=np.float64) for layer in want for p in layer.get_weights()]
    grads = []
    for i, p in enumerate(ref):
        g = np.zeros_like(p)
        for idx in np.ndindex(*p.shape):
            up = [q.copy() for q in ref]
            dn = [q.copy() for q in ref]
            up[i][idx] += 1e-6
            dn[i][idx] -= 1e-6
            g[idx] = (_np_forward(up, xa, xb, y) - _np_forward(dn, xa, xb, y)) / 2e-6
        grads.append(g)
    model.fit([xa, xb], y, batch_size=9, epochs=1, shuffle=False, verbose=0)
    after = [p for layer in want for p in layer.get_weights()]
    for p1, p0, g in zip(after, ref, grads):
        np.testing.assert_allclose(p1, p0 - 0.1 * g, rtol=1e-4, atol=1e-5)


def test_still_unfused_graphs_say_why():
    a, b = keras.Input((4,)), keras.Input((2,))
    two = keras.Model([a, b], [L.Dense(1)(a), L.Dense(2)(L.concatenate([a, b]))])
    two.compile(optimizer="sgd", loss="mse")
    if fusednn.get_backend().name == "cpu":  # several outputs run as heads (tests/model/test_multi_output_fused.py)
        assert two.fused_reason is None
    c = keras.Input((3,))
    drop_in = keras.Model(c, L.Dense(1)(L.concatenate([L.Dropout(0.5)(c), L.Dense(2)(c)])))  # a step on an input
    drop_in.compile(optimizer="sgd", loss="mse")
    if fusednn.get_backend().name == "cpu":  # an identity block (tests/model/test_leading_steps.py)
        assert drop_in.fused_reason is None
    d, e = keras.Input((3,)), keras.Input((3,))
    no_dense = keras.Model([d, e], L.Multiply()([d, e]))
    no_dense.compile(optimizer="sgd", loss="mse")
    if fusednn.get_backend().name == "cpu":
        assert "without a Dense" in no_dense.fused_reason


def test_numpy_backend_runs_multi_input_per_op():
    previous = fusednn.get_backend().name
    fusednn.set_backend("numpy")
    try:
        model, hist = _train("merges_of_inputs", "auto")
        assert model.fused_reason.startswith("backend 'numpy' has no fused trainer")
        assert np.isfinite(hist["loss"]).all()
    finally:
        fusednn.set_backend(previous)


def test_function_forms_build_the_merge_layers():
    a, b = keras.Input((2,)), keras.Input((2,))
    for fn, cls in ((L.subtract, L.Subtract), (L.multiply, L.Multiply), (L.average, L.Average)):
        assert type(fn([a, b]).layer) is cls


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_two_input_model_matches_keras():
    """Real Keras 3 (torch backend) trains the same two-input model (Subtract, Multiply,
    Average, Concatenate of an input) from the same weights with SGD, no shuffling: the
    weights agree to float32 rounding (Keras' own operation order)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    k3 = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")
    if k3.backend.backend() != "torch":  # pragma: no cover
        pytest.skip(f"Keras runs on {k3.backend.backend()!r}, this test needs the torch backend")

    def build(k):
        a, b = k.Input(shape=(4,), name="a"), k.Input(shape=(3,), name="b")
        u = k.layers.Dense(3, activation="tanh", name="u")(a)
        v = k.layers.Dense(3, name="v")(b)
        s = k.layers.Subtract(name="s")([k.layers.Multiply(name="m")([u, v]), b])
        avg = k.layers.Average(name="avg")([s, u])
        out = k.layers.Dense(2, name="out")(k.layers.Concatenate(name="c")([a, avg]))
        return k.Model([a, b], out)

    fusednn.set_random_seed(0)
    ours, theirs = build(keras), build(k3)
    for layer in ("u", "v", "out"):
        theirs.get_layer(layer).set_weights(ours.get_layer(layer).get_weights())
    ours.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    theirs.compile(optimizer=k3.optimizers.SGD(0.05), loss="mse")
    rng = np.random.default_rng(5)
    xa, xb = rng.normal(size=(48, 4)).astype(np.float32), rng.normal(size=(48, 3)).astype(np.float32)
    y = rng.normal(size=(48, 2)).astype(np.float32)
    h_ours = ours.fit([xa, xb], y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    h_theirs = theirs.fit([xa, xb], y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(h_ours["loss"], h_theirs["loss"], rtol=1e-5)
    for layer in ("u", "v", "out"):
        for w1, w2 in zip(ours.get_layer(layer).get_weights(), theirs.get_layer(layer).get_weights()):
            np.testing.assert_allclose(w1, np.asarray(w2), rtol=1e-5, atol=1e-6)


def test_trainer_binding_refuses_bad_graph_specs():
    """The CPU trainer checks a graph block's model-input columns at construction and the
    batch's width at run time (nothing is read outside the batch)."""
    if "cpu" not in fusednn.backends.available():
        pytest.skip("the _cpu extension is not built")
    k = fusednn.backends.native("cpu")
    opt = keras.optimizers.SGD(0.1).kernel_spec()

    def spec(cols, merge=0, src=(-1,), W=(3, 2)):
        z = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
        return [{"W": z(*W), "b": None, "act": 0, "A": z(8, W[1]), "G": z(8, W[1]), "dW": z(*W), "src": list(src),
                 "merge": merge, "src_cols": cols, "x_cols": 4, "X": z(8, W[0]), "dX": z(8, W[0])}]

    with pytest.raises(ValueError, match="outside the batch's 4 columns"):
        k.MlpTrainer(spec([[2, 3]]), opt, "mse", 8)
    with pytest.raises(ValueError, match="sources give 2"):
        k.MlpTrainer(spec([[1, 2]]), opt, "mse", 8)
    with pytest.raises(ValueError, match="must be a merge block"):
        k.MlpTrainer(spec([[0, 3], [1, 3]], merge=4, src=(-1, -1)), opt, "mse", 8)
    trainer = k.MlpTrainer(spec([[1, 3]]), opt, "mse", 8)
    x, y = np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32)
    with pytest.raises(ValueError, match="takes 4 input columns"):
        trainer.run(x, y, np.arange(8), None, None, np.zeros(1, np.float32), 0, 1, 0,
                    step_params=np.zeros((1, 16), np.float32))


def test_sample_weights_and_metrics_fused_equals_per_op():
    """Sample weights and a compiled metric with a two-input model: the same weights bit for
    bit; the weighted epoch loss to float32 rounding (the fused trainer's weighted-loss kernel
    sums in another order than the per-op path, as for a Sequential model)."""
    runs = []
    previous = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        for fused in ("auto", False):
            fusednn.set_random_seed(0)
            inputs, out, loss = _two_towers_add()
            model = keras.Model(inputs, out)
            model.compile(optimizer="rmsprop", loss=loss, metrics=["accuracy"], fused=fused)
            assert (model.fused_reason is None) == (fused == "auto")
            x, y = _data(inputs, loss)
            sw = np.random.default_rng(1).uniform(0.2, 2, len(y)).astype(np.float32)
            fusednn.set_random_seed(4)
            runs.append((model.fit(x, y, sample_weight=sw, epochs=2, batch_size=8, verbose=0).history,
                         model.get_weights()))
    finally:
        fusednn.set_backend(previous)
    (hf, wf), (hp, wp) = runs
    assert hf["accuracy"] == hp["accuracy"]
    np.testing.assert_allclose(hf["loss"], hp["loss"], rtol=1e-6)
    for a, b in zip(wf, wp):
        np.testing.assert_array_equal(a, b)


def test_backend_without_multi_input_starts_graphs_with_a_dense(monkeypatch):
    """A trainer whose batch is as wide as its first block's input (the CUDA one, opted in)
    gets a specific reason for a graph that starts with a merge of the model input."""
    previous = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        be = fusednn.get_backend()
        x = keras.Input((3,))
        cat_first = keras.Model(x, L.Dense(1)(L.concatenate([x, x])))
        cat_first.compile(optimizer="sgd", loss="mse")
        assert cat_first.fused_reason is None
        monkeypatch.setattr(type(be), "trainer_multi_input", False)  # (the class: undo leaves no instance attribute)
        assert "start with a Dense block only" in cat_first.fused_reason
    finally:
        monkeypatch.undo()
        fusednn.set_backend(previous)


def test_backend_without_multi_input_trainer_says_why(monkeypatch):
    """A backend whose trainer runs layer graphs but takes one input only names that,
    instead of passing the check and failing in the binding."""
    if fusednn.get_backend().name != "cpu":
        pytest.skip("needs the cpu backend's trainer")
    model, _ = _train("wide_deep", "auto")
    assert model.fused_reason is None
    monkeypatch.setattr(type(model.backend), "trainer_multi_input", False)
    assert "several inputs" in model.fused_reason
