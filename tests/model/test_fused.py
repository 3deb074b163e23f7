"""The fused training path (whole epochs in C++) against the per-op path it replaces."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import fused, keras

pytestmark = pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")


@pytest.fixture(autouse=True)
def cpu_backend():
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    yield
    fusednn.set_backend(prev)


def build(acts, units, optimizer, use_bias=True, n_in=7, fused="auto"):
    fusednn.utils.set_random_seed(3)
    layers = [keras.layers.Dense(units[0], activation=acts[0], input_shape=(n_in,), use_bias=use_bias)]
    layers += [keras.layers.Dense(u, activation=a, use_bias=use_bias) for u, a in zip(units[1:], acts[1:])]
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer, loss="mse", fused=fused)
    return model


def train(model, x, y, **kw):
    fusednn.utils.set_random_seed(11)
    return model.fit(x, y, verbose=0, **kw)


OPTIMIZERS = [lambda: keras.optimizers.Adam(learning_rate=0.01),
              lambda: keras.optimizers.SGD(0.05),
              lambda: keras.optimizers.SGD(0.02, momentum=0.9),
              lambda: keras.optimizers.SGD(0.02, momentum=0.8, nesterov=True)]


@pytest.mark.parametrize("make_opt", OPTIMIZERS)
@pytest.mark.parametrize("acts,units", [(["relu", "relu", None], [64, 64, 1]),
                                        (["tanh", "sigmoid"], [13, 3]),
                                        ([None], [5])])
@pytest.mark.parametrize("batch", [1, 16, 32, 250])
def test_fused_equals_per_op(make_opt, acts, units, batch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((203, 7))
    y = rng.standard_normal((203, units[-1]))
    a, b = build(acts, units, make_opt()), build(acts, units, make_opt(), fused=False)
    ha = train(a, x, y, epochs=3, batch_size=batch)
    hb = train(b, x, y, epochs=3, batch_size=batch)
    assert a._fused is not None and b._fused is None
    assert a.fused_reason is None and "fused=False" in b.fused_reason
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)  # same kernels in the same order: same bits
    np.testing.assert_array_equal(ha.history["loss"], hb.history["loss"])
    assert a.optimizer.iterations == b.optimizer.iterations == 3 * -(-203 // batch)


def test_fused_without_bias_and_state_carries_over():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((64, 7)), rng.standard_normal((64, 2))
    a = build(["relu", None], [9, 2], keras.optimizers.Adam(), use_bias=False)
    b = build(["relu", None], [9, 2], keras.optimizers.Adam(), use_bias=False, fused=False)
    for _ in range(3):  # optimizer state persists across fit calls on both paths
        train(a, x, y, epochs=1, batch_size=10)
        train(b, x, y, epochs=1, batch_size=10)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_weights_are_updated_in_place():
    model = build(["relu", None], [8, 1], "adam")
    kernel = model.layers[0].kernel
    before = model.get_weights()[0]
    x, y = np.ones((40, 7)), np.zeros((40, 1))
    model.fit(x, y, epochs=1, verbose=0)
    assert model.layers[0].kernel is kernel  # the trainer wrote into the model's own array
    assert not np.array_equal(kernel, before)
    np.testing.assert_array_equal(model.get_weights()[0], kernel)


def test_unsupported_models_use_the_per_op_path():
    # (an Activation between Dense layers is fused since issue 11, LeakyReLU, softmax and log_softmax too; a
    # loss written in Python is not)
    model = keras.Sequential([keras.layers.Dense(4, input_shape=(3,), activation="softmax"), keras.layers.Dense(1)])
    model.compile("adam", lambda y_true, y_pred: keras.ops.mean(keras.ops.abs(y_pred - y_true)))
    assert "is Python code" in fused.unsupported_reason(model)
    model.fit(np.ones((10, 3)), np.ones(10), verbose=0)
    assert model._fused is None


def test_batch_callbacks_see_every_step():
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, logs["loss"]))

    model = build(["tanh", None], [6, 1], "sgd")
    x, y = np.random.default_rng(2).standard_normal((50, 7)), np.zeros(50)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[Record()])
    assert [b for b, _ in seen] == list(range(7)) * 2
    assert model._fused is not None
    # the running loss a batch hook sees is the mean so far of the epoch's batch losses
    steps = model.last_step_losses
    assert seen[-1][1] == pytest.approx(float(np.dot(steps, [8] * 6 + [2]) / 50), rel=1e-6)


def test_learning_rate_change_between_fits_is_used():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((32, 7)), rng.standard_normal((32, 1))
    a = build([None], [1], keras.optimizers.SGD(0.1))
    b = build([None], [1], keras.optimizers.SGD(0.1), fused=False)
    for m in (a, b):
        train(m, x, y, epochs=1, batch_size=32)
        m.optimizer.learning_rate = 0.0
        train(m, x, y, epochs=1, batch_size=32)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_terminate_on_nan_stops_at_the_bad_step():
    model = build(["relu", None], [4, 1], keras.optimizers.SGD(1e30))
    x = np.random.default_rng(5).standard_normal((64, 7)) * 1e10
    with pytest.warns(RuntimeWarning, match=r"at epoch 1, step \d+ of 8"):
        model.fit(x, np.ones(64), batch_size=8, epochs=3, verbose=0,
                  callbacks=[keras.callbacks.TerminateOnNaN()])
    steps = model.last_step_losses
    assert not np.isfinite(steps[-1]) and np.isfinite(steps[:-1]).all()  # stopped at the first bad step


def test_trainer_rejects_bad_buffers():
    k = fusednn.backends.native("cpu")
    W = np.zeros((3, 2), np.float32)
    spec = {"W": W, "b": None, "act": 1, "A": np.zeros((4, 2), np.float32), "G": np.zeros((4, 2), np.float32),
            "dW": np.zeros((3, 2), np.float32), "db": None}
    opt = keras.optimizers.SGD(0.1).kernel_spec()
    P = keras.optimizers.SGD(0.1).step_params(0, 2)
    with pytest.raises(ValueError, match="kind"):
        k.MlpTrainer([spec], {"kind": 99, "flags": 0}, "mse", 4)
    with pytest.raises(ValueError, match="A has shape"):
        k.MlpTrainer([{**spec, "A": np.zeros((5, 2), np.float32)}], opt, "mse", 4)
    with pytest.raises(ValueError, match="shares memory"):
        k.MlpTrainer([{**spec, "dW": W}], opt, "mse", 4)
    t = k.MlpTrainer([spec], opt, "mse", 4)
    x, y = np.zeros((6, 3), np.float32), np.zeros((6, 2), np.float32)
    losses = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="outside"):
        t.run(x, y, np.array([0, 1, 2, 3, 4, 6]), None, None, losses, 0, 2, 0, step_params=P)
    with pytest.raises(ValueError, match="steps"):
        t.run(x, y, np.arange(6), None, None, losses, 0, 3, 0, step_params=P)
    with pytest.raises(ValueError, match="step_params"):
        t.run(x, y, np.arange(6), None, None, losses, 0, 2, 0)
    with pytest.raises(ValueError, match="step_params has shape"):
        t.run(x, y, np.arange(6), None, None, losses, 0, 2, 0, step_params=P[:1])
    assert t.run(x, y, np.arange(6), None, None, losses, 0, 2, 0, step_params=P) == (2, 2)
