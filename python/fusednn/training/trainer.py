"""The training engine of a model, Keras' ``Trainer``: compile / fit / evaluate / predict.

:class:`Trainer` is a mixin: a model class (``Sequential``, later a functional
``Model``) inherits it and provides the structure (``layers``, ``build``,
``backend``, ``input_shape``, ``output_shape``, ``weights``, ``gradients``,
``output_activation``) through its public API. The trainer runs on the backend the
model was built on, through the layers, loss and optimizer; the same code runs on
numpy, cpu and cuda. Training data goes to the device once per ``fit`` when it
fits there (else one batch at a time); each step then reuses buffers made for its
batch size, so nothing is allocated after the first batch; the per-step losses
are written to a device buffer and read back once per epoch, so the host never
waits per step. Whole epochs go to a backend's fused native trainer when the
model allows it (:mod:`.fused`).
"""
from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import losses, metrics as metrics_module, optimizers
from ..backends import Backend, get_backend
from ..callbacks import (BatchLogs, Callback, CallbackList, History, ProgbarLogger, TerminateOnNaN, overrides,
                         close_progress_bars, resolve_verbose)
from ..distribution import state as distribution_state
from ..layers import Buffers, Layer
from ..utils import rng
from . import concurrency, datasets, fused, inputs, sample_weights
from .epoch_metrics import EpochMetrics

# Buffer sets kept per model: the training batch size, its remainder, and a few
# for evaluate/predict; beyond that the oldest ones are dropped.
_MAX_WORKSPACES = 6


def _weighted_mean(step_losses: np.ndarray, batch_size: int, n: int) -> float:
    """Keras' epoch loss: the mean of batch losses weighted by batch size, where the
    batches cover ``n`` samples and only the last may be smaller."""
    k = len(step_losses)
    sizes = np.full(k, batch_size, dtype=np.float64)
    sizes[-1] = n - (k - 1) * batch_size
    return float(np.dot(np.asarray(step_losses, dtype=np.float64), sizes) / n)


def _gather(xp: Any, src: Any, idx: Any, out: Any) -> None:
    """out = src[idx] without a temporary (NumPy's default mode='raise' makes one;
    the indices come from a permutation, so they are in range)."""
    if xp is np:
        np.take(src, idx, axis=0, out=out, mode="clip")
    else:
        xp.take(src, idx, axis=0, out=out)


def _batch_logs(loss: float, tracker: EpochMetrics | None, return_dict: bool) -> float | list[float] | dict[str, float]:
    """Keras' value of train/test_on_batch: ``{"loss", *metrics}``, or its values in order
    (a bare float when there are no metrics)."""
    logs = {"loss": float(loss), **({k: float(v) for k, v in tracker.result().items()} if tracker else {})}
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


class _Workspace:
    """The buffers of one batch size: each layer's :class:`Buffers` and the loss gradient."""

    __slots__ = ("layers", "dpred", "batch_x", "batch_y")

    def __init__(self, layers: list[Layer], batch: int) -> None:
        self.layers: list[Buffers] = [layer.make_buffers(batch) for layer in layers]
        self.dpred: Any = None
        self.batch_x: Any = None  # the training batch, gathered from the (shuffled) data
        self.batch_y: Any = None



def _positive_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
    return int(value)


def _validation_schedule(validation_freq: Any) -> Callable[[int], bool]:
    """Keras' ``validation_freq``: an int k validates after every k-th epoch (counted
    from 1), a collection of ints after the epochs it lists."""
    if isinstance(validation_freq, (int, np.integer)) and not isinstance(validation_freq, bool):
        if validation_freq < 1:
            raise ValueError(f"validation_freq must be >= 1, got {validation_freq}")
        k = int(validation_freq)
        return lambda epoch: (epoch + 1) % k == 0
    try:
        listed = {int(e) for e in validation_freq}
    except (TypeError, ValueError):
        raise ValueError(f"validation_freq must be an integer or a list of epochs, got {validation_freq!r}") from None
    return lambda epoch: (epoch + 1) in listed


def _fit_guard(method: Callable) -> Callable:
    """``fit`` run as one user of the model (see :mod:`fusednn.training.concurrency`):
    not beside inference or another fit in other threads, Ctrl-C deferred to step
    boundaries, progress bars closed and the fused trainer's data copy dropped when an
    exception (KeyboardInterrupt included) ends it."""
    @functools.wraps(method)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._guard.fitting(self.name), concurrency.DeferredInterrupt():
            try:
                return method(self, *args, **kwargs)
            except BaseException:
                close_progress_bars()
                if self._fused is not None:
                    self._fused.forget_data()
                raise
    return fit


def _inference_guard(what: str) -> Callable[[Callable], Callable]:
    """``predict``/``evaluate``: any number at once in any threads (per-thread buffers),
    not in another thread than a running fit; progress bars closed on an exception."""
    def deco(method: Callable) -> Callable:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            with self._guard.inferring(self.name, what):
                try:
                    return method(self, *args, **kwargs)
                except BaseException:
                    close_progress_bars()
                    raise
        return run
    return deco


class Trainer:
    """Compile / fit / evaluate / predict for a model class that inherits it (see the
    module docstring for what the model provides). Optimizer state persists across
    ``fit`` calls until the next ``compile``."""

    def __init__(self) -> None:
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losses.Loss | None = None
        self.metrics: list[metrics_module.Metric] = []
        self.stop_training = False
        self.history: History | None = None
        #: per-step losses of the last training epoch (host array), e.g. for TerminateOnNaN
        self.last_step_losses: np.ndarray | None = None
        # per thread (concurrency.per_thread): inference may run in several threads at once
        self._workspaces: dict[int, dict[int, _Workspace]] = {}
        self._loss_buffers: dict[int, dict[tuple[str, int], Any]] = {}
        self._guard = concurrency.UseGuard()
        self._fused: fused.FusedTrainer | None = None
        #: compile's ``fused`` switch: "auto", True or False (see :meth:`compile`)
        self.fused_mode: str | bool = "auto"
        self._told_why = False  # the per-op fallback was reported since the last compile
        self._resume_epoch: int | None = None  # set by a callback (BackupAndRestore) in on_train_begin
        #: ids of the layers that were frozen (``trainable=False``) at the last compile: the
        #: optimizer leaves their weights alone (Keras: changing trainable takes effect on compile)
        self.frozen_at_compile: frozenset[int] = frozenset()

    def reset_buffers(self) -> None:
        """Drop the buffers and the fused trainer made for the model as it was: the
        model calls this whenever it is (re)built, since shapes may have changed."""
        self._workspaces.clear()
        self._fused = None

    def _be(self) -> Backend:
        return self.backend or get_backend()

    def _input_features(self) -> int | None:
        return self.input_shape[1] if self.input_shape is not None else None

    # ----------------------------------------------------------------- compile
    def compile(self, optimizer: str | optimizers.Optimizer, loss: str | losses.Loss,
                metrics: Sequence[Any] | None = None, fused: str | bool = "auto") -> None:
        """Choose the optimizer (a Keras name: 'adam', 'sgd', 'rmsprop', 'adamw', ..., or an
        instance), the loss ('mse', 'binary_crossentropy', 'categorical_crossentropy',
        'sparse_categorical_crossentropy' or an instance) and metrics reported by
        fit/evaluate ('accuracy', 'precision', 'recall', 'f1', 'mae', 'mse', Metric instances or callables ``fn(y_true, y_pred)``).
        ``fused`` chooses how ``fit`` trains, as Keras' ``jit_compile``: ``"auto"`` runs
        whole epochs in the backend's native trainer when the model allows it (and, with
        ``verbose``, warns once when a cpu/cuda model cannot), ``True`` does the same but
        always warns, naming the reason, when it cannot, ``False`` always runs the per-op
        path; :attr:`fused_reason` says why a model is not fused. Any previous optimizer
        state is reset."""
        if not (fused is True or fused is False or (isinstance(fused, str) and fused == "auto")):
            raise ValueError(f"fused must be 'auto', True or False, got {fused!r}")
        self.fused_mode = fused
        self._told_why = False
        self.frozen_at_compile = frozenset(id(layer) for layer in self.layers
                                           if not (layer.trainable and getattr(self, "trainable", True)))
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self.metrics = [metrics_module.get(m) for m in (metrics or [])]
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"metric names must be distinct and not 'loss', got {names}")
        if self.built:
            self.optimizer.build(self.backend, self.optimized_weights, self.optimized_weight_names)

    def trained_layers(self) -> list[Layer]:
        """The layers whose weights ``fit`` updates: all but those frozen at compile."""
        return [layer for layer in self.layers if id(layer) not in self.frozen_at_compile]

    @property
    def fused_reason(self) -> str | None:
        """None when ``fit`` trains this model in the backend's fused native trainer, else
        why not (a sentence): ``compile(fused=False)``, not compiled or built yet, or what
        in the model, loss, metrics, optimizer or backend the fused trainer lacks."""
        if self.optimizer is None or self.loss is None:
            return "the model is not compiled"
        if not self.built:
            return "the model is not built yet"
        if self.fused_mode is False:
            return "compile(fused=False) chose the per-op path"
        return fused.unsupported_reason(self)

    def _tell_why_not_fused(self, reason: str | None, verbose: int) -> None:
        """Warn, once per compile, that fit runs the per-op path: always when
        ``compile(fused=True)`` asked for the fused one, and with ``verbose`` under
        ``"auto"`` when the backend has a fused trainer the model cannot use."""
        if reason is None or self._told_why or self.fused_mode is False:
            return
        if self.fused_mode is True:
            message = f"compile(fused=True) cannot be honoured: {reason}; fit runs the per-op path"
        elif verbose and getattr(self.backend, "has_trainer", False):
            message = (f"fit runs the per-op path, not the fused native trainer: {reason} "
                       "(compile(fused=False) makes this choice explicit)")
        else:
            return
        self._told_why = True
        warnings.warn(message, UserWarning, stacklevel=3)

    def _require_compiled(self, what: str) -> None:
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"call compile(optimizer=..., loss=...) before {what}()")

    def _ready_optimizer(self) -> None:
        # Built at compile time unless the model was not built yet (or gained layers since).
        if not self.optimizer.is_built_for(self.backend, self.optimized_weights):
            self.optimizer.build(self.backend, self.optimized_weights, self.optimized_weight_names)

    # -------------------------------------------------------------- data entry
    def _xy(self, x: Any, y: Any, xname: str = "x", yname: str = "y") -> tuple[Any, Any]:
        """Checked float32 (x, y); builds the model from x's feature count if needed."""
        if not self.layers:
            raise ValueError(f"model {self.name!r} has no layers; add some first")
        be = self._be()
        x = inputs.samples(self._flat_samples(x, xname), xname, be, self._input_features())
        if not self.built:
            self.build((None, x.shape[1]))
        if self.loss is not None:  # a loss written in Python takes targets as given (class indices or rows)
            self.loss.adapt_to_targets(y, self.output_shape[1])
        sparse = self.loss is not None and self.loss.sparse
        y = inputs.targets(y, yname, be, x.shape[0], 1 if sparse else self.output_shape[1])
        inputs.check_finite(x, xname, be)
        inputs.check_finite(y, yname, be)
        if self.loss is not None:
            self.loss.check_targets(y, self.output_shape[1], be)
        return x, y

    def check_samples(self, x: Any) -> Any:
        """``x`` checked and converted to float32 (samples, features), on the model's
        device if it is already there; builds the model from x's feature count if needed."""
        if not self.layers:
            raise ValueError(f"model {self.name!r} has no layers; add some first")
        x = inputs.samples(self._flat_samples(x, "x"), "x", self._be(), self._input_features())
        if not self.built:
            self.build((None, x.shape[1]))
        return x

    def _flat_samples(self, x: Any, name: str) -> Any:
        """Samples with a shape (e.g. (n, 8, 8) images) as flat rows (n, 64), in C order,
        when the model starts with a Flatten (or flat Reshape): Keras' Flatten, done once
        at the boundary since every layer works on rows."""
        first = self.layers[0] if self.layers else None
        if not getattr(first, "flattens_input", False):
            return x
        if not hasattr(x, "ndim"):
            x = np.asarray(x)
        if x.ndim <= 2:
            return x
        want = first.sample_shape or getattr(self, "_input_sample_shape", None)
        if want is not None and tuple(x.shape[1:]) != tuple(want):
            raise ValueError(f"{name} has samples of shape {tuple(x.shape[1:])} but layer {first.name!r} "
                             f"takes {tuple(want)}")
        return x.reshape(x.shape[0], -1)

    def _place(self, *arrays: Any, copies: int = 1) -> list[Any]:
        """Move arrays to the device when ``copies`` of them fit there at once, else keep
        them where they are (batches are then copied one at a time)."""
        be = self.backend
        if be.can_hold(copies * sum(int(a.nbytes) for a in arrays)):
            return [be.asarray(a) for a in arrays]
        return list(arrays)

    # ---------------------------------------------------------------- compute
    def _workspace(self, batch: int) -> _Workspace:
        cache = concurrency.per_thread(self._workspaces)
        ws = cache.get(batch)
        if ws is None:
            if len(cache) >= _MAX_WORKSPACES:
                del cache[next(iter(cache))]
            ws = cache[batch] = _Workspace(self.layers, batch)
        return ws

    def _loss_buffer(self, kind: str, steps: int) -> Any:
        cache = concurrency.per_thread(self._loss_buffers)
        buf = cache.get((kind, steps))
        if buf is None:
            for k in [k for k in cache if k[0] == kind]:
                del cache[k]
            buf = cache[(kind, steps)] = self.backend.zeros((steps,))
        return buf

    def _folds_output(self) -> bool:
        """Whether the loss takes the last layer's activation into itself (see
        :meth:`Loss.folds_output`): training and evaluation then run that layer
        without its activation and hand the loss logits."""
        return self.loss.folds_output(self.output_activation)

    def _forward(self, x: Any, ws: _Workspace, logits: bool = False, training: bool = False) -> Any:
        """Run every layer on a device batch ``x`` into ``ws``; returns the output buffer
        (the last layer's pre-activation with ``logits``)."""
        last = len(self.layers) - 1
        for i, (layer, buf) in enumerate(zip(self.layers, ws.layers)):
            if layer.uses_training:
                x = layer.forward(x, buf, training=training)
            else:
                x = layer.forward(x, buf, logits) if (logits and i == last) else layer.forward(x, buf)
        return x

    def _compute_gradients(self, x: Any, y: Any, ws: _Workspace, loss_out: Any,
                           tracker: EpochMetrics | None = None, weights: Any = None) -> None:
        """Forward, loss (written to ``loss_out[0]``) and backward for one batch: leaves
        every layer's weight gradients in its ``grads``. ``weights`` (a device array,
        one per row) weighs each row's loss and gradient (see :mod:`.sample_weights`)."""
        be = self.backend
        fold = self._folds_output()
        pred = self._forward(x, ws, fold, training=True)
        on_logits = self.loss.on_logits(self.output_activation)
        if weights is None:
            self.loss.value(be, pred, y, loss_out, logits=on_logits)
        else:
            sample_weights.weighted_rows_loss(self.loss, be, pred, y, weights, loss_out, on_logits,
                                              self._loss_buffer("rows", pred.shape[0]))
        if tracker is not None:
            tracker.update(pred, y, weights)
        if ws.dpred is None:
            ws.dpred = be.empty(pred.shape)
        dy = self.loss.gradient(be, pred, y, ws.dpred, logits=on_logits)
        if weights is not None:  # every loss is a mean of row terms: row i's gradient scales by w_i
            dy *= weights.reshape(-1, 1)
        for layer in self.layers:  # activity penalties join the loss in backward (last layer first)
            if getattr(layer, "activity_regularizer", None) is not None:
                layer.activity_loss = loss_out
        self._backward(dy, ws)
        for layer in self.trained_layers():  # weight penalties (of trained weights, as Keras), fused order
            layer.add_penalties(loss_out)

    def _backward(self, dy: Any, ws: _Workspace) -> None:
        """Backpropagate the loss gradient ``dy`` through the layers (last first); a
        model with a layer graph overrides it."""
        for i in range(len(self.layers) - 1, -1, -1):
            dy = self.layers[i].backward(dy, ws.layers[i], i > 0)

    def _tracker(self) -> EpochMetrics | None:
        if not self.metrics:
            return None
        fold = self._folds_output()
        return EpochMetrics(self.metrics, self.backend, self.output_shape[1], self.loss.sparse,
                            self.loss.on_logits(self.output_activation), self.output_activation if fold else None)

    def _train_epoch(self, x: Any, y: Any, order: np.ndarray, batch_size: int,
                     on_step: Callable[[int, Any], None] | None = None, chunk: int = 1,
                     stop_on_nonfinite: bool = False, tracker: EpochMetrics | None = None,
                     augment: Callable[[np.ndarray], np.ndarray] | None = None,
                     row_weights: np.ndarray | None = None) -> float:
        """Train one epoch over the samples in ``order`` (a host permutation) in batches
        of ``batch_size``; returns the epoch loss (batch losses weighted by batch size)
        and leaves the per-step losses in ``last_step_losses``. ``x``/``y`` are on the
        device, or on the host to be copied a batch at a time. ``on_step(step, losses)``,
        if given, runs after each step with the device array of this epoch's step losses
        (on the fused path, after each run of ``chunk`` steps). With ``stop_on_nonfinite``
        the fused path stops after the first step whose loss is NaN or infinite.
        ``tracker`` accumulates the compiled metrics; ``augment`` transforms each
        training batch (a host array) before it is used. ``row_weights`` (host, one per
        sample of x) weighs each sample's loss and gradient."""
        be = self.backend
        n = len(order)
        steps = -(-n // batch_size)
        step_losses = self._loss_buffer("train", steps)
        trainer = None
        if self.fused_mode is not False and isinstance(x, be.xp.ndarray):
            trainer = self._fused = fused.trainer_for(self, batch_size, tracker, self._fused)
        if trainer is not None and row_weights is not None and not fused.weights_fused(self, tracker):
            trainer = None  # this backend's fused trainer cannot weigh this loss or these metrics
        if trainer is not None:
            wdict = None if row_weights is None else \
                {"row_scale": be.asarray(np.ascontiguousarray(row_weights[order])), "penalty_scale": None}
            done = trainer.epoch(self, x, y, order, step_losses, chunk, on_step, stop_on_nonfinite, augment,
                                 weights=wdict)
            if tracker is not None:
                covered = min(n, done * batch_size)
                tracker.add_counted(covered, covered * self.output_shape[1], weighted=row_weights is not None)
            self.last_step_losses = np.array(be.to_numpy(step_losses[:done]), dtype=np.float64)
            return _weighted_mean(self.last_step_losses, batch_size, min(n, done * batch_size))
        xp = be.xp if isinstance(x, be.xp.ndarray) else np
        idx = xp.asarray(order)
        for s in range(steps):
            lo, hi = s * batch_size, min(n, (s + 1) * batch_size)
            ws = self._workspace(hi - lo)
            if ws.batch_x is None:
                ws.batch_x = xp.empty((hi - lo, x.shape[1]), dtype=np.float32)
                ws.batch_y = xp.empty((hi - lo, y.shape[1]), dtype=np.float32)
            # gather this batch only: a shuffled copy of the whole set would double
            # the memory that fit needs
            _gather(xp, x, idx[lo:hi], ws.batch_x)
            _gather(xp, y, idx[lo:hi], ws.batch_y)
            xb = ws.batch_x
            if augment is not None:
                xb = inputs.augmented(augment, be.to_numpy(xb), xb.shape)
            wb = None if row_weights is None else be.asarray(np.ascontiguousarray(row_weights[order[lo:hi]]))
            with concurrency.uninterrupted():  # a Ctrl-C waits for the step's update to finish
                self._compute_gradients(be.asarray(xb), be.asarray(ws.batch_y), ws, step_losses[s:s + 1], tracker,
                                        wb)
                self.optimizer.apply(self.optimized_gradients)
                for layer in self.trained_layers():  # Keras: constraints after the update, trained weights only
                    layer.apply_constraints()
            if on_step is not None:
                on_step(s, step_losses)
        self.last_step_losses = np.array(be.to_numpy(step_losses), dtype=np.float64)
        return _weighted_mean(self.last_step_losses, batch_size, n)

    def _evaluate(self, x: Any, y: Any, batch_size: int, cbs: CallbackList | None = None,
                  tracker: EpochMetrics | None = None, weights: np.ndarray | None = None) -> float:
        """The loss over (x, y) in batches, read back from the device once; the compiled
        metrics accumulate in ``tracker``. ``weights`` (host, one per sample) weighs
        each sample's loss: Keras' ``sum(w_i * l_i) / n``."""
        be = self.backend
        n = x.shape[0]
        batch_size = min(batch_size, n)  # as Keras: one batch of all the data, not a larger buffer
        steps = -(-n // batch_size)
        step_losses = self._loss_buffer("eval", steps)
        fold = self._folds_output()
        on_logits = self.loss.on_logits(self.output_activation)
        for s in range(steps):
            lo, hi = s * batch_size, min(n, (s + 1) * batch_size)
            pred = self._forward(be.asarray(x[lo:hi]), self._workspace(hi - lo), fold)
            yb = be.asarray(y[lo:hi])
            wb = None if weights is None else be.asarray(np.ascontiguousarray(weights[lo:hi]))
            if weights is None:
                self.loss.value(be, pred, yb, step_losses[s:s + 1], logits=on_logits)
            else:
                sample_weights.weighted_rows_loss(self.loss, be, pred, yb, wb, step_losses[s:s + 1], on_logits,
                                                  self._loss_buffer("rows", hi - lo))
            activity = sum(layer.activity_penalty() for layer in self.layers
                           if getattr(layer, "activity_regularizer", None) is not None)
            if activity:  # Keras 3's test step counts the activity penalties too
                step_losses[s:s + 1] += np.float32(activity)
            if tracker is not None:
                tracker.update(pred, yb, wb)
            if cbs is not None:
                covered = hi
                cbs.call("on_test_batch_end", s, BatchLogs(
                    lambda s=s, covered=covered: _weighted_mean(be.to_numpy(step_losses[:s + 1]), batch_size,
                                                                covered)))
        # the weight penalties count in the loss, as in Keras' test step
        return _weighted_mean(be.to_numpy(step_losses), batch_size, n) + self._penalty()

    def _penalty(self) -> float:
        """The sum of the layers' current weight penalties (regularizers)."""
        return float(sum(layer.penalty() for layer in self.trained_layers()))

    # --------------------------------------------------------------------- fit
    @_fit_guard
    def fit(self, x: Any, y: Any = None, batch_size: int | None = 32, epochs: int = 1, verbose: int | str = "auto",
            validation_split: float = 0.0, validation_data: tuple[Any, Any] | None = None,
            shuffle: bool = True, callbacks: Sequence[Callback] | None = None,
            initial_epoch: int = 0, augment: Callable[[np.ndarray], np.ndarray] | None = None,
            class_weight: dict[int, float] | None = None, sample_weight: Any = None,
            validation_freq: int | Sequence[int] = 1, validation_batch_size: int | None = None,
            steps_per_epoch: int | None = None, validation_steps: int | None = None) -> History:
        """Train for ``epochs`` epochs (counting from ``initial_epoch``) on (x, y) in
        mini-batches, with Keras' semantics: ``shuffle`` reorders samples every epoch,
        ``validation_split`` holds out the *last* fraction of the data (before
        shuffling) unless ``validation_data=(x_val, y_val)`` is given, and the returned
        :class:`History` holds per-epoch 'loss' and each compiled metric (and 'val_loss',
        'val_<metric>'). ``augment`` (e.g. a :class:`fusednn.preprocessing.Augmentation`)
        transforms each training batch as it is drawn — never the validation data.
        ``sample_weight`` (one per sample) and ``class_weight`` ({class: weight}, multiplied
        in) weigh each sample's loss as Keras does (:mod:`.sample_weights`); validation
        data may be a triple ``(x_val, y_val, w_val)``; ``validation_split`` splits the
        weights too. Validation runs after epochs ``validation_freq`` divides (counted
        from 1), or those listed, in batches of ``validation_batch_size`` (default
        ``batch_size``). The compiled metrics are not weighted (unlike Keras').
        ``x`` may be a dataset — an iterator/generator of ``(x, y)`` or ``(x, y, w)``
        batches or a ``keras.utils.PyDataset``-like object — read one batch at a time
        (each trained as a one-step chunk); ``steps_per_epoch`` / ``validation_steps``
        limit an epoch to that many batches with Keras 3's walk (continuing across
        epochs; see :mod:`.datasets`)."""
        self._require_compiled("fit")
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be a callable on a batch of samples, got {type(augment).__name__}")
        batch_size = inputs.batch_size(batch_size)
        verbose = resolve_verbose(verbose)
        epochs, initial_epoch = int(epochs), int(initial_epoch)
        if initial_epoch < 0:
            raise ValueError(f"initial_epoch must be >= 0, got {initial_epoch}")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
        val_batch = batch_size if validation_batch_size is None else inputs.batch_size(validation_batch_size)
        should_validate = _validation_schedule(validation_freq)
        steps_per_epoch = _positive_or_none(steps_per_epoch, "steps_per_epoch")
        validation_steps = _positive_or_none(validation_steps, "validation_steps")
        source = datasets.BatchSource(x, shuffle) if datasets.is_dataset(x) else None
        w = None
        if source is not None:
            if y is not None or sample_weight is not None:
                raise ValueError("when x is a dataset (a generator or PyDataset), y and sample_weight come from its "
                                 "batches: pass y=None and no sample_weight")
            if validation_split:
                raise ValueError("validation_split is not supported when x is a dataset; pass validation_data")
            if augment is not None:
                raise ValueError("augment is not supported when x is a dataset")
            xb, yb, _ = datasets.unpack(source.peek())
            if yb is None:
                raise ValueError("fit needs targets: the dataset's batches must be (x, y) or (x, y, sample_weight)")
            self._xy(xb, yb)  # checks the first batch and builds the model
        else:
            if y is None:
                raise ValueError("fit needs targets y (or x as a dataset of (x, y) batches)")
            x, y = self._xy(x, y)
            w = self._sample_weights(sample_weight, class_weight, y)
            if w is not None and augment is not None:
                raise ValueError("sample_weight/class_weight cannot be combined with augment")
        val, val_w, val_source = None, None, None
        if validation_data is not None and datasets.is_dataset(validation_data):
            val_source = datasets.BatchSource(validation_data)
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a pair (x_val, y_val) or a triple (x_val, y_val, w_val)")
            val = self._xy(*validation_data[:2], xname="validation_data x", yname="validation_data y")
            if len(validation_data) == 3 and validation_data[2] is not None:
                val_w = sample_weights.check_sample_weight(validation_data[2], val[0].shape[0],
                                                           "validation_data sample weights")
        elif validation_split:
            split = int(math.floor(x.shape[0] * (1.0 - validation_split)))
            if split in (0, x.shape[0]):
                raise ValueError(f"{x.shape[0]} samples cannot be split into training and validation "
                                 f"sets with validation_split={validation_split}")
            x, y, val = x[:split], y[:split], (x[split:], y[split:])
            if w is not None:
                # as Keras 3: the split takes the sample weights along; class_weight weighs
                # the training rows only
                w = w[:split]
                if sample_weight is not None:
                    val_w = sample_weights.check_sample_weight(sample_weight, split + val[0].shape[0])[split:]
        if source is None:
            x, y = self._place(x, y)
        if val is not None:
            val = self._place(*val)
        self._ready_optimizer()
        reason = self.fused_reason
        if reason is None and source is None and not isinstance(x, self.backend.xp.ndarray):
            reason = "the training data does not fit in device memory (it is copied a batch at a time)"
        self._tell_why_not_fused(reason, verbose)
        dist = distribution_state.session_for(self, x)  # data parallelism (fusednn.distribution), else None
        if not distribution_state.is_chief():
            verbose = 0  # progress shows on rank 0 only

        if source is None:
            n = x.shape[0]
            batch_size = min(batch_size, n)  # as Keras: one batch of all the data, not a larger buffer
            steps = steps_per_epoch or -(-n // batch_size)
            walk = datasets.ArrayWalk(n, batch_size, shuffle) if steps_per_epoch is not None else None
        else:
            steps = source.steps(steps_per_epoch)
        if dist is not None and (source is not None or walk is not None):
            raise NotImplementedError("data parallelism takes in-memory arrays without steps_per_epoch")
        val_walk = None
        if val is not None and validation_steps is not None:
            val_walk = datasets.ArrayWalk(val[0].shape[0], val_batch, False)
        history = History()
        cbs = CallbackList([*(callbacks or []), history] + ([ProgbarLogger(verbose)] if verbose else []),
                           model=self, params={"epochs": epochs, "steps": steps, "verbose": verbose})
        on_step = None
        # The fused path runs steps in chunks between batch hooks: one step at a time
        # for callbacks that act per batch, ~50 chunks an epoch for the progress bar.
        per_batch = [cb for cb in cbs.callbacks if not isinstance(cb, ProgbarLogger)
                     and overrides(cb, "on_train_batch_end")]
        chunk = 1 if per_batch else max(1, (steps or 1) // 50)
        stop_on_nonfinite = any(isinstance(cb, TerminateOnNaN) for cb in cbs.callbacks)
        if cbs.wants("on_train_batch_end") and source is None:
            be = self.backend

            def on_step(step: int, step_losses: Any, rows: int = n, offset: int = 0) -> None:
                # step counts within a run of batches of `rows` rows, the epoch's batches from `offset` on
                covered = min(rows, (step + 1) * batch_size)
                cbs.call("on_train_batch_end", offset + step, BatchLogs(
                    lambda: _weighted_mean(be.to_numpy(step_losses[:step + 1]), batch_size, covered)))

        tracker, val_tracker = self._tracker(), self._tracker()
        self.stop_training = False
        self.history = history
        logs: dict[str, float] | None = None
        self._resume_epoch = None
        cbs.call("on_train_begin", None)
        if self._resume_epoch is not None:  # a callback restored a backup (BackupAndRestore)
            initial_epoch, self._resume_epoch = self._resume_epoch, None
        for epoch in range(initial_epoch, epochs):
            cbs.call("on_epoch_begin", epoch, None)
            if tracker is not None:
                tracker.reset()
            if source is not None:
                loss = self._train_stream(source, steps_per_epoch, class_weight, cbs, stop_on_nonfinite, tracker)
                if loss is None:  # the iterator ran out before this epoch's first batch
                    datasets.warn_ran_out(steps or 0, epochs)
                    break
                source.end_epoch()
            elif walk is None:
                order = rng().permutation(n) if shuffle else np.arange(n)
                if dist is not None:
                    order = dist.shared_order(order)
                loss = self._train_epoch(x, y, order, batch_size, on_step, chunk, stop_on_nonfinite, tracker,
                                         augment, w)
            else:
                loss = self._train_runs(x, y, walk.epoch(steps_per_epoch), batch_size, on_step, chunk,
                                        stop_on_nonfinite, tracker, augment, w)
            logs = {"loss": loss}
            if tracker is not None:
                if dist is not None:
                    dist.reduce_metrics(tracker)
                logs.update(tracker.result())
            if (val is not None or val_source is not None) and should_validate(epoch):
                if val_tracker is not None:
                    val_tracker.reset()
                if val_source is not None:
                    logs["val_loss"] = self._evaluate_stream(val_source, validation_steps, val_tracker)
                elif val_walk is not None:
                    logs["val_loss"] = self._evaluate_runs(val, val_w, val_walk.epoch(validation_steps), val_batch,
                                                           val_tracker)
                else:
                    logs["val_loss"] = self._evaluate(val[0], val[1], val_batch, tracker=val_tracker, weights=val_w)
                if val_tracker is not None:
                    logs.update({f"val_{k}": v for k, v in val_tracker.result().items()})
            cbs.call("on_epoch_end", epoch, logs)
            if self.stop_training or (source is not None and source.exhausted):
                if source is not None and source.exhausted:
                    datasets.warn_ran_out(steps or 0, epochs)
                break
        self.optimizer.finalize_variable_values()  # use_ema: the weights take their moving averages (Keras)
        if self._fused is not None:
            self._fused.forget_data()
        if dist is not None:
            dist.close()
        cbs.call("on_train_end", logs)
        return history

    def _train_runs(self, x: Any, y: Any, runs: list[np.ndarray], batch_size: int, on_step: Any, chunk: int,
                    stop_on_nonfinite: bool, tracker: EpochMetrics | None, augment: Any,
                    w: np.ndarray | None) -> float:
        """An epoch of ``steps_per_epoch`` batches over arrays: each run of consecutive
        batches of a pass (see :class:`.datasets.ArrayWalk`) trained as its own short
        epoch; the loss is their mean weighted by rows, as Keras'."""
        total, rows, step_losses, offset = 0.0, 0, [], 0
        for order in runs:
            hook = None if on_step is None else functools.partial(on_step, rows=len(order), offset=offset)
            offset += -(-len(order) // batch_size)
            xr, yr, wr = x, y, w
            if len(order) != x.shape[0]:  # the trainer walks a whole array: give it this run's rows
                xp = self.backend.xp if isinstance(x, self.backend.xp.ndarray) else np
                rows_idx = xp.asarray(order)
                xr, yr = xp.ascontiguousarray(x[rows_idx]), xp.ascontiguousarray(y[rows_idx])
                wr = None if w is None else w[order]
                order = np.arange(len(order))
            loss = self._train_epoch(xr, yr, order, batch_size, hook, chunk, stop_on_nonfinite, tracker,
                                     augment, wr)
            total += loss * len(order)
            rows += len(order)
            step_losses.append(self.last_step_losses)
            if len(self.last_step_losses) < -(-len(order) // batch_size):  # stopped at a non-finite loss
                break
        self.last_step_losses = np.concatenate(step_losses)
        return total / rows

    def _train_stream(self, source: datasets.BatchSource, steps: int | None, class_weight: Any,
                      cbs: CallbackList, stop_on_nonfinite: bool, tracker: EpochMetrics | None) -> float | None:
        """An epoch over a dataset's batches, each checked, moved to the device and
        trained on as a one-step chunk of the fused trainer (or the per-op path); the
        loss is the batch losses' mean weighted by batch size. None when no batch came."""
        total, rows, step_losses, per_batch = 0.0, 0, [], cbs.wants("on_train_batch_end")
        batch = 0
        for step, (xb, yb, wb) in enumerate(source.epoch(steps)):
            if yb is None:
                raise ValueError(f"batch {step} of the dataset has no targets: batches must be (x, y) or "
                                 "(x, y, sample_weight)")
            xb, yb = self._xy(xb, yb, xname=f"x of batch {step}", yname=f"y of batch {step}")
            w = self._sample_weights(wb, class_weight, yb)
            b = xb.shape[0]
            # one trainer for the largest batch so far: smaller batches run as its partial last step
            batch = max(batch, b)
            xd, yd = self._place(xb, yb)
            loss = self._train_epoch(xd, yd, np.arange(b), batch, None, 1, stop_on_nonfinite, tracker, None, w)
            total += loss * b
            rows += b
            step_losses.append(self.last_step_losses)
            if per_batch:
                cbs.call("on_train_batch_end", step, {"loss": total / rows})
            if stop_on_nonfinite and not np.isfinite(loss):
                break
        if not rows:
            return None
        self.last_step_losses = np.concatenate(step_losses)
        return total / rows

    def _evaluate_runs(self, val: tuple[Any, Any], w: np.ndarray | None, runs: list[np.ndarray], batch_size: int,
                       tracker: EpochMetrics | None) -> float:
        """The loss over the validation batches ``runs`` names (unshuffled row ranges)."""
        total, rows = 0.0, 0
        for order in runs:
            lo, hi = int(order[0]), int(order[-1]) + 1
            loss = self._evaluate(val[0][lo:hi], val[1][lo:hi], batch_size, tracker=tracker,
                                  weights=None if w is None else w[lo:hi])
            total += loss * (hi - lo)
            rows += hi - lo
        return total / rows

    def _evaluate_stream(self, source: datasets.BatchSource, steps: int | None, tracker: EpochMetrics | None,
                         cbs: CallbackList | None = None) -> float:
        """The loss over a dataset's batches (the next ``steps``, or one pass)."""
        total, rows = 0.0, 0
        for step, (xb, yb, wb) in enumerate(source.epoch(steps)):
            if yb is None:
                raise ValueError(f"batch {step} of the dataset has no targets: batches must be (x, y) or "
                                 "(x, y, sample_weight)")
            xb, yb = self._xy(xb, yb, xname=f"x of batch {step}", yname=f"y of batch {step}")
            w = None if wb is None else sample_weights.check_sample_weight(wb, xb.shape[0])
            xd, yd = self._place(xb, yb)
            loss = self._evaluate(xd, yd, xb.shape[0], tracker=tracker, weights=w)
            total += loss * xb.shape[0]
            rows += xb.shape[0]
            if cbs is not None:
                cbs.call("on_test_batch_end", step, {"loss": total / rows})
        if not rows:
            raise ValueError("the dataset gave no batches")
        source.end_epoch()
        return total / rows

    def set_initial_epoch(self, epoch: int) -> None:
        """Make the ``fit`` now starting (called from a callback's ``on_train_begin``,
        as :class:`~fusednn.callbacks.BackupAndRestore` does) begin at ``epoch``."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._resume_epoch = int(epoch)

    def _sample_weights(self, sample_weight: Any, class_weight: Any, y: Any) -> np.ndarray | None:
        """fit's per-sample weights (host float32) from ``sample_weight`` and ``class_weight``, or None."""
        w = None
        if sample_weight is not None:
            w = sample_weights.check_sample_weight(sample_weight, y.shape[0])
        if class_weight is not None:
            cw = sample_weights.class_weights_to_sample_weights(class_weight, self.backend.to_numpy(y)
                                                                if not isinstance(y, np.ndarray) else y,
                                                                self.loss.sparse)
            w = cw if w is None else w * cw
        return w

    # ------------------------------------------------------ one batch at a time
    # Keras' single-batch methods, which older tutorials (and GAN-style loops) use to
    # drive training by hand. They reuse fit's pieces (input checks, sample/class
    # weights, the one-step fused chunk that streamed datasets use), so a batch trained
    # here is trained exactly as inside fit. As in Keras 3 the compiled metrics are
    # reset at each call: the values returned are this batch's.
    @_fit_guard
    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, class_weight: Any = None,
                       return_dict: bool = False) -> float | list[float] | dict[str, float]:
        """One gradient step on the batch ``(x, y)`` (all of it, however large), with Keras'
        ``sample_weight``/``class_weight`` (not both, as in Keras); returns the batch's loss
        (with weight penalties, as Keras' train step reports it) and metrics as
        :meth:`evaluate` does: a float without metrics, else a list in compile order, or a
        dict with ``return_dict``."""
        self._require_compiled("train_on_batch")
        if sample_weight is not None and class_weight is not None:
            raise ValueError("train_on_batch: sample_weight and class_weight cannot be given together (as in Keras)")
        if y is None:
            raise ValueError("train_on_batch needs targets y")
        x, y = self._xy(x, y)
        w = self._sample_weights(sample_weight, class_weight, y)
        n = x.shape[0]
        # one fused trainer for the largest batch so far: a smaller batch runs as its partial
        # last step, so a loop's full and remainder batches do not rebuild it at every call
        self._on_batch_rows = max(n, getattr(self, "_on_batch_rows", 0))
        xd, yd = self._place(x, y)
        self._ready_optimizer()
        tracker = self._tracker()
        if tracker is not None:
            tracker.reset()
        loss = self._train_epoch(xd, yd, np.arange(n), self._on_batch_rows, None, 1, False, tracker, None, w)
        if self._fused is not None:
            self._fused.forget_data()
        return _batch_logs(loss, tracker, return_dict)

    @_inference_guard("test_on_batch")
    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                      return_dict: bool = False) -> float | list[float] | dict[str, float]:
        """The loss and metrics on the batch ``(x, y)`` in inference mode (one batch, no
        update), returned as :meth:`train_on_batch` does; ``sample_weight`` weighs the loss."""
        self._require_compiled("test_on_batch")
        if y is None:
            raise ValueError("test_on_batch needs targets y")
        x, y = self._xy(x, y)
        w = None if sample_weight is None else sample_weights.check_sample_weight(sample_weight, x.shape[0])
        tracker = self._tracker()
        if tracker is not None:
            tracker.reset()
        xd, yd = self._place(x, y)
        return _batch_logs(self._evaluate(xd, yd, x.shape[0], tracker=tracker, weights=w), tracker, return_dict)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        """The model's outputs for ``x`` computed as one batch (a NumPy array)."""
        n = int(np.shape(x)[0]) if np.ndim(x) else 0
        if n < 1:
            raise ValueError("predict_on_batch needs a batch of at least one sample")
        return self.predict(x, batch_size=n, verbose=0)

    # ---------------------------------------------------------- evaluate, predict
    @_inference_guard("evaluate")
    def evaluate(self, x: Any, y: Any = None, batch_size: int | None = 32, verbose: int | str = "auto",
                 sample_weight: Any = None, steps: int | None = None, return_dict: bool = False
                 ) -> float | list[float] | dict[str, float]:
        """The loss on (x, y), averaged over samples as in Keras (batches weighted by
        size; with ``sample_weight``, ``sum(w_i * l_i) / n``); with compiled metrics,
        ``[loss, *metrics]`` in compile order, as Keras; with ``return_dict``,
        ``{"loss": ..., <metric name>: ...}``. Metrics are not weighted. ``x`` may be a
        dataset of ``(x, y)`` / ``(x, y, w)`` batches (see :meth:`fit`); ``steps`` limits
        the evaluation to the first that many batches."""
        self._require_compiled("evaluate")
        batch_size = inputs.batch_size(batch_size)
        verbose = resolve_verbose(verbose)
        steps = _positive_or_none(steps, "steps")
        tracker = self._tracker()
        if datasets.is_dataset(x):
            if y is not None or sample_weight is not None:
                raise ValueError("when x is a dataset, y and sample_weight come from its batches: pass y=None")
            source = datasets.BatchSource(x)
            cbs = None
            if verbose:
                cbs = CallbackList([ProgbarLogger(verbose)], model=self,
                                   params={"steps": source.steps(steps), "verbose": verbose})
                cbs.call("on_test_begin", None)
            loss = self._evaluate_stream(source, steps, tracker, cbs)
        else:
            if y is None:
                raise ValueError("evaluate needs targets y (or x as a dataset of (x, y) batches)")
            x, y = self._xy(x, y)
            w = None if sample_weight is None else sample_weights.check_sample_weight(sample_weight, x.shape[0])
            if steps is not None:  # the first `steps` batches, as Keras
                rows = min(x.shape[0], steps * batch_size)
                x, y, w = x[:rows], y[:rows], None if w is None else w[:rows]
            x, y = self._place(x, y)
            batch_size = min(batch_size, x.shape[0])  # as Keras: one batch of all the data
            cbs = None
            if verbose:
                cbs = CallbackList([ProgbarLogger(verbose)], model=self,
                                   params={"steps": -(-x.shape[0] // batch_size), "verbose": verbose})
                cbs.call("on_test_begin", None)
            loss = self._evaluate(x, y, batch_size, cbs, tracker, w)
        results = tracker.result() if tracker is not None else {}
        if cbs is not None:
            cbs.call("on_test_end", {"loss": loss, **results})
        if return_dict:
            return {"loss": loss, **results}
        return [loss, *results.values()] if tracker is not None else loss

    @_inference_guard("predict")
    def predict(self, x: Any, batch_size: int | None = 32, verbose: int | str = "auto",
                steps: int | None = None) -> np.ndarray:
        """Model outputs for ``x`` as a NumPy array (n, units), computed in batches.
        Non-finite inputs are not rejected here: they give non-finite outputs. ``x`` may
        be a dataset of ``x`` / ``(x,)`` / ``(x, y)`` batches (see :meth:`fit`; targets are
        ignored), read a batch at a time; ``steps`` stops after that many batches."""
        batch_size = inputs.batch_size(batch_size)
        verbose = resolve_verbose(verbose)
        steps = _positive_or_none(steps, "steps")
        if datasets.is_dataset(x):
            source = datasets.BatchSource(x)
            outs = [self.predict(xb, batch_size=max(1, len(xb)), verbose=0) for xb, _, _ in source.epoch(steps)]
            if not outs:
                raise ValueError("the dataset gave no batches")
            source.end_epoch()
            return np.concatenate(outs)
        x = self.check_samples(x)
        if steps is not None:
            x = x[:min(x.shape[0], steps * batch_size)]
        (x,) = self._place(x)
        be = self.backend
        n = x.shape[0]
        batch_size = min(batch_size, n)  # as Keras: one batch of all the data, not a larger buffer
        steps = -(-n // batch_size)
        cbs = None
        if verbose:
            cbs = CallbackList([ProgbarLogger(verbose)], model=self, params={"steps": steps, "verbose": verbose})
            cbs.call("on_predict_begin", None)
        # Collect on the device and copy back once, so the host waits once, not per batch.
        out = be.empty((n, self.output_shape[1]))
        for s in range(steps):
            lo, hi = s * batch_size, min(n, (s + 1) * batch_size)
            out[lo:hi] = self._forward(be.asarray(x[lo:hi]), self._workspace(hi - lo))
            if cbs is not None:
                cbs.call("on_predict_batch_end", s, None)
        if cbs is not None:
            cbs.call("on_predict_end", None)
        return np.array(be.to_numpy(out), dtype=np.float32)

