"""Keras L1/L2 regularizers: the penalty kernel against float64 and finite
differences on every backend, the fused step against the per-op path (same bits),
the loss that fit/evaluate report, and the layer config round trip."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras, regularizers
from fusednn.backends import backend

from helpers import numeric_grad


def test_keras_formulas_names_and_defaults():
    w = np.array([[1.0, -2.0], [0.0, 3.0]])
    assert regularizers.L2(0.1)(w) == pytest.approx(0.1 * 14)
    assert regularizers.L1(0.1)(w) == pytest.approx(0.1 * 6)
    assert regularizers.L1L2(0.1, 0.2)(w) == pytest.approx(0.6 + 2.8)
    assert regularizers.l2 is regularizers.L2 and regularizers.l1_l2 is regularizers.L1L2
    assert regularizers.L1().l1 == 0.01 and regularizers.L2().l2 == 0.01
    assert regularizers.L1L2().l1 == 0.0 == regularizers.L1L2().l2
    assert isinstance(regularizers.get("l2"), regularizers.L2)
    assert keras.regularizers.L2 is regularizers.L2
    with pytest.raises(ValueError, match="unknown regularizer"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match=">= 0"):
        regularizers.L2(-1.0)
    with pytest.raises(TypeError, match="number"):
        regularizers.L1("a")


def test_custom_penalty_is_rejected_not_ignored():
    class Odd(regularizers.Regularizer):
        def __call__(self, x):
            return 0.0

    with pytest.raises(TypeError, match="only L1/L2"):
        keras.layers.Dense(3, kernel_regularizer=Odd())


@pytest.mark.parametrize("shape", [(1,), (7, 5), (33, 129)])
def test_regularize_kernel_against_float64(backend_name, shape):
    be = backend(backend_name)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape).astype(np.float32)
    w.reshape(-1)[0] = 0.0  # sign(0) = 0
    g = rng.standard_normal(shape).astype(np.float32)
    l1, l2 = 0.03, 0.2
    gd, wd, loss = be.asarray(g.copy()), be.asarray(w.copy()), be.asarray(np.array([1.5], np.float32))
    be.regularize(wd, gd, l1, l2, loss)
    w64 = w.astype(np.float64)
    np.testing.assert_allclose(be.to_numpy(gd), g + l1 * np.sign(w64) + 2 * l2 * w64, rtol=1e-6, atol=1e-6)
    ref = 1.5 + l1 * np.abs(w64).sum() + l2 * (w64 ** 2).sum()
    assert float(be.to_numpy(loss)[0]) == pytest.approx(ref, rel=1e-6)
    # the gradient is the derivative of the penalty (away from the kink of |w| at 0)
    wk = w64.copy()
    wk.reshape(-1)[0] = 0.5
    reg = regularizers.L1L2(l1, l2)
    num = numeric_grad(lambda v: reg(v), wk)
    g0 = be.asarray(np.zeros(shape, np.float32))
    be.regularize(be.asarray(wk.astype(np.float32)), g0, l1, l2)
    np.testing.assert_allclose(be.to_numpy(g0), num, rtol=1e-4, atol=1e-5)


def _model(loss="mse", out=2, kreg=None, breg=None, optimizer=None, fused="auto"):
    fusednn.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.layers.Dense(9, activation="tanh", input_shape=(6,), kernel_regularizer=kreg, bias_regularizer=breg),
        keras.layers.Dense(out, activation="softmax" if loss == "categorical_crossentropy" else None,
                           kernel_regularizer=kreg)])
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.05, momentum=0.9), loss=loss, fused=fused)
    return model


def test_model_gradient_matches_finite_differences_of_the_regularized_loss(host_backend_name):
    """The whole per-op step (loss + penalties) in float64 terms: dLoss/dW by central
    differences of model loss + penalty equals the gradient the model computes."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    model = _model(kreg=regularizers.L1L2(0.01, 0.05), breg=regularizers.L2(0.1))
    be = model._backend
    ws = model._workspace(8)
    out = be.zeros((1,))
    model._compute_gradients(be.asarray(x), be.asarray(y), ws, out)
    grads = [np.asarray(be.to_numpy(g), np.float64).copy() for g in model._grads]
    weights = [w.astype(np.float64) for w in model.get_weights()]

    def total(ws_: list[np.ndarray]) -> float:
        (w0, b0, w1, b1) = ws_
        h = np.tanh(x @ w0 + b0)
        p = h @ w1 + b1
        k, b = regularizers.L1L2(0.01, 0.05), regularizers.L2(0.1)
        return float(np.mean((p - y) ** 2) + k(w0) + b(b0) + k(w1))

    assert float(be.to_numpy(out)[0]) == pytest.approx(total(weights), rel=1e-5)
    for i in range(4):
        def f(v, i=i):
            return total([v if j == i else weights[j] for j in range(4)])
        np.testing.assert_allclose(grads[i], numeric_grad(f, weights[i].copy()), rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("loss,out", [("mse", 2), ("categorical_crossentropy", 3)])
@pytest.mark.parametrize("make_opt", [lambda: keras.optimizers.Adam(0.01), lambda: keras.optimizers.SGD(0.05, 0.9)])
def test_fused_equals_per_op_with_regularizers(loss, out, make_opt, device):
    if device not in fusednn.backends.available():
        pytest.skip(f"{device} backend not available")
    prev = fusednn.get_backend().name
    fusednn.set_backend(device)
    try:
        rng = np.random.default_rng(2)
        x = rng.standard_normal((101, 6))
        y = rng.standard_normal((101, out)) if loss == "mse" else np.eye(out)[rng.integers(0, out, 101)]
        kw = dict(loss=loss, out=out, kreg=regularizers.L1L2(1e-3, 1e-2), breg=regularizers.L1(1e-3))
        a, b = _model(**kw, optimizer=make_opt()), _model(**kw, optimizer=make_opt(), fused=False)
        fusednn.utils.set_random_seed(11)
        ha = a.fit(x, y, epochs=3, batch_size=16, verbose=0)
        fusednn.utils.set_random_seed(11)
        hb = b.fit(x, y, epochs=3, batch_size=16, verbose=0)
        assert a.fused_reason is None and "fused=False" in b.fused_reason
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ha.history["loss"], hb.history["loss"])
        # the regularized model really differs from an unregularized one
        c = _model(loss=loss, out=out, optimizer=make_opt())
        fusednn.utils.set_random_seed(11)
        hc = c.fit(x, y, epochs=3, batch_size=16, verbose=0)
        assert hc.history["loss"][0] < ha.history["loss"][0]
    finally:
        fusednn.set_backend(prev)


def test_reported_loss_includes_penalty(host_backend_name):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 6)), rng.standard_normal((40, 2))
    model = _model(kreg=regularizers.L2(0.5))
    plain = model.evaluate(x, y, batch_size=40, verbose=0)
    pen = sum(regularizers.L2(0.5)(w) for w in model.get_weights()[::2])
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    w0, b0, w1, b1 = [w.astype(np.float64) for w in model.get_weights()]
    mse = np.mean((np.tanh(x32 @ w0 + b0) @ w1 + b1 - y32) ** 2)
    assert plain == pytest.approx(mse + pen, rel=1e-5)
    # the first training step's loss (batch = all data) is the same number
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    h = model.fit(x, y, epochs=1, batch_size=40, verbose=0)
    assert h.history["loss"][0] == pytest.approx(mse + pen, rel=1e-5)


def test_regularizers_saved_in_layer_config(tmp_path):
    model = _model(kreg=regularizers.L1L2(0.01, 0.02), breg="l2")
    cfg = model.layers[0].get_config()
    assert cfg["kernel_regularizer"] == {"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.02}}
    assert cfg["bias_regularizer"] == {"class_name": "L2", "config": {"l2": 0.01}}
    assert "kernel_regularizer" not in keras.layers.Dense(2).get_config()
    path = tmp_path / "m.npz"
    model.save(str(path))
    back = fusednn.load_model(str(path))
    r = back.layers[0].kernel_regularizer
    assert isinstance(r, regularizers.L1L2) and (r.l1, r.l2) == (0.01, 0.02)
    assert isinstance(back.layers[0].bias_regularizer, regularizers.L2)
