"""Dense(activity_regularizer=...): Keras 3 adds ``reg(output) / rows`` to the loss of every
training and evaluation batch (on the layer's output, after its activation). The per-op
Dense adds the penalty's gradient to its output gradient in ``backward`` (and its value to
the step's loss), the fused cpu trainer does the same with the same kernel on the block's
output: fused == per-op bit for bit, the numpy backend to float32 rounding, and real Keras 3
from the same weights to float32 rounding."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fusednn
from fusednn import keras

from helpers import assert_fits_like_keras, fit_twice, keras3_on_torch, on_backend

L, R = keras.layers, keras.regularizers
needs_cpu = pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")

RNG = np.random.default_rng(9)
X = RNG.normal(size=(75, 5)).astype(np.float32)  # a short last batch of 11 at batch 16
Y = (X[:, :1] - X[:, 1:2] > 0).astype(np.float32)


def _seq(layers):
    return lambda: keras.Sequential([keras.Input((5,)), *layers()])


CASES = {
    "l2-relu": _seq(lambda: [L.Dense(8, activation="relu", activity_regularizer=R.L2(0.01)), L.Dense(1)]),
    "l1l2-tanh-then-bn": _seq(lambda: [L.Dense(8, activation="tanh", activity_regularizer=R.L1L2(0.003, 0.02)),
                                       L.BatchNormalization(), L.Dense(1, activity_regularizer="l1")]),
    "sigmoid-output": _seq(lambda: [L.Dense(8, activation="relu"),
                                    L.Dense(1, activation="sigmoid", activity_regularizer="l2")]),
}


@needs_cpu
@pytest.mark.parametrize("name", list(CASES))
def test_fused_equals_per_op_and_numpy(name):
    reason, [(h_fused, w_fused), (h_op, w_op)] = fit_twice(CASES[name], "mse", X, Y)
    assert reason is None
    assert h_fused == h_op
    for a, b in zip(w_fused, w_op):
        np.testing.assert_array_equal(a, b)
    _, [(h_np, w_np), _] = fit_twice(CASES[name], "mse", X, Y, backend="numpy")
    np.testing.assert_allclose(h_np["loss"], h_fused["loss"], rtol=1e-5)
    for a, b in zip(w_np, w_fused):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_penalty_is_in_the_loss_and_its_gradient(host_backend_name):
    """One SGD step on one batch: the loss is mse + l2 * sum(y^2) / rows and the kernel moves
    by the float64 gradient of that (finite differences)."""
    with on_backend(host_backend_name):
        model = keras.Sequential([keras.Input((5,)), L.Dense(3, activation="tanh", activity_regularizer=R.L2(0.5)),
                                  L.Dense(1, use_bias=False)])
        model.compile(keras.optimizers.SGD(0.1), "mse")
        w0 = [w.astype(np.float64) for w in model.get_weights()]
        x, y = X[:8].astype(np.float64), Y[:8].astype(np.float64)

        def loss(ws):
            h = np.tanh(x @ ws[0] + ws[1])
            return np.mean((h @ ws[2] - y) ** 2) + 0.5 * np.sum(h ** 2) / len(x)

        hist = model.fit(X[:8], Y[:8], batch_size=8, epochs=1, shuffle=False, verbose=0).history
        assert hist["loss"][0] == pytest.approx(loss(w0), rel=1e-5)
        eps, k = 1e-6, w0[0].copy()
        grad = np.zeros_like(k)
        for idx in np.ndindex(*k.shape):
            hi, lo = [w.copy() for w in w0], [w.copy() for w in w0]
            hi[0][idx] += eps
            lo[0][idx] -= eps
            grad[idx] = (loss(hi) - loss(lo)) / (2 * eps)
        np.testing.assert_allclose(model.get_weights()[0], w0[0] - 0.1 * grad, rtol=1e-4, atol=1e-6)
        # evaluate counts the penalty as Keras' test step does
        assert model.evaluate(X[:8], Y[:8], verbose=0) == pytest.approx(loss([w.astype(np.float64)
                                                                              for w in model.get_weights()]), rel=1e-5)


def test_config_round_trip_and_refusals():
    layer = L.Dense(4, activity_regularizer=R.L1L2(0.1, 0.2))
    again = L.Dense.from_config(layer.get_config())
    assert (again.activity_regularizer.l1, again.activity_regularizer.l2) == pytest.approx((0.1, 0.2))
    assert "activity_regularizer" not in L.Dense(4).get_config()  # written only when set
    with pytest.raises((TypeError, ValueError)):
        L.Dense(4, activity_regularizer=42)


@needs_cpu
def test_unfused_cases_say_why(monkeypatch):
    with on_backend("cpu"):
        soft = keras.Sequential([keras.Input((5,)), L.Dense(3, activation="softmax", activity_regularizer="l2"),
                                 L.Dense(1)])
        soft.compile("adam", "mse")
        assert "activity_regularizer on a softmax Dense" in soft.fused_reason
        model = CASES["l2-relu"]()
        model.compile("adam", "mse")
        assert model.fused_reason is None
        monkeypatch.setattr(type(model.backend), "trainer_activity_regularizer", False)
        assert "activity regularizers" in model.fused_reason


def test_matches_keras():
    """Real Keras 3 (torch backend) from the same weights, full-batch SGD, unshuffled: the
    reported losses (penalty included) and the weights agree to float32 rounding."""
    keras3 = keras3_on_torch()

    def layers(lib):
        return [lib.layers.Dense(6, activation="relu", activity_regularizer=lib.regularizers.L1L2(0.01, 0.05)),
                lib.layers.Dense(1, activity_regularizer=lib.regularizers.L2(0.1))]

    t = keras3.Sequential([keras3.Input(shape=(5,)), *layers(keras3)])
    o = keras.Sequential([keras.Input(shape=(5,)), *layers(keras)])
    o.set_weights(t.get_weights())
    t.compile(keras3.optimizers.SGD(0.05), "mse")
    o.compile(keras.optimizers.SGD(0.05), "mse")
    assert_fits_like_keras(o, t, X, Y, epochs=4, batch_size=25)
    assert o.evaluate(X, Y, verbose=0) == pytest.approx(t.evaluate(X, Y, verbose=0), rel=2e-5)


def test_keras_file_round_trip(tmp_path):
    """The regularizer is saved in a .keras file as Keras writes it and read back; real
    Keras 3 reads ours too (when installed)."""
    pytest.importorskip("h5py", reason="h5py is not installed (pip install h5py)")
    model = CASES["l1l2-tanh-then-bn"]()
    model.compile("adam", "mse")
    model.build((None, 5))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    reg = again.layers[0].activity_regularizer
    assert (reg.l1, reg.l2) == pytest.approx((0.003, 0.02))
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras as keras3
    except ImportError:
        return
    if keras3.backend.backend() != "torch":  # pragma: no cover
        return
    theirs = keras3.models.load_model(tmp_path / "m.keras")
    assert theirs.layers[0].activity_regularizer.get_config() == pytest.approx({"l1": 0.003, "l2": 0.02})
