"""Keras 3 callbacks over real short fits: ReduceLROnPlateau, LearningRateScheduler,
CSVLogger, LambdaCallback, BackupAndRestore (resume after a crash in a callback)."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from fusednn import keras


def model_and_data(lr=0.01, n=40, opt="sgd", seed=0):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 3)), rng.standard_normal((n, 1))
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Dense(4, activation="tanh", input_shape=(3,)), keras.layers.Dense(1)])
    o = {"sgd": lambda: keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
         "plain": lambda: keras.optimizers.SGD(learning_rate=lr),
         "adam": lambda: keras.optimizers.Adam(lr)}[opt]()
    model.compile(optimizer=o, loss="mse")
    return model, x, y


class Scripted(keras.callbacks.Callback):
    """Overwrites logs[key] with a scripted value per epoch (callbacks after it see it)."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


def reduce_lr_reference(values, lr, factor, patience, cooldown, min_delta, min_lr):
    """Keras 3's ReduceLROnPlateau rule (mode min), the learning rate of each epoch."""
    best, wait, cool, out = np.inf, 0, 0, []
    for v in values:
        out.append(lr)
        if cool > 0:
            cool -= 1
            wait = 0
        if v < best - min_delta:
            best, wait = v, 0
        elif cool <= 0:
            wait += 1
            if wait >= patience and lr > np.float32(min_lr):
                lr, cool, wait = max(lr * factor, min_lr), cooldown, 0
    return out


def test_reduce_lr_on_plateau_follows_keras_rule(backend_name):
    values = [1.0, 0.9, 0.9, 0.95, 0.9, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.96]
    model, x, y = model_and_data(lr=0.1)
    cb = keras.callbacks.ReduceLROnPlateau(monitor="m", factor=0.5, patience=2, cooldown=1, min_delta=0.01,
                                           min_lr=0.02)
    h = model.fit(x, y, epochs=len(values), callbacks=[Scripted("m", values), cb], verbose=0)
    want = reduce_lr_reference(values, 0.1, 0.5, 2, 1, 0.01, 0.02)
    np.testing.assert_allclose(h.history["learning_rate"], want, rtol=1e-6)
    assert min(want) == pytest.approx(0.02) and len(set(want)) > 2
    assert model.optimizer.learning_rate == pytest.approx(0.02)


def test_lr_changes_take_effect_in_training(backend_name):
    """A learning rate set by a callback is the one the next epoch trains with: 0
    freezes the weights (fused and per-op; plain SGD, as momentum moves them on)."""
    model, x, y = model_and_data(opt="plain")
    frozen = [model.get_weights()]
    sched = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.0 if epoch >= 1 else lr)
    rec = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: frozen.append(model.get_weights()))
    h = model.fit(x, y, epochs=3, callbacks=[sched, rec], verbose=0)
    assert h.history["learning_rate"] == [pytest.approx(0.01), 0.0, 0.0]
    for a, b, c in zip(frozen[1], frozen[2], frozen[3]):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not any(np.array_equal(a, b) for a, b in zip(frozen[0], frozen[1]))


def test_learning_rate_scheduler_forms():
    model, x, y = model_and_data()
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return lr * 0.5

    h = model.fit(x, y, epochs=3, callbacks=[keras.callbacks.LearningRateScheduler(schedule)], verbose=0)
    assert [e for e, _ in seen] == [0, 1, 2]
    np.testing.assert_allclose([lr for _, lr in seen], [0.01, 0.005, 0.0025], rtol=1e-6)
    np.testing.assert_allclose(h.history["learning_rate"], [0.005, 0.0025, 0.00125], rtol=1e-6)
    h = model.fit(x, y, epochs=2, callbacks=[keras.callbacks.LearningRateScheduler(lambda e: 0.1 / (e + 1))],
                  verbose=0)
    np.testing.assert_allclose(h.history["learning_rate"], [0.1, 0.05], rtol=1e-6)
    with pytest.raises(ValueError, match="should be a float"):
        model.fit(x, y, epochs=1, callbacks=[keras.callbacks.LearningRateScheduler(lambda e, lr: "x")],
                  verbose=0)


def test_csv_logger_writes_and_appends(tmp_path):
    model, x, y = model_and_data()
    path = tmp_path / "log.csv"
    h = model.fit(x, y, epochs=2, validation_split=0.25, callbacks=[keras.callbacks.CSVLogger(path)], verbose=0)
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert list(rows[0]) == ["epoch", "loss", "val_loss"]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], h.history["loss"], rtol=1e-12)
    model.fit(x, y, epochs=1, callbacks=[keras.callbacks.CSVLogger(path, separator=";", append=True)], verbose=0)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and lines[0] == "epoch,loss,val_loss"  # no second header
    assert lines[3].startswith("0;") and lines[3].endswith(";NA")  # no validation: NA
    model.fit(x, y, epochs=1, callbacks=[keras.callbacks.CSVLogger(path)], verbose=0)
    assert path.read_text().splitlines()[0] == "epoch,loss,val_loss"  # overwritten, val_ twins added
    assert len(path.read_text().splitlines()) == 2


def test_lambda_callback_hooks_and_errors():
    model, x, y = model_and_data()
    calls = []
    cb = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                                        on_epoch_end=lambda epoch, logs: calls.append((epoch, sorted(logs))),
                                        on_train_batch_end=lambda batch, logs: calls.append(round(logs["loss"], 3)),
                                        on_train_end=lambda logs: calls.append("end"))
    model.fit(x, y, batch_size=20, epochs=1, callbacks=[cb], verbose=0)
    assert calls[0] == "begin" and calls[-1] == "end" and calls[3] == (0, ["loss"])
    assert all(isinstance(c, float) for c in calls[1:3])
    with pytest.raises(ValueError, match="unknown hook"):
        keras.callbacks.LambdaCallback(on_epoch_ends=print)
    with pytest.raises(TypeError, match="callable"):
        keras.callbacks.LambdaCallback(on_epoch_end=3)
    # without a batch hook the fused path keeps whole-epoch chunks
    assert not keras.callbacks.CallbackList([keras.callbacks.LambdaCallback(on_epoch_end=print)], None,
                                            {}).wants("on_train_batch_end")


class Crash(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_backup_and_restore_resumes_where_it_crashed(tmp_path, opt, backend_name):
    """A fit that crashes after epoch 2 (of 5) and is rerun with the same
    BackupAndRestore ends with the same weights, optimizer state and history as an
    uninterrupted fit (no shuffling, so the epochs see the same batches)."""
    model, x, y = model_and_data(opt=opt, lr=0.05)
    full = model.fit(x, y, batch_size=8, epochs=5, shuffle=False, verbose=0)
    want_w, (want_it, want_state) = model.get_weights(), model.optimizer.get_state()

    model, x, y = model_and_data(opt=opt, lr=0.05)
    backup = keras.callbacks.BackupAndRestore(tmp_path / "bk")
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.fit(x, y, batch_size=8, epochs=5, shuffle=False, verbose=0, callbacks=[backup, Crash(2)])
    assert os.path.exists(tmp_path / "bk" / "latest.backup.npz")
    model, x, y = model_and_data(opt=opt, lr=0.05, seed=9)  # a fresh process: other initial weights
    h = model.fit(x, y, batch_size=8, epochs=5, shuffle=False, verbose=0, callbacks=[backup])
    assert h.epoch == [3, 4]
    np.testing.assert_allclose(h.history["loss"], full.history["loss"][3:], rtol=1e-5)
    for a, b in zip(model.get_weights(), want_w):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    it, state = model.optimizer.get_state()
    assert it == want_it
    for a, b in zip(state, want_state):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not os.path.exists(tmp_path / "bk")  # a completed fit deletes its backup


def test_backup_and_restore_arguments(tmp_path):
    with pytest.raises(ValueError, match="save_freq"):
        keras.callbacks.BackupAndRestore(tmp_path, save_freq=10)
    with pytest.raises(ValueError, match="Empty"):
        keras.callbacks.BackupAndRestore("")
    model, x, y = model_and_data()
    bk = tmp_path / "keep"
    bk.mkdir()
    (bk / "mine.txt").write_text("x")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(bk, double_checkpoint=True)])
    assert sorted(os.listdir(bk)) == ["mine.txt"]  # only its own files go
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[keras.callbacks.BackupAndRestore(bk, delete_checkpoint=False), Crash(5)])
    assert sorted(os.listdir(bk)) == ["latest.backup.npz", "mine.txt"]
    (bk / "latest.backup.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read its backup"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(bk)])


def test_reduce_lr_arguments():
    with pytest.raises(ValueError, match="factor"):
        keras.callbacks.ReduceLROnPlateau(factor=1.0)
    with pytest.warns(UserWarning, match="unknown"):
        cb = keras.callbacks.ReduceLROnPlateau(mode="bad")
    assert cb.mode == "auto"
