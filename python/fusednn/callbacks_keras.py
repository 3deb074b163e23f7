"""More of Keras 3's callbacks, with its names, arguments and semantics:
:class:`ReduceLROnPlateau`, :class:`LearningRateScheduler`, :class:`CSVLogger`,
:class:`LambdaCallback` and :class:`BackupAndRestore` (re-exported by
:mod:`fusednn.callbacks`).

The learning-rate callbacks read and assign ``model.optimizer.learning_rate``
between epochs; the fused trainer picks the new value up at the start of the next
epoch, so none of them adds per-step Python.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import files
from .callbacks import Callback


def _current_lr(model: Any) -> float:
    return float(np.asarray(model.optimizer.learning_rate))


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` once ``monitor`` has not improved (by
    more than ``min_delta``) for ``patience`` epochs, then wait ``cooldown`` epochs
    before counting again; never below ``min_lr``. Keras' rule: mode 'auto' is 'max'
    only when 'acc' is in the monitored name; each epoch's logs gain
    'learning_rate' (the rate the epoch trained with)."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau got unexpected arguments: {', '.join(kwargs)}")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"Learning rate reduction mode {mode} is unknown, fallback to auto mode.",
                          stacklevel=2)
            mode = "auto"
        self.monitor, self.factor, self.patience, self.verbose = monitor, float(factor), int(patience), verbose
        self.mode, self.min_delta, self.cooldown, self.min_lr = mode, float(min_delta), int(cooldown), float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self._max = self.mode == "max" or (self.mode == "auto" and "acc" in self.monitor)
        self.best = -math.inf if self._max else math.inf
        self.cooldown_counter = self.wait = 0

    def _improves(self, current: float) -> bool:
        return current > self.best + self.min_delta if self._max else current < self.best - self.min_delta

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        logs = logs if logs is not None else {}
        logs["learning_rate"] = _current_lr(self.model)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs)}.", RuntimeWarning, stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(current):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old = _current_lr(self.model)
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)``
    (epoch counted from 0, ``lr`` the current rate; a one-argument ``schedule(epoch)``
    is accepted too, as Keras does). The schedule must return a float; each epoch's
    logs gain 'learning_rate'."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule must be callable, got {type(schedule).__name__}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        try:
            lr = self.schedule(epoch, _current_lr(self.model))
        except TypeError:  # the old one-argument API, as Keras still accepts
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.floating)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {lr}")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(lr)}.")

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = _current_lr(self.model)


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file: columns 'epoch' and the log
    keys sorted (plus 'val_' twins when the first epoch had no validation, as with
    ``validation_freq``; missing values are 'NA'). ``append`` adds to an existing
    file without repeating its header. Rows are flushed as written, so an
    interrupted fit leaves every completed epoch in the file."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), separator, bool(append)
        self.keys: list[str] | None = None
        self.writer: csv.DictWriter | None = None
        self.csv_file: io.TextIOBase | None = None
        self.append_header = True

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8") as f:
                self.append_header = not bool(len(f.readline()))
        elif not self.append:
            self.append_header = True
        self.keys, self.writer = None, None
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        logs = dict(logs or {})
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(k.startswith("val_") for k in self.keys):
                self.keys.extend(["val_" + k for k in self.keys])
        if self.writer is None:
            sep = self.sep

            class Dialect(csv.excel):
                delimiter = sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys], dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self.csv_file.flush()

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if self.csv_file is not None:
            self.csv_file.close()
        self.csv_file, self.writer = None, None


_LAMBDA_HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end", "on_train_batch_end",
                 "on_test_begin", "on_test_end", "on_test_batch_end", "on_predict_begin", "on_predict_end",
                 "on_predict_batch_end")


class LambdaCallback(Callback):
    """A callback made of plain functions, as Keras': ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``,
    ``on_train_batch_end(batch, logs)`` and the other hooks :class:`Callback` has, by
    keyword. Only the hooks given are installed, so a LambdaCallback without a batch
    hook keeps the fused trainer running whole epochs. (``*_batch_begin`` hooks are
    not called by fusednn and are refused.)"""

    def __init__(self, on_epoch_begin: Callable | None = None, on_epoch_end: Callable | None = None,
                 on_train_begin: Callable | None = None, on_train_end: Callable | None = None,
                 on_train_batch_begin: Callable | None = None, on_train_batch_end: Callable | None = None,
                 **kwargs: Callable) -> None:
        super().__init__()
        if on_train_batch_begin is not None:
            raise ValueError("on_train_batch_begin is not supported: fusednn calls on_train_batch_end only")
        given = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end, "on_train_begin": on_train_begin,
                 "on_train_end": on_train_end, "on_train_batch_end": on_train_batch_end, **kwargs}
        for hook, fn in given.items():
            if hook not in _LAMBDA_HOOKS:
                raise ValueError(f"LambdaCallback got unknown hook {hook!r}; known: {', '.join(_LAMBDA_HOOKS)}")
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"{hook} must be callable, got {type(fn).__name__}")
            setattr(self, hook, fn)


class BackupAndRestore(Callback):
    """Resume a ``fit`` that was interrupted (an exception, a killed process) from its
    last completed epoch, as Keras' BackupAndRestore: after every epoch the weights,
    the optimizer state (moments and step count) and the epoch counter go to
    ``backup_dir`` (one file, written whole or not at all through
    :func:`fusednn.files.write_atomically`); a later ``fit`` with the same callback
    on the same model starts at the epoch after the backed-up one with that state.
    A fit that completes deletes the backup (``delete_checkpoint=True``). Only
    ``save_freq='epoch'`` is supported (no mid-epoch resume); ``double_checkpoint``
    keeps the previous backup as well and falls back to it if the latest cannot be read."""

    _LATEST, _PREVIOUS = "latest.backup.npz", "previous.backup.npz"

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str = "epoch", double_checkpoint: bool = False,
                 delete_checkpoint: bool = True) -> None:
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch":
            raise ValueError(f"BackupAndRestore supports only save_freq='epoch', got {save_freq!r} "
                             "(fusednn does not resume in the middle of an epoch)")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq, self.double_checkpoint = save_freq, bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)

    @property
    def _latest(self) -> str:
        return os.path.join(self.backup_dir, self._LATEST)

    @property
    def _previous(self) -> str:
        return os.path.join(self.backup_dir, self._PREVIOUS)

    def _read(self, path: str) -> tuple[int, list[np.ndarray], int, list[np.ndarray]]:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            weights = [z[f"w{i}"] for i in range(meta["n_weights"])]
            state = [z[f"s{i}"] for i in range(meta["n_state"])]
        return int(meta["epoch"]), weights, int(meta["iterations"]), state

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        candidates = [self._latest] + ([self._previous] if self.double_checkpoint else [])
        for path in candidates:
            if not os.path.exists(path):
                continue
            try:
                epoch, weights, iterations, state = self._read(path)
            except (OSError, ValueError, KeyError) as e:
                if path == candidates[-1]:
                    raise ValueError(f"BackupAndRestore cannot read its backup {path!r}: {e}") from None
                continue
            self.model.set_weights(weights)
            self.model.optimizer.set_state(iterations, state)
            self.model.set_initial_epoch(epoch)
            return

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        weights = self.model.get_weights()
        iterations, state = self.model.optimizer.get_state()
        meta = {"epoch": epoch + 1, "iterations": int(iterations), "n_weights": len(weights), "n_state": len(state)}
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
        arrays.update({f"w{i}": w for i, w in enumerate(weights)})
        arrays.update({f"s{i}": s for i, s in enumerate(state)})
        if self.double_checkpoint and os.path.exists(self._latest):
            os.replace(self._latest, self._previous)
        files.write_atomically(self._latest, lambda f: np.savez(f, **arrays))

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        # only this callback's files go (Keras removes the whole directory)
        if self.delete_checkpoint:
            for path in (self._latest, self._previous):
                if os.path.exists(path):
                    os.remove(path)
            with contextlib.suppress(OSError):  # kept when the user put other files there
                os.rmdir(self.backup_dir)
