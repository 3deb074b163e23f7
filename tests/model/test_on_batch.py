"""Keras' one-batch methods: train_on_batch is one SGD step on the whole batch (checked
against a float64 reference, batch sizes that alternate as a hand-written loop's last
batch does, fused and per-op paths alike), test_on_batch/predict_on_batch equal
evaluate/predict on one batch, and the return values follow Keras 3 (float, list in
compile order, dict; metrics reset at every call)."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import keras


def sgd_model(fused="auto", metrics=None, seed=0):
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", metrics=metrics, fused=fused)
    return m


def data(n=42, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 1))


@pytest.mark.parametrize("fused", ["auto", False])
def test_train_on_batch_is_one_sgd_step_per_call(fused):
    x, y = data()
    m = sgd_model(fused)
    W, b = (a.astype(np.float64) for a in m.get_weights())
    # batches of 16, 16, 10, then 16 again: the fused trainer is reused for the smaller one
    for lo, hi in [(0, 16), (16, 32), (32, 42), (0, 16)]:
        xb, yb = x[lo:hi], y[lo:hi]
        r = xb @ W + b - yb
        want_loss = float(np.mean(r * r))
        g = 2.0 * r / len(xb)
        W, b = W - 0.1 * xb.T @ g, b - 0.1 * g.sum(axis=0)
        loss = m.train_on_batch(xb, yb)
        assert isinstance(loss, float)
        assert loss == pytest.approx(want_loss, rel=1e-5)
    got_W, got_b = m.get_weights()
    np.testing.assert_allclose(got_W, W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, b, rtol=1e-5, atol=1e-6)
    assert m.optimizer.iterations == 4


def test_train_on_batch_weights_match_fit_sample_weight():
    x, y = data(20)
    w = np.linspace(0.5, 2.0, 20)
    a, b = sgd_model(), sgd_model()
    la = a.train_on_batch(x, y, sample_weight=w)
    hist = b.fit(x, y, sample_weight=w, batch_size=20, epochs=1, shuffle=False, verbose=0)
    assert la == pytest.approx(hist.history["loss"][0], rel=1e-6)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-6)


def test_class_weight_and_metrics_per_batch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 4))
    y = (x[:, 0] > 0).astype(int)
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, acc = m.train_on_batch(x, y, class_weight={0: 1.0, 1: 3.0})
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0
    # metrics are this batch's only (Keras 3 resets them at each call)
    before = m.predict(x[:10], verbose=0).argmax(axis=1)
    logs = m.test_on_batch(x[:10], y[:10], return_dict=True)
    assert sorted(logs) == ["accuracy", "loss"]
    assert logs["accuracy"] == pytest.approx(float(np.mean(before == y[:10])))
    ev_loss, ev_acc = m.evaluate(x[:10], y[:10], batch_size=10, verbose=0)
    assert logs["loss"] == pytest.approx(ev_loss, rel=1e-6) and logs["accuracy"] == pytest.approx(ev_acc)
    train_logs = m.train_on_batch(x[:10], y[:10], return_dict=True)
    assert train_logs["accuracy"] == pytest.approx(float(np.mean(before == y[:10])))


def test_predict_and_test_on_batch_do_not_train():
    x, y = data(12)
    m = sgd_model()
    before = m.get_weights()
    out = m.predict_on_batch(x)
    np.testing.assert_allclose(out, m.predict(x, verbose=0), rtol=1e-6)
    assert out.shape == (12, 1) and isinstance(out, np.ndarray)
    loss = m.test_on_batch(x, y, sample_weight=np.ones(12))
    assert loss == pytest.approx(m.evaluate(x, y, verbose=0), rel=1e-6)
    for p, q in zip(before, m.get_weights()):
        np.testing.assert_array_equal(p, q)


def test_bad_calls_are_refused():
    x, y = data(8)
    m = sgd_model()
    with pytest.raises(ValueError, match="sample_weight and class_weight"):
        m.train_on_batch(x, y, sample_weight=np.ones(8), class_weight={0: 1.0})
    with pytest.raises(ValueError, match="needs targets"):
        m.train_on_batch(x)
    with pytest.raises(ValueError, match="needs targets"):
        m.test_on_batch(x)
    with pytest.raises(ValueError, match="at least one sample"):
        m.predict_on_batch(np.zeros((0, 3)))
    uncompiled = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    with pytest.raises(RuntimeError, match="compile"):
        uncompiled.train_on_batch(x, y)
