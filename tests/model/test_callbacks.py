"""Callbacks: hook order, EarlyStopping (Keras' rules), TerminateOnNaN, progress output."""
from __future__ import annotations

import re

import numpy as np
import pytest

from fusednn import keras

from model_refs import mse64, forward64


def model_and_data(lr=0.01, n=40):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 3)), rng.standard_normal((n, 1))
    model = keras.Sequential([keras.layers.Dense(4, activation="tanh", input_shape=(3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    return model, x, y


class Scripted(keras.callbacks.Callback):
    """Puts a scripted value under ``key`` in each epoch's logs (callbacks after it see
    it) and records the weights at each epoch end."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values, self.weights = key, values, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.get_weights())


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls, self.batch_losses = [], []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_train_batch_end(self, batch, logs=None):
        self.batch_losses.append(logs["loss"])

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_hooks_order_and_running_batch_loss(backend_name):
    model, x, y = model_and_data(lr=0.0)
    rec = Recorder()
    history = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, callbacks=[rec], verbose=0)
    assert rec.calls == ["train_begin", "epoch_begin 0", "epoch_end 0 ['loss', 'val_loss']",
                         "epoch_begin 1", "epoch_end 1 ['loss', 'val_loss']", "train_end"]
    assert rec.params == {"epochs": 2, "steps": 2, "verbose": 0} and rec.model is model
    # 32 training samples in batches of 16: 2 steps per epoch; the running loss after
    # the last step of an epoch is that epoch's loss
    assert len(rec.batch_losses) == 4
    assert rec.batch_losses[1] == pytest.approx(history.history["loss"][0], rel=1e-6)
    ref = mse64(forward64(model.get_weights(), ["tanh", "linear"], x[:32]), y[:32])
    assert rec.batch_losses[3] == pytest.approx(ref, rel=1e-5)


def test_early_stopping_patience_and_restore_best_weights(backend_name):
    model, x, y = model_and_data()
    script = Scripted("score", [3.0, 1.0, 2.0, 2.5, 0.5, 0.1, 0.1, 0.1])
    stop = keras.callbacks.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=8, callbacks=[script, stop], verbose=0)
    # best at epoch 1; epochs 2 and 3 do not improve: stop after epoch 3
    assert history.epoch == [0, 1, 2, 3] and stop.stopped_epoch == 3 and stop.best_epoch == 1
    for got, best in zip(model.get_weights(), script.weights[1]):
        np.testing.assert_array_equal(got, best)
    assert not np.array_equal(script.weights[1][0], script.weights[3][0])


def test_early_stopping_min_delta_baseline_and_max_mode(backend_name):
    model, x, y = model_and_data()
    values = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75]
    stop = keras.callbacks.EarlyStopping(monitor="score", min_delta=0.1, patience=1)
    assert model.fit(x, y, epochs=6, callbacks=[Scripted("score", values), stop], verbose=0).epoch == [0, 1]
    # the wait only resets on values better than the baseline (as in Keras, an
    # improving epoch never stops training, but the wait it leaves counts later)
    values = [3.0, 1.0, 2.0, 2.5, 2.5, 2.5]
    stop = keras.callbacks.EarlyStopping(monitor="score", patience=2, baseline=0.5)
    assert model.fit(x, y, epochs=6, callbacks=[Scripted("score", values), stop], verbose=0).epoch == [0, 1, 2]
    stop = keras.callbacks.EarlyStopping(monitor="score", patience=2)
    assert model.fit(x, y, epochs=6, callbacks=[Scripted("score", values), stop], verbose=0).epoch == [0, 1, 2, 3]
    # 'auto' is 'max' for accuracy-like names: rising values keep training going
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=0)
    h = model.fit(x, y, epochs=4, callbacks=[Scripted("val_accuracy", [0.1, 0.2, 0.3, 0.2]), stop], verbose=0)
    assert h.epoch == [0, 1, 2, 3] and stop.stopped_epoch == 3


def test_early_stopping_on_val_loss_and_missing_monitor(backend_name):
    model, x, y = model_and_data(lr=0.0)  # val_loss never improves after epoch 0
    stop = keras.callbacks.EarlyStopping(patience=1)
    assert model.fit(x, y, epochs=5, validation_split=0.25, callbacks=[stop], verbose=0).epoch == [0, 1]
    with pytest.warns(RuntimeWarning, match="val_loss.*not in the logs"):
        h = model.fit(x, y, epochs=2, callbacks=[keras.callbacks.EarlyStopping()], verbose=0)
    assert h.epoch == [0, 1]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_terminate_on_nan_names_epoch_and_step(backend_name):
    model, x, y = model_and_data(lr=1.0)
    w = model.get_weights()
    model.set_weights([w[0], w[1], np.full_like(w[2], 1e30), w[3]])  # predictions overflow float32
    with pytest.warns(RuntimeWarning, match=r"loss became (inf|nan) at epoch 1, step 1 of 3"):
        history = model.fit(x, y, batch_size=16, epochs=5, callbacks=[keras.callbacks.TerminateOnNaN()],
                            verbose=0)
    assert history.epoch == [0] and not np.isfinite(history.history["loss"][0])


def test_verbose_2_prints_one_keras_line_per_epoch(capsys, host_backend_name):
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    pattern = r"Epoch {}/2 - 2/2 - \d+m?s - [\d.]+[mu]?s/step - loss: \d+\.\d{{4}} - val_loss: \d+\.\d{{4}}"
    for i, line in enumerate(lines):
        assert re.fullmatch(pattern.format(i + 1), line), line


def test_verbose_auto_is_per_epoch_lines_off_a_terminal(capsys):
    model, x, y = model_and_data()
    model.fit(x, y, epochs=3)
    out = capsys.readouterr().out
    assert out.count("\n") == 3 and "Epoch 3/3 - 2/2" in out
    model.evaluate(x, y)
    assert re.fullmatch(r"2/2 - \d+m?s - .*loss: \d+\.\d{4}\n", capsys.readouterr().out)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_verbose_1_draws_a_tqdm_bar(capsys):
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=1)
    out = capsys.readouterr().out
    final = [s for s in out.replace("\r", "\n").splitlines() if s.startswith("Epoch 2/2: 5/5")]
    assert final and "loss: " in final[-1] and "/step" in final[-1]


def test_callbacks_must_be_callbacks():
    model, x, y = model_and_data()
    with pytest.raises(TypeError, match="Callback"):
        model.fit(x, y, callbacks=[lambda *a: None], verbose=0)
