"""Custom losses and metrics written with keras.ops: a loss function ``fn(y_true, y_pred)`` and a
``keras.losses.Loss`` subclass with ``call`` train like the built-in loss they re-implement
(gradients from fusednn.autodiff, per-op path with the reason named); saving finds registered
functions and never runs code; metric functions and ``keras.metrics.Metric`` subclasses are
reported per epoch under their names with Keras' averaging."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import keras
from fusednn.keras import ops


@pytest.fixture(autouse=True)
def _seeded():
    """Deterministic initial weights: the comparisons with the built-in layers run at fixed points
    (a pre-activation within rounding of relu's kink could otherwise differ between the two paths)."""
    keras.utils.set_random_seed(1234)


def _data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x @ rng.standard_normal((4, 2)) + 0.3).astype(np.float32)
    return x, y


def _model(units=2):
    return keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(units)])


def my_mse(y_true, y_pred):
    return ops.mean(ops.square(y_pred - y_true), axis=-1)


class MyMSE(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)


def _train(loss, x, y, weights=None, **fit):
    m = _model(y.shape[1])
    if weights is not None:
        m.set_weights(weights)
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    h = m.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, **fit)
    return m, h


@pytest.mark.parametrize("loss", [my_mse, MyMSE()], ids=["function", "Loss subclass"])
def test_custom_mse_trains_like_builtin_mse(loss, host_backend_name):
    x, y = _data()
    init = _model().get_weights()
    ref, h_ref = _train("mse", x, y, init)
    mine, h_mine = _train(loss, x, y, init)
    np.testing.assert_allclose(h_mine.history["loss"], h_ref.history["loss"], rtol=1e-5)
    for a, b in zip(mine.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert mine.evaluate(x, y, verbose=0) == pytest.approx(ref.evaluate(x, y, verbose=0), rel=1e-5)
    if host_backend_name == "cpu":
        assert "custom loss" in mine.fused_reason
        name = "my_mse" if loss is my_mse else "MyMSE"
        assert name in mine.fused_reason


def test_custom_loss_gradient_is_autodiff_of_the_function():
    """The gradient handed to backward equals d mean(fn)/d pred in float64 (finite differences)."""
    wrapped = keras.losses.get(lambda t, p: ops.mean(ops.where(t - p > 0, 2.0 * ops.square(t - p),
                                                               ops.abs(t - p)), axis=-1))
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    from fusednn.backends import get_backend

    be = get_backend()
    out = np.empty_like(pred)
    wrapped.gradient(be, pred, target, out)

    def value(p):
        v = np.zeros(1)
        wrapped.value(be, p, target, v)
        return v[0]

    num = np.zeros_like(pred)
    for j in np.ndindex(pred.shape):
        up, down = pred.copy(), pred.copy()
        up[j] += 1e-6
        down[j] -= 1e-6
        num[j] = (value(up) - value(down)) / 2e-6
    np.testing.assert_allclose(out, num, rtol=1e-6, atol=1e-9)


def test_loss_reduction_sum_and_sample_weights():
    class SumLoss(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return ops.square(y_true - y_pred)

    x, y = _data(32)
    m = _model()
    m.compile(optimizer="sgd", loss=SumLoss(reduction="sum"))
    pred = m.predict(x, verbose=0)
    assert m.evaluate(x, y, batch_size=32, verbose=0) == pytest.approx(float(((pred - y) ** 2).sum()), rel=1e-5)
    with pytest.raises(ValueError, match="cannot be trained on"):
        SumLoss(reduction="none")
    w = np.linspace(0.0, 2.0, 32).astype(np.float32)
    m.compile(optimizer="sgd", loss=my_mse)
    got = m.evaluate(x, y, sample_weight=w, batch_size=32, verbose=0)
    assert got == pytest.approx(float((w * ((pred - y) ** 2).mean(1)).sum() / 32), rel=1e-5)


def test_custom_loss_save_load(tmp_path):
    x, y = _data(32)

    def unregistered_loss(y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred), axis=-1)

    m, _ = _train(unregistered_loss, x, y)
    path = str(tmp_path / "m.npz")
    m.save(path)
    with pytest.raises(ValueError, match="unregistered_loss"):
        keras.models.load_model(path)
    loaded = keras.models.load_model(path, custom_objects={"unregistered_loss": unregistered_loss})
    assert loaded.loss.loss_fn is unregistered_loss
    registered = keras.saving.register_keras_serializable(package="t")(unregistered_loss)
    assert keras.models.load_model(path).loss.loss_fn is registered  # found by its bare name


def test_loss_written_with_numpy_is_refused_by_name():
    def numpy_loss(y_true, y_pred):
        return np.mean(np.square(y_true - y_pred))

    m = _model()
    m.compile(optimizer="sgd", loss=numpy_loss)
    x, y = _data(16)
    with pytest.raises(TypeError, match="keras.ops"):
        m.fit(x, y, verbose=0)


def test_metric_function_history_matches_numpy():
    def abs_error(y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred), axis=-1)

    def batch_max(y_true, y_pred):  # one value per batch: Keras counts it once
        return ops.max(ops.abs(y_true - y_pred))

    x, y = _data(50)
    m = _model()
    m.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", metrics=[abs_error, batch_max])
    h = m.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, validation_data=(x[:20], y[:20]))
    assert set(h.history) == {"loss", "abs_error", "batch_max", "val_loss", "val_abs_error", "val_batch_max"}
    err = np.abs(m.predict(x, verbose=0).astype(np.float64) - y)
    np.testing.assert_allclose(h.history["abs_error"], [err.mean()] * 2, rtol=1e-5)
    np.testing.assert_allclose(h.history["batch_max"], [(err[:32].max() + err[32:].max()) / 2] * 2, rtol=1e-5)
    np.testing.assert_allclose(h.history["val_abs_error"], [err[:20].mean()] * 2, rtol=1e-5)
    res = m.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert res["abs_error"] == pytest.approx(err.mean(), rel=1e-5)


def test_metric_subclass():
    class CountBig(keras.metrics.Metric):
        def __init__(self, threshold=0.5, name="count_big", **kwargs):
            super().__init__(name=name, **kwargs)
            self.threshold = threshold
            self.big = self.add_variable(shape=(), initializer="zeros", name="big")
            self.seen = self.add_weight(shape=(), initializer="zeros", name="seen")

        def update_state(self, y_true, y_pred, sample_weight=None):
            big = ops.cast(ops.abs(y_true - y_pred) > self.threshold, self.dtype)
            self.big.assign(self.big + ops.sum(big))
            self.seen.assign(self.seen + ops.cast(ops.size(big), self.dtype))

        def result(self):
            return self.big / self.seen

    x, y = _data(40)
    m = _model()
    metric = CountBig()
    m.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", metrics=[metric])
    h = m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    frac = float((np.abs(m.predict(x, verbose=0) - y) > 0.5).mean())
    assert h.history["count_big"] == pytest.approx([frac, frac], rel=1e-6)
    assert float(metric.seen.numpy()) == 40 * 2  # reset at each epoch: one epoch's values
    metric.reset_state()
    assert float(metric.big.numpy()) == 0.0
    assert float(metric(y[:4], y[:4] + 1.0)) == 1.0  # update_state then result


def test_custom_sparse_loss_takes_class_indices_as_given():
    def my_scce(y_true, y_pred):
        return ops.sparse_categorical_crossentropy(y_true, y_pred)

    rng = np.random.default_rng(5)
    x = rng.standard_normal((90, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    hist = []
    for loss in (my_scce, "sparse_categorical_crossentropy"):
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3, activation="softmax")])
        m.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
        hist.append(m.fit(x, y, epochs=3, shuffle=False, verbose=0).history)
    np.testing.assert_allclose(hist[0]["loss"], hist[1]["loss"], rtol=1e-5)
    assert hist[0]["accuracy"] == hist[1]["accuracy"]


class ScaledAbs(keras.losses.Loss):
    def __init__(self, scale=2.0, name="scaled_abs", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = scale

    def call(self, y_true, y_pred):
        return self.scale * ops.mean(ops.abs(y_true - y_pred), axis=-1)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "name": self.name}


def test_loss_subclass_config_save_and_load(tmp_path):
    x, y = _data(32)
    m, _ = _train(ScaledAbs(scale=3.0), x, y)
    path = str(tmp_path / "m.npz")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is ScaledAbs and loaded.loss.scale == 3.0 and loaded.loss.name == "scaled_abs"
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(m.evaluate(x, y, verbose=0), rel=1e-6)
    want = 3.0 * np.abs(m.predict(x, verbose=0).astype(np.float64) - y).mean()
    assert m.evaluate(x, y, batch_size=32, verbose=0) == pytest.approx(want, rel=1e-5)

    class NoConfig(keras.losses.Loss):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def call(self, y_true, y_pred):
            return ops.abs(y_true - y_pred) * self.scale

    m.compile(optimizer="sgd", loss=NoConfig(2.0))
    with pytest.raises(NotImplementedError, match="get_config"):
        m.save(str(tmp_path / "n.npz"))
