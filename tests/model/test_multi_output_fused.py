"""Functional models with several outputs in the fused CPU trainer (fusednn/heads.h):
each output a head with its own loss and loss weight. The fused trainer calls the per-op
path's kernels in its order (each head's loss and gradient, the gradient times the
weight, the weighted sum in output order, a head read by another layer adding that
layer's gradient to its own), so history and weights must agree bit for bit; on the
numpy backend both runs are per-op and the comparison still checks the per-output
history. One test compares the loss curves with real Keras 3 from the same weights."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fusednn
from fusednn import keras

L = keras.layers


def _fit_both(build, x, y, **fit):
    """Fit the model ``build(fused)`` makes, fused ("auto") and per-op, from the same
    seeds; returns [(history, weights, model)] for both."""
    runs = []
    for fused in ("auto", False):
        model = build(fused)
        if fused == "auto" and fusednn.get_backend().name == "cpu":
            assert model.fused_reason is None
        fusednn.set_random_seed(1)
        hist = model.fit(x, y, verbose=0, **fit).history
        runs.append((hist, model.get_weights(), model))
    return runs


def _assert_same(runs, keys):
    (h1, w1, _), (h2, w2, _) = runs
    assert set(h1) == set(keys)
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(v).all() for v in h1.values())


def _two_heads(fused, form):
    fusednn.set_random_seed(0)
    inp = keras.Input((6,))
    h = L.Dense(12, activation="relu")(inp)
    h = L.Dense(8, activation="tanh")(h)
    reg = L.Dense(1, name="reg")(h)
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    if form == "dict":
        model = keras.Model(inp, {"reg": reg, "cls": cls})
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss={"cls": "sparse_categorical_crossentropy",
                                                                     "reg": "mse"},
                      loss_weights={"reg": 0.5, "cls": 2.0}, fused=fused)
    else:
        model = keras.Model(inp, [reg, cls])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=["mse", "sparse_categorical_crossentropy"],
                      loss_weights=[0.5, 2.0], fused=fused)
    return model


@pytest.mark.parametrize("form", ["list", "dict"])
def test_two_heads_fused_equals_per_op(host_backend_name, form):
    """A regression head and a folded softmax head, weighted, with a short last batch and
    a validation split: the same history (loss, <output>_loss, val_*) and weights."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(87, 6)).astype(np.float32)
    y_reg, y_cls = x[:, :1] * 2 - x[:, 1:2], rng.integers(0, 3, 87)
    y = {"reg": y_reg, "cls": y_cls} if form == "dict" else [y_reg, y_cls]
    runs = _fit_both(lambda f: _two_heads(f, form), x, y, epochs=3, batch_size=16, validation_split=0.2)
    _assert_same(runs, {"loss", "reg_loss", "cls_loss", "val_loss", "val_reg_loss", "val_cls_loss"})
    hist = runs[0][0]
    # the step loss is the weighted sum: so is the epoch's (to the per-batch float32 rounding)
    np.testing.assert_allclose(hist["loss"], 0.5 * np.array(hist["reg_loss"]) + 2.0 * np.array(hist["cls_loss"]),
                               rtol=1e-5)
    # train_on_batch runs the same one-step chunk on both paths
    outs = []
    for model in (runs[0][2], runs[1][2]):
        outs.append(model.train_on_batch(x[:20], {"reg": y_reg[:20], "cls": y_cls[:20]} if form == "dict"
                                         else [y_reg[:20], y_cls[:20]], return_dict=True))
    assert outs[0] == outs[1] and set(outs[0]) == {"loss", "reg_loss", "cls_loss"}


def test_three_heads_with_steps_and_every_loss_family(host_backend_name):
    """A sigmoid head (binary cross-entropy, folded), a one-hot softmax head
    (categorical, folded) and a Huber head (a LossFn loss) on a trunk with BatchNormalization
    and Dropout steps; loss_weights as a dict naming only two outputs (the third weighs 1)."""
    def build(fused):
        fusednn.set_random_seed(2)
        inp = keras.Input((5,))
        h = L.Dense(16)(inp)
        h = L.BatchNormalization()(h)
        h = L.Activation("relu")(h)
        h = L.Dropout(0.2, seed=3)(h)
        b = L.Dense(1, activation="sigmoid", name="b")(h)
        c = L.Dense(4, activation="softmax", name="c")(L.Dense(8, activation="elu")(h))
        r = L.Dense(2, name="r")(h)
        model = keras.Model(inp, [b, c, r])
        model.compile(optimizer=keras.optimizers.RMSprop(0.005), loss=["binary_crossentropy",
                                                                        "categorical_crossentropy",
                                                                        keras.losses.Huber(delta=0.5)],
                      loss_weights={"b": 0.3, "r": 1.7}, fused=fused)
        return model

    rng = np.random.default_rng(1)
    x = rng.normal(size=(75, 5)).astype(np.float32)
    yb = (x[:, 0] > 0).astype(np.float32)
    yc = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 75)]
    yr = np.stack([x[:, 1] * 3, x[:, 2] - x[:, 3]], axis=1)
    runs = _fit_both(build, x, [yb, yc, yr], epochs=3, batch_size=32)
    _assert_same(runs, {"loss", "b_loss", "c_loss", "r_loss"})


def test_outputs_after_step_layers(host_backend_name):
    """Outputs that end a Dense block with step layers: Dense then Activation('softmax')
    (folded into its cross-entropy, as for one output), Dense then BatchNormalization (the
    loss reads the step's output), Dense(sigmoid) then Dropout read by a third output."""
    def build(fused):
        fusednn.set_random_seed(12)
        inp = keras.Input((6,))
        h = L.Dense(10, activation="relu")(inp)
        cls = L.Activation("softmax", name="cls")(L.Dense(3)(h))
        bn = L.BatchNormalization(name="bn")(L.Dense(2)(h))
        drop = L.Dropout(0.3, seed=5, name="drop")(L.Dense(2, activation="sigmoid")(h))
        last = L.Dense(1, name="last")(drop)
        model = keras.Model(inp, [cls, bn, drop, last])
        model.compile(optimizer="adam", loss=["categorical_crossentropy", "mse", "mse", "huber"],
                      loss_weights=[1.0, 0.5, 2.0, 1.0], metrics=[["accuracy"], [], ["mae"], []], fused=fused)
        return model

    rng = np.random.default_rng(13)
    x = rng.normal(size=(55, 6)).astype(np.float32)
    y = [np.eye(3, dtype=np.float32)[rng.integers(0, 3, 55)], x[:, :2], (x[:, 2:4] > 0).astype(np.float32), x[:, 4:5]]
    runs = _fit_both(build, x, y, epochs=3, batch_size=16)
    _assert_same(runs, {"loss", "cls_loss", "bn_loss", "drop_loss", "last_loss", "cls_accuracy", "drop_mae"})
    # the softmax step is folded on both paths: predictions are probabilities
    p = runs[0][2].predict(x, verbose=0)[0]
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


def test_log_softmax_output(host_backend_name):
    """A Dense(log_softmax) output (a row step after a linear Dense in the fused trainer)
    beside a plain one; its loss reads the log-probabilities."""
    def build(fused):
        fusednn.set_random_seed(16)
        inp = keras.Input((4,))
        h = L.Dense(7, activation="relu")(inp)
        model = keras.Model(inp, [L.Dense(3, activation="log_softmax", name="ls")(h), L.Dense(1, name="v")(h)])
        model.compile(optimizer="adam", loss=["mse", "mse"], fused=fused)
        return model

    rng = np.random.default_rng(17)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = [np.log(np.full((40, 3), 1 / 3, dtype=np.float32)), x[:, :1]]
    runs = _fit_both(build, x, y, epochs=2, batch_size=16)
    _assert_same(runs, {"loss", "ls_loss", "v_loss"})


def test_output_read_by_another_layer(host_backend_name):
    """Output "a" is also the input of output "b"'s layer (through a Concatenate): its
    gradient is its own loss's plus what "b"'s layer sends back."""
    def build(fused):
        fusednn.set_random_seed(4)
        inp = keras.Input((4,))
        h = L.Dense(6, activation="relu")(inp)
        a = L.Dense(3, activation="tanh", name="a")(h)
        b = L.Dense(2, name="b")(L.Concatenate()([a, h]))
        c = L.Dense(1, name="c")(a)  # a second reader of "a"
        model = keras.Model(inp, {"a": a, "b": b, "c": c})
        model.compile(optimizer="adam", loss={"a": "mse", "b": "mae", "c": "mse"},
                      loss_weights={"a": 1.5, "b": 0.25, "c": 1.0}, fused=fused)
        return model

    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = {"a": np.tanh(x[:, :3]), "b": x[:, 2:] ** 2, "c": x[:, :1]}
    runs = _fit_both(build, x, y, epochs=4, batch_size=12)
    _assert_same(runs, {"loss", "a_loss", "b_loss", "c_loss"})


def test_two_inputs_two_outputs(host_backend_name):
    """Several inputs (graph blocks reading their columns of the packed batch) and several
    outputs (heads) together, with a Subtract merge of the inputs' towers."""
    def build(fused):
        fusednn.set_random_seed(14)
        a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
        ha, hb = L.Dense(6, activation="tanh")(a), L.Dense(6, activation="tanh")(b)
        d = L.Subtract()([ha, hb])
        cls = L.Dense(2, activation="softmax", name="cls")(L.Concatenate()([d, b]))
        reg = L.Dense(1, name="reg")(d)
        model = keras.Model({"a": a, "b": b}, {"cls": cls, "reg": reg})
        model.compile(optimizer="adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                      loss_weights={"reg": 3.0}, metrics={"cls": ["accuracy"]}, fused=fused)
        return model

    rng = np.random.default_rng(15)
    xa, xb = rng.normal(size=(45, 3)).astype(np.float32), rng.normal(size=(45, 3)).astype(np.float32)
    y = {"cls": (xa[:, 0] > xb[:, 0]).astype(int), "reg": (xa - xb)[:, 1:2]}
    runs = _fit_both(build, {"a": xa, "b": xb}, y, epochs=3, batch_size=10)
    _assert_same(runs, {"loss", "cls_loss", "reg_loss", "cls_accuracy"})


def test_multi_output_reasons_and_sample_weights(host_backend_name):
    """What stays per-op says why. With sample weights (one per sample, for every output,
    as Keras) the fused trainer scales each head's gradient rows as the per-op path does:
    the same weights bit for bit; the losses it records come from the weighted-loss kernel
    (summed in double, the per-op path sums in float32), equal to float32 rounding."""
    inp = keras.Input((4,))
    h = L.Dense(5, activation="relu")(inp)
    p = L.Dense(1, activation="sigmoid", name="p")(h)
    q = L.Dense(1, name="q")(L.Concatenate()([p, h]))
    model = keras.Model(inp, [p, q])
    model.compile(optimizer="adam", loss=["binary_crossentropy", "mse"])
    if host_backend_name == "cpu":  # "p" is read by "q": its sigmoid cannot fold into the loss
        assert "cross-entropy on probabilities" in model.fused_reason
    two = keras.Model(inp, [L.Dense(1, name="u")(h), L.Dense(2, activation="softmax", name="v")(h)])
    two.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"],
                metrics=[[lambda t, p: keras.ops.mean(p)], ["accuracy"]])
    if host_backend_name == "cpu":
        assert "metrics on a multi-output model run per-op" in two.fused_reason
    if host_backend_name == "cpu":  # a backend whose trainer runs graph blocks but no heads (cuda) says so
        plain = keras.Model(inp, [L.Dense(1, name="w1")(h), L.Dense(1, name="w2")(h)])
        plain.compile(optimizer="adam", loss="mse")
        assert plain.fused_reason is None
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(type(fusednn.get_backend()), "trainer_heads", False)
            assert "does not run a model with several outputs" in plain.fused_reason
    d = L.Dense(2, name="d")(h)
    twice = keras.Model(inp, [d, d])
    twice.compile(optimizer="adam", loss="mse")
    if host_backend_name == "cpu":
        assert "two of the model's outputs" in twice.fused_reason
    f = L.Dense(1, name="f")(h)  # an output followed by a step layer another output reads
    after = keras.Model(inp, [f, L.Dense(1, name="g")(L.Dropout(0.1)(f))])
    after.compile(optimizer="adam", loss="mse")
    if host_backend_name == "cpu":
        assert "output 'f' is not fused" in after.fused_reason
    noisy = keras.Model(inp, [L.Dense(1, name="k")(h), L.GaussianNoise(0.1, name="n")(inp)])  # no Dense
    noisy.compile(optimizer="adam", loss="mse")
    if host_backend_name == "cpu":
        assert "output 'n' is not fused" in noisy.fused_reason
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = [x[:, :1], rng.integers(0, 2, 30)]
    w = rng.uniform(0.5, 2.0, 30)

    def build(fused):
        fusednn.set_random_seed(6)
        i = keras.Input((4,))
        g = L.Dense(5, activation="relu")(i)
        m = keras.Model(i, [L.Dense(1, name="u")(g), L.Dense(2, activation="softmax", name="v")(g)])
        m.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"], fused=fused)
        return m

    runs = _fit_both(build, x, y, epochs=2, batch_size=8, sample_weight=w)
    (h1, w1, _), (h2, w2, _) = runs
    assert set(h1) == set(h2) == {"loss", "u_loss", "v_loss"}
    for key in h1:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-6, err_msg=key)
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_two_heads_loss_curve_matches_keras(host_backend_name):
    """Real Keras 3 (torch backend, CPU) from the same initial weights, unshuffled: the
    loss and per-output loss curves agree to float32 rounding (Keras computes the
    cross-entropy on the clipped softmax probabilities, fusednn on the logits)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    k3 = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")
    if k3.backend.backend() != "torch":  # pragma: no cover
        pytest.skip(f"Keras runs on {k3.backend.backend()!r}, this test needs the torch backend")

    def build(k):
        inp = k.Input((6,))
        h = k.layers.Dense(10, activation="relu", name="h")(inp)
        reg = k.layers.Dense(1, name="reg")(h)
        cls = k.layers.Dense(3, activation="softmax", name="cls")(h)
        m = k.Model(inp, [reg, cls])
        m.compile(optimizer=k.optimizers.Adam(0.01), loss=["mse", "sparse_categorical_crossentropy"],
                  loss_weights=[0.7, 1.3])
        return m

    rng = np.random.default_rng(7)
    x = rng.normal(size=(100, 6)).astype(np.float32)
    y = [(x[:, :1] - x[:, 1:2]).astype(np.float32), rng.integers(0, 3, 100)]
    fusednn.set_random_seed(8)
    ours = build(keras)
    theirs = build(k3)
    theirs.set_weights(ours.get_weights())
    if host_backend_name == "cpu":
        assert ours.fused_reason is None
    mine = ours.fit(x, y, epochs=5, batch_size=32, shuffle=False, verbose=0).history
    ref = theirs.fit(x, y, epochs=5, batch_size=32, shuffle=False, verbose=0).history
    for key in ("loss", "reg_loss", "cls_loss"):
        np.testing.assert_allclose(mine[key], ref[key], rtol=2e-5, err_msg=key)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_per_output_metrics_in_the_heads(host_backend_name, weighted):
    """Each output's compiled metrics (confusion-count, error-sum and metric-object ones, on
    folded outputs too) accumulate in the fused trainer's heads with the metric-object
    kernel: the same values as the per-op path (whose unweighted accumulators are other
    kernels summing in double: equal to 1e-12), and the same losses and weights."""
    def build(fused):
        fusednn.set_random_seed(9)
        inp = keras.Input((5,))
        h = L.Dense(8, activation="relu")(inp)
        model = keras.Model(inp, {"r": L.Dense(2, name="r")(h), "s": L.Dense(1, activation="sigmoid", name="s")(h),
                                  "c": L.Dense(3, activation="softmax", name="c")(h)})
        model.compile(optimizer="adam", loss={"r": "mse", "s": "binary_crossentropy",
                                              "c": "sparse_categorical_crossentropy"},
                      metrics={"r": ["mae", keras.metrics.R2Score()], "s": ["accuracy", keras.metrics.AUC()],
                               "c": ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2)]},
                      loss_weights={"c": 0.5}, fused=fused)
        return model

    rng = np.random.default_rng(10)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    y = {"r": x[:, :2] * 2, "s": (x[:, 2] > 0).astype(np.float32), "c": rng.integers(0, 3, 60)}
    fit = {"sample_weight": rng.uniform(0.2, 2.0, 60)} if weighted else {}
    runs = _fit_both(build, x, y, epochs=2, batch_size=16, validation_split=0.25, **fit)
    (h1, w1, _), (h2, w2, _) = runs
    assert set(h1) == set(h2)
    assert {"r_mae", "r_r2_score", "s_accuracy", "s_auc", "c_accuracy", "c_sparse_top_k_categorical_accuracy",
            "val_c_accuracy"} <= set(h1)
    for key in h1:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-6 if weighted and key.endswith("loss") else 1e-12,
                                   err_msg=key)
        if key.endswith("loss") and not weighted:
            assert h1[key] == h2[key], key
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
