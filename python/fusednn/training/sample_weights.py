"""Per-sample weights for fit/evaluate, with Keras 3's semantics.

Keras weighs each sample's loss by its weight and keeps the 'sum_over_batch_size'
reduction: a batch's loss is ``sum(w_i * l_i) / batch_size`` (not divided by the
weights' sum), and an epoch's loss, a mean of batch losses weighted by batch
size, is ``sum(w_i * l_i) / n``. ``class_weight`` maps each sample's class (its
label, or the argmax of a one-hot row) to a factor multiplied into its weight.
Regularization penalties are not weighted.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def check_sample_weight(sample_weight: Any, n: int, name: str = "sample_weight") -> np.ndarray:
    """``sample_weight`` as a finite, non-negative float32 host array of ``n`` entries
    ((n,) or (n, 1) accepted)."""
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} cannot be read as a numeric array ({e})") from None
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) (one weight per sample), got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if (w < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return w.astype(np.float32)


def class_weights_to_sample_weights(class_weight: Mapping[Any, float], y: np.ndarray,
                                    sparse: bool) -> np.ndarray:
    """Each sample's weight from ``class_weight`` ({class index: weight}; a class
    missing from it weighs 1, as in Keras 3's ``class_weight_to_sample_weights``).
    Classes: the label itself for sparse or one-column targets (rounded, as Keras),
    the argmax of one-hot rows."""
    if not isinstance(class_weight, Mapping):
        raise TypeError(f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}")
    y = np.asarray(y)
    labels = np.round(y.reshape(len(y), -1)[:, 0]) if (sparse or y.ndim == 1 or y.shape[1] == 1) \
        else np.argmax(y, axis=1)
    try:
        table = {int(k): float(v) for k, v in class_weight.items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"class_weight must map integer class indices to numbers ({e})") from None
    classes, which = np.unique(labels.astype(np.int64), return_inverse=True)
    out = np.array([table.get(int(c), 1.0) for c in classes], dtype=np.float64)[which.reshape(-1)]
    if not np.isfinite(out).all() or (out < 0).any():
        raise ValueError("class_weight values must be finite and non-negative")
    return out.astype(np.float32)


def weighted_rows_loss(loss: Any, be: Any, pred: Any, target: Any, weights: Any, out: Any, logits: bool,
                       scratch: Any) -> None:
    """``out[0] = sum(w_i * l_i) / B`` for a batch, where ``l_i`` is the loss of row i
    alone (each Keras loss reduces rows by their mean, so a one-row batch gives it).
    One loss call per row: this is the per-op (reference) path; the fused trainer
    computes the same in one kernel. ``scratch`` is a device array of >= B entries."""
    b = pred.shape[0]
    fn = getattr(loss, "fn", None)
    if fn is not None:  # the LossFn losses: one kernel (the hinge labels' conversion is decided per batch)
        be.weighted_loss_fn(fn, pred, target, weights, out, loss.kernel_param_on(logits))
        return
    for i in range(b):
        loss.value(be, pred[i:i + 1], target[i:i + 1], scratch[i:i + 1], logits=logits)
    out[...] = (scratch[:b] * weights).sum(keepdims=True).reshape(out.shape) / np.float32(b)
