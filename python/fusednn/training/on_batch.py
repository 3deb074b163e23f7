"""Keras' single-batch methods: ``train_on_batch``, ``test_on_batch``, ``predict_on_batch``.

Older Keras tutorials (and GAN-style loops) drive training by hand, one batch per
call. These functions are bound as methods of :class:`~fusednn.training.Trainer`;
they reuse the trainer's own pieces (input checks, sample/class weights, the fused
one-step chunk that streamed datasets use), so a batch trained here is trained
exactly as the same batch inside ``fit``. As in Keras 3, the compiled metrics are
reset at each call, so the values returned are this batch's: the loss (with any
weight penalties, as Keras' train step reports it), then the metrics in compile
order (a bare float when there are no metrics), or a dict with ``return_dict``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import sample_weights


def _logs(loss: float, tracker: Any, return_dict: bool) -> float | list[float] | dict[str, float]:
    """Keras' return value: ``{"loss", *metrics}``, or those values in order (one: a float)."""
    logs = {"loss": float(loss), **({k: float(v) for k, v in tracker.result().items()} if tracker else {})}
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def train_on_batch(self: Any, x: Any, y: Any = None, sample_weight: Any = None, class_weight: Any = None,
                   return_dict: bool = False) -> float | list[float] | dict[str, float]:
    """One gradient step on the batch ``(x, y)`` (all of it, however large), with Keras'
    ``sample_weight``/``class_weight`` (not both, as in Keras); returns the batch's loss
    and metrics as :meth:`evaluate` does (``return_dict`` for a dict)."""
    self._require_compiled("train_on_batch")
    if sample_weight is not None and class_weight is not None:
        raise ValueError("train_on_batch: sample_weight and class_weight cannot be given together (as in Keras)")
    if y is None:
        raise ValueError("train_on_batch needs targets y")
    x, y = self._xy(x, y)
    w = self._sample_weights(sample_weight, class_weight, y)
    n = x.shape[0]
    # one fused trainer for the largest batch so far: a smaller batch runs as its partial
    # last step, so alternating full and remainder batches does not rebuild it every call
    batch = max(n, getattr(self, "_on_batch_rows", 0))
    self._on_batch_rows = batch
    xd, yd = self._place(x, y)
    self._ready_optimizer()
    tracker = self._tracker()
    if tracker is not None:
        tracker.reset()
    loss = self._train_epoch(xd, yd, np.arange(n), batch, None, 1, False, tracker, None, w)
    if self._fused is not None:
        self._fused.forget_data()
    return _logs(loss, tracker, return_dict)


def test_on_batch(self: Any, x: Any, y: Any = None, sample_weight: Any = None,
                  return_dict: bool = False) -> float | list[float] | dict[str, float]:
    """The loss and metrics on the batch ``(x, y)`` in inference mode (one batch, no
    update), as :meth:`evaluate` returns them; ``sample_weight`` weighs the loss."""
    self._require_compiled("test_on_batch")
    if y is None:
        raise ValueError("test_on_batch needs targets y")
    x, y = self._xy(x, y)
    w = None if sample_weight is None else sample_weights.check_sample_weight(sample_weight, x.shape[0])
    tracker = self._tracker()
    if tracker is not None:
        tracker.reset()
    (xd, yd) = self._place(x, y)
    loss = self._evaluate(xd, yd, x.shape[0], tracker=tracker, weights=w)
    return _logs(loss, tracker, return_dict)


def predict_on_batch(self: Any, x: Any) -> np.ndarray:
    """The model's outputs for ``x`` computed as one batch (a NumPy array)."""
    n = int(np.shape(x)[0]) if np.ndim(x) else 0
    if n < 1:
        raise ValueError("predict_on_batch needs a batch of at least one sample")
    return self.predict(x, batch_size=n, verbose=0)
