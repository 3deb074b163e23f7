"""Callbacks with Keras' names and hooks, and the tqdm progress display.

``fit`` calls ``on_train_begin``, ``on_epoch_begin``, ``on_train_batch_end``,
``on_epoch_end`` and ``on_train_end``; ``evaluate`` and ``predict`` call the
``on_test_*`` and ``on_predict_*`` hooks. Losses stay on the device during an
epoch: the ``logs`` a batch hook receives read the running loss only when a
callback asks for ``logs['loss']`` (one device read), and the batch hook is
only wired up at all when some callback overrides it.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from tqdm import tqdm

from . import files
from .distribution import state as distribution_state


class Callback:
    """Base class: override the hooks you need. ``self.model`` is the model being
    trained and ``self.params`` holds 'epochs', 'steps' and 'verbose'."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        """Called once before the first epoch of ``fit``."""

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        """Called once when ``fit`` ends, with the last epoch's logs."""

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        """Called before epoch ``epoch`` (counted from 0)."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        """Called after each epoch with 'loss' (and 'val_loss' when validating)."""

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        """Called after each training step; ``logs['loss']`` is the epoch's running loss."""

    def on_test_begin(self, logs: Mapping[str, float] | None = None) -> None:
        """Called when ``evaluate`` starts."""

    def on_test_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        """Called after each batch of ``evaluate``."""

    def on_test_end(self, logs: Mapping[str, float] | None = None) -> None:
        """Called when ``evaluate`` ends, with its 'loss'."""

    def on_predict_begin(self, logs: Mapping[str, float] | None = None) -> None:
        """Called when ``predict`` starts."""

    def on_predict_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        """Called after each batch of ``predict``."""

    def on_predict_end(self, logs: Mapping[str, float] | None = None) -> None:
        """Called when ``predict`` ends."""


class BatchLogs(Mapping):
    """The logs of a batch hook: ``{'loss': running loss}``, read from the device
    only when (and the first time) a callback looks at it."""

    def __init__(self, read_loss: Callable[[], float]) -> None:
        self._read, self._loss = read_loss, None

    def __getitem__(self, key: str) -> float:
        if key != "loss":
            raise KeyError(key)
        if self._loss is None:
            self._loss = self._read()
        return self._loss

    def __iter__(self) -> Iterator[str]:
        return iter(("loss",))

    def __len__(self) -> int:
        return 1


def overrides(cb: Callback, hook: str) -> bool:
    """Whether ``cb`` does something in ``hook``: its class overrides it, or it was set
    on the instance (as :class:`LambdaCallback` does)."""
    return hook in vars(cb) or getattr(type(cb), hook) is not getattr(Callback, hook)


class CallbackList:
    """Calls a hook on every callback in order; knows whether any overrides a hook,
    so that the model wires per-batch work only where it is wanted."""

    def __init__(self, callbacks: list[Callback], model: Any, params: dict[str, Any]) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
            cb.set_model(model)
            cb.set_params(params)

    def wants(self, hook: str) -> bool:
        """Whether any callback overrides ``hook`` (so the caller must produce its logs)."""
        return any(overrides(cb, hook) for cb in self.callbacks)

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook(*args)`` on every callback, in order."""
        for cb in self.callbacks:
            getattr(cb, hook)(*args)


class History(Callback):
    """Records the logs of every epoch: ``history['loss']``, ``history['val_loss']``;
    ``epoch`` lists the epoch numbers. ``fit`` returns it."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs (Keras' rule and defaults). ``mode`` 'min', 'max' or 'auto'
    (max for accuracy-like names); with ``baseline``, the wait is only reset by
    values better than it; with ``restore_best_weights``, the weights of the best
    epoch are put back when training ends. Epochs before ``start_from_epoch`` are ignored."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0) -> None:
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'auto', 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.baseline, self.restore_best_weights = baseline, bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        if mode == "auto":
            mode = "max" if "acc" in monitor or monitor.endswith("auc") else "min"
        self._sign = 1.0 if mode == "max" else -1.0  # compare sign*value: bigger is better
        self.min_delta = abs(float(min_delta))
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best: float | None = None
        self.best_weights: list[np.ndarray] | None = None

    def _improves(self, value: float, reference: float | None) -> bool:
        return reference is None or self._sign * (value - reference) > self.min_delta

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best, self.best_weights = None, None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"EarlyStopping monitors {self.monitor!r}, which is not in the logs "
                          f"(available: {', '.join(logs or {}) or 'none'}); pass validation data "
                          "or monitor 'loss'", RuntimeWarning, stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0 and distribution_state.is_chief():
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0 and distribution_state.is_chief():
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class TerminateOnNaN(Callback):
    """Stop training, with a RuntimeWarning naming the epoch and step, once the loss
    becomes NaN or infinite. Checked at the end of each epoch from the per-step
    losses (read back once per epoch), so training never waits on the device per
    step; the weights are already non-finite from the reported step on. (On the
    fused CPU path the epoch itself stops at that step, as in Keras.)"""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        steps = self.model.last_step_losses
        step = int(np.argmax(~np.isfinite(steps)))
        total = self.params.get("steps", len(steps))
        warnings.warn(f"loss became {steps[step]} at epoch {epoch + 1}, step {step + 1} of "
                      f"{total}; terminating training", RuntimeWarning, stacklevel=2)
        self.model.stop_training = True


def format_value(v: float) -> str:
    """Keras' number format in progress lines: 4 decimals, or 4-digit mantissa when tiny."""
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 or not math.isfinite(v) else f"{v:.4e}"


def format_logs(logs: Mapping[str, float]) -> str:
    """'loss: 0.0812 - val_loss: 0.0901', as Keras' progress lines show logs."""
    return " - ".join(f"{k}: {format_value(v)}" for k, v in logs.items())


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1e3:.0f}ms"


def _per_step(seconds: float, steps: int) -> str:
    t = seconds / max(steps, 1)
    return f"{t:.2f}s/step" if t >= 1 else f"{t * 1e3:.2f}ms/step" if t >= 1e-3 else f"{t * 1e6:.0f}us/step"


def resolve_verbose(verbose: int | str) -> int:
    """Keras' verbosity: 0 silent, 1 live progress bar, 2 one line per epoch;
    'auto' is 1 on a terminal and 2 otherwise (logs, notebooks piped to files)."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose in (0, 1, 2) and not isinstance(verbose, bool):
        return int(verbose)
    raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")


class ProgbarLogger(Callback):
    """Progress display on stdout. ``verbose=1``: a live tqdm bar per epoch with
    steps, elapsed time, time per step and the running loss (refreshed at most
    ten times a second, so reading the loss never slows training down);
    ``verbose=2``: one line per epoch, e.g.
    ``Epoch 3/100 - 32/32 - 41ms - 1.28ms/step - loss: 0.0812 - val_loss: 0.0901``."""

    _REFRESH_S = 0.1

    def __init__(self, verbose: int = 1) -> None:
        super().__init__()
        self.verbose = verbose
        self._bar = None
        self._t0 = self._last = 0.0

    # ---- shared by training, evaluate and predict ------------------------------
    def _begin(self, desc: str, total: int) -> None:
        self._t0 = self._last = time.perf_counter()
        if self.verbose == 1:
            self._bar = tqdm(total=total, desc=desc, unit="step", file=sys.stdout, leave=True,
                             bar_format="{desc}: {n_fmt}/{total_fmt} |{bar:20}| {elapsed}{postfix}")

    def _step(self, logs: Mapping[str, float] | None) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        now = time.perf_counter()
        if logs is not None and (now - self._last >= self._REFRESH_S or self._bar.n == self._bar.total):
            self._last = now
            self._bar.set_postfix_str(f"{_per_step(now - self._t0, self._bar.n)}, {format_logs(logs)}",
                                      refresh=False)

    def _end(self, desc: str, steps: int, logs: Mapping[str, float]) -> None:
        elapsed = time.perf_counter() - self._t0
        tail = " - ".join(s for s in (_per_step(elapsed, steps), format_logs(logs)) if s)
        if self._bar is not None:
            self._bar.set_postfix_str(tail, refresh=False)
            self._bar.close()
            self._bar = None
        elif self.verbose == 2:
            prefix = f"{desc} - " if desc else ""
            print(f"{prefix}{steps}/{steps} - {_duration(elapsed)} - {tail}", flush=True)

    # ---- hooks -----------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._begin(f"Epoch {epoch + 1}/{self.params['epochs']}", self.params["steps"])

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._step(logs)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._end(f"Epoch {epoch + 1}/{self.params['epochs']}", self.params["steps"], logs or {})

    def on_test_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._begin("evaluate", self.params["steps"])

    def on_test_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._step(logs)

    def on_test_end(self, logs: Mapping[str, float] | None = None) -> None:
        self._end("", self.params["steps"], logs or {})

    def on_predict_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._begin("predict", self.params["steps"])

    def on_predict_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._step(logs)

    def on_predict_end(self, logs: Mapping[str, float] | None = None) -> None:
        self._end("", self.params["steps"], {})


class ModelCheckpoint(Callback):
    """Save the model (or, with ``save_weights_only``, its weights) after each epoch,
    as Keras' ModelCheckpoint: ``filepath`` may hold ``{epoch}`` (counted from 1) and
    log values, e.g. ``"ckpt-{epoch:02d}-{val_loss:.4f}.npz"``. With
    ``save_best_only`` it saves only when ``monitor`` improved on the best value seen
    (lower for ``mode='min'``, higher for 'max'; 'auto' is max for accuracy-like
    names: acc, auc, precision, recall, f1); ``verbose=1`` prints what it did. Each
    file is written whole or not at all (see :mod:`fusednn.saving`)."""

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto") -> None:
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ModelCheckpoint mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = bool(save_best_only), bool(save_weights_only)
        if mode == "auto":
            name = monitor.lower()
            higher = "acc" in name or name.endswith(("auc", "precision", "recall", "f1"))
            mode = "max" if higher else "min"
        self.mode = mode
        self.best = -math.inf if mode == "max" else math.inf

    def _path(self, epoch: int, logs: Mapping[str, float]) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise KeyError(f"ModelCheckpoint filepath {self.filepath!r} names {e}, which is not in the logs "
                           f"(available: epoch, {', '.join(logs)})") from None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if not distribution_state.is_chief():  # data parallelism: rank 0 alone writes
            return
        logs = dict(logs or {})
        path = self._path(epoch, logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"ModelCheckpoint monitors {self.monitor!r}, which is not in the logs "
                              f"(available: {', '.join(logs) or 'none'}); skipping", RuntimeWarning, stacklevel=2)
                return
            better = current > self.best if self.mode == "max" else current < self.best
            if not better:
                if self.verbose > 0:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)



# ---- Keras 3's learning-rate, logging, lambda and backup callbacks -----------------
# The learning-rate callbacks read and assign ``model.optimizer.learning_rate`` between
# epochs; the fused trainer picks the new value up at the start of the next epoch, so
# none of them adds per-step Python.

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
