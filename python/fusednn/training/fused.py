"""The fused training path: whole runs of optimizer steps in compiled code.

For a Sequential model made only of Dense layers (linear, relu, sigmoid, tanh, or a
sigmoid/softmax output folded into its cross-entropy) trained with MSE or a
cross-entropy on logits and SGD or Adam, a backend that offers a fused trainer
(``Backend.make_trainer``) runs the epoch — batch gathering, forward, loss,
backward and updates — without returning to Python between steps. It works on
the model's own parameter, gradient and optimizer-state arrays, so
``get_weights`` sees every update and the per-op path can take over at any
time; it calls the same kernels in the same order as that path, so both give
the same numbers.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import losses, optimizers
from ..backends import activation_code
from ..layers import Dense, Normalization
from . import inputs
from .epoch_metrics import EpochMetrics


_FUSED_LOSSES = (losses.MeanSquaredError, losses.BinaryCrossentropy, losses.CategoricalCrossentropy,
                 losses.SparseCategoricalCrossentropy)


def _leading_norms(model: Any) -> list[Normalization]:
    """The Normalization layers the model starts with: applied to the data up front."""
    out = []
    for layer in model.layers:
        if type(layer) is not Normalization:
            break
        out.append(layer)
    return out


def _loss_kind(model: Any) -> str:
    return "mse" if type(model.loss) is losses.MeanSquaredError else model.loss.kind


def unsupported_reason(model: Any) -> str | None:
    """None when ``model`` can train on the fused path, else why not."""
    be = model.backend
    if not getattr(be, "has_trainer", False):
        return f"backend {be.name!r} has no fused trainer"
    k = len(_leading_norms(model))
    if not model.layers[k:] or not all(type(layer) is Dense for layer in model.layers[k:]):
        return "the model has layers other than Dense (after any leading Normalization)"
    if type(model.loss) not in _FUSED_LOSSES:
        return f"loss {type(model.loss).__name__} is not fused"
    last = model.output_activation
    fold = model.loss.folds_output(last)
    if _loss_kind(model) != "mse" and not model.loss.on_logits(last):
        return "a cross-entropy on probabilities (no matching sigmoid/softmax output layer) is not fused"
    if last == "softmax" and not fold:
        return "a softmax output not folded into a cross-entropy is not fused"
    if any(m.needs is None for m in model.metrics):
        return "a metric computed per batch on the host is not fused"
    if fold and any(m.needs == "errors" for m in model.metrics):
        return "regression metrics on a folded (logits) output are not fused"
    if type(model.optimizer) not in (optimizers.SGD, optimizers.Adam):
        return f"optimizer {type(model.optimizer).__name__} is not fused"
    return None


def _optimizer_config(opt: optimizers.Optimizer) -> dict[str, Any]:
    if isinstance(opt, optimizers.Adam):
        return {"kind": "adam", "learning_rate": opt.learning_rate, "beta_1": opt.beta_1,
                "beta_2": opt.beta_2, "epsilon": opt.epsilon}
    return {"kind": "sgd", "learning_rate": opt.learning_rate, "momentum": opt.momentum,
            "nesterov": opt.nesterov}


def _states(opt: optimizers.Optimizer) -> list[list[Any]]:
    """Per parameter (model order): its optimizer state arrays (SGD: [velocity] or [];
    Adam: [m, v])."""
    return opt.slots()


class FusedTrainer:
    """The backend trainer for one model, batch size and optimizer state, with the
    batch and activation buffers it works in."""

    def __init__(self, model: Any, batch: int) -> None:
        be = model.backend
        opt = model.optimizer
        states = _states(opt)
        specs, p = [], 0
        fold = model.loss.folds_output(model.output_activation)
        self.norms = _leading_norms(model)
        self._normalized: tuple[Any, Any] | None = None  # (data, its normalised copy) of this fit
        for i, layer in enumerate(model.layers[len(self.norms):], start=len(self.norms)):
            act = "linear" if (fold and i == len(model.layers) - 1) else layer.activation
            spec = {"W": layer.kernel, "b": layer.bias, "act": activation_code(act),
                    "A": be.empty((batch, layer.units)), "G": be.empty((batch, layer.units)),
                    "dW": layer.grads[0], "db": layer.grads[1] if layer.use_bias else None}
            for name, i in (("W", p), ("b", p + 1)):
                if name == "b" and not layer.use_bias:
                    continue
                for k, s in enumerate(states[i], start=1):
                    spec[f"{name}_s{k}"] = s
            for w, _, reg in layer.regularized():
                key = "W" if w is layer.kernel else "b"
                spec[f"{key}_l1"], spec[f"{key}_l2"] = reg.l1, reg.l2
            p += 2 if layer.use_bias else 1
            specs.append(spec)
        self.batch = batch
        self.optimizer = opt  # keeps id(opt) in the key unique while this trainer exists
        self.x_batch = be.empty((batch, model.input_shape[1]))
        self.y_batch = be.empty((batch, 1 if model.loss.sparse else model.output_shape[1]))
        self.trainer = be.make_trainer(specs, _optimizer_config(opt), _loss_kind(model), batch)
        self.key = _key(model, batch)
        self.metrics: dict | None = None  # accumulator arrays for run(), see use_metrics

    def epoch(self, model: Any, x: Any, y: Any, order: np.ndarray, step_losses: Any, chunk: int,
              on_step: Callable[[int, Any], None] | None, stop_on_nonfinite: bool,
              augment: Callable[[np.ndarray], np.ndarray] | None = None, weights: dict | None = None) -> int:
        """Run the epoch's steps (``chunk`` at a time, calling ``on_step`` after each
        step of a chunk); returns the number of steps run (fewer than the epoch's when
        a loss was not finite and ``stop_on_nonfinite``, on backends that read each
        step's loss for free: the CUDA trainer ignores it rather than wait for the GPU
        every step, and TerminateOnNaN then stops after the epoch). With ``augment``, each chunk's
        samples are gathered on the host, transformed, and trained on in order. ``weights``
        (sample weights, not with ``augment``): ``{"row_scale": backend array (n,),
        "penalty_scale": host array (steps,) or None}``: the row at position i of the
        order has its loss and gradient multiplied by row_scale[i], and step s its
        regularizer factors by penalty_scale[s]."""
        if weights is not None and augment is not None:
            raise ValueError("sample weights cannot be combined with augment")
        be = model.backend
        opt = model.optimizer
        self.trainer.learning_rate = opt.learning_rate  # a callback may have changed it
        n = int(order.shape[0])
        steps = -(-n // self.batch)
        if on_step is None:
            chunk = steps if augment is None else max(1, 4096 // self.batch)
        dev_order = be.xp.asarray(np.ascontiguousarray(order, dtype=np.int64))
        if self.norms and augment is None:
            x = self._normalize_once(x)
        s = 0
        while s < steps:
            end = min(steps, s + chunk)
            if augment is None:
                extra = () if weights is None else (weights,)
                opt.iterations, done = self.trainer.run(x, y, dev_order, self.x_batch, self.y_batch, step_losses,
                                                        s, end, opt.iterations, stop_on_nonfinite, self.metrics,
                                                        *extra)
            else:  # the chunk's samples, augmented, as a small data set of its own
                rows = order[s * self.batch:min(n, end * self.batch)]
                xa = be.asarray(inputs.augmented(augment, np.asarray(be.to_numpy(x))[rows], (len(rows), x.shape[1])))
                for norm in self.norms:
                    norm.transform(xa, xa)
                ya = be.xp.ascontiguousarray(y[be.xp.asarray(rows)])
                local = be.xp.arange(len(rows), dtype=np.int64)
                opt.iterations, done = self.trainer.run(xa, ya, local, self.x_batch, self.y_batch,
                                                        step_losses[s:end], 0, end - s, opt.iterations,
                                                        stop_on_nonfinite, self.metrics)
            if on_step is not None:
                for k in range(s, s + done):
                    on_step(k, step_losses)
            s += done
            if s < end:  # stopped early at a non-finite loss
                break
        return s

    def _normalize_once(self, x: Any) -> Any:
        """The leading Normalization layers applied to the whole training set, kept for
        the fit's later epochs (the statistics are fixed, so once is enough)."""
        if self._normalized is None or self._normalized[0] is not x:
            xn = x.copy()
            for norm in self.norms:
                norm.transform(xn, xn)
            self._normalized = (x, xn)
        return self._normalized[1]

    def forget_data(self) -> None:
        """Drop the normalised copy of a finished fit's data."""
        self._normalized = None

    def use_metrics(self, tracker: EpochMetrics | None) -> None:
        """Point the trainer's metric accumulators at ``tracker``'s (None: no metrics)."""
        if tracker is None:
            self.metrics = None
        else:
            self.metrics = {"counts": tracker.counts, "classes": tracker.classes, "sparse": tracker.sparse,
                            "threshold": tracker.threshold, "sums": tracker.sums}


def _key(model: Any, batch: int) -> tuple:
    """What a trainer is built over: the batch size and the identity of the optimizer,
    the parameters and the state arrays (the trainer keeps them all alive, so their
    ids cannot be reused while it exists). Recompiling or rebuilding changes it."""
    opt = model.optimizer
    arrays = [*model.weights, *(a for s in _states(opt) for a in s)]
    return (batch, id(opt), *map(id, arrays))


def trainer_for(model: Any, batch: int, tracker: EpochMetrics | None = None,
                cached: FusedTrainer | None = None) -> FusedTrainer | None:
    """The fused trainer for ``model`` and this batch size: ``cached`` (the one the
    caller kept from last time) when it still fits, else a new one; set to update
    ``tracker``'s accumulators. None when the model cannot use the fused path."""
    if unsupported_reason(model) is not None:
        return None
    if cached is None or cached.key != _key(model, batch):
        cached = FusedTrainer(model, batch)
    cached.use_metrics(tracker)
    return cached
