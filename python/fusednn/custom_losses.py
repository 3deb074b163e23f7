"""The autodiff side of losses written as Python code with ``keras.ops``: a function
``fn(y_true, y_pred)`` given to ``compile(loss=fn)`` (wrapped in
:class:`fusednn.losses.LossFunctionWrapper`, Keras' name) and a ``keras.losses.Loss``
subclass that defines ``call(y_true, y_pred)``; the loss classes themselves live in
:mod:`fusednn.losses`, which calls these helpers.

The function returns per-sample (or per-element) values; the batch loss is their mean
(Keras' default ``sum_over_batch_size`` reduction) or their sum (``reduction='sum'``). Its
gradient w.r.t. the predictions comes from recording the function on a
:class:`~fusednn.autodiff.Tensor`, once per step. The fused native trainer cannot call
Python per step, so a model compiled with such a loss trains on the per-op path and
``model.fused_reason`` names the loss.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import autodiff as ad

_REDUCTIONS = ("sum_over_batch_size", "sum")


def check_reduction(reduction: Any, who: str) -> str:
    """``reduction`` if this trainer can honour it, else a ValueError naming it."""
    if reduction is None or reduction == "none":
        raise ValueError(f"{who}: reduction={reduction!r} gives one loss per sample, which cannot be trained on; "
                         f"use one of {_REDUCTIONS}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{who}: reduction {reduction!r} is not supported (one of {_REDUCTIONS})")
    return reduction


def _batch_loss(fn: Callable[[Any, Any], Any], who: str, reduction: str, target: Any, pred: Any) -> Any:
    """The reduced loss of ``fn(target, pred)`` as a tensor (recorded if ``pred`` needs it)."""
    try:
        values = fn(target, pred)
    except TypeError as e:
        if "ufunc" in str(e) or "Tensor" in str(e):
            raise TypeError(f"{who}: {e}; write it with keras.ops (NumPy functions cannot be differentiated)") from e
        raise
    if values is None or isinstance(values, (str, bytes)):
        raise TypeError(f"{who} must return the loss values (a tensor), got {type(values).__name__}")
    if not isinstance(values, ad.Tensor):
        values = ad.Tensor(ad.xp_of(pred).asarray(values, dtype=pred.dtype))
    if reduction == "sum":
        return ad.reduce_sum(values)
    return ad.reduce_mean(ad.cast(values, pred.dtype))


# The trainer asks a loss for its value and then, on the same arrays, for its gradient: the
# value's recorded graph is kept (per thread) for that gradient, so the function runs once a step.
_last = threading.local()


def loss_value(fn: Callable[[Any, Any], Any], who: str, reduction: str, pred: Any, target: Any, out: Any) -> None:
    """``out[0]`` = the batch loss of ``fn``; the recorded graph is kept for a
    :func:`loss_gradient` on the same ``pred`` and ``target`` that follows."""
    leaf = ad.Tensor(pred, requires_grad=True)
    v = _batch_loss(fn, who, reduction, ad.Tensor(target.astype(pred.dtype, copy=False)), leaf)
    out[...] = v.value.reshape(out.shape)
    _last.entry = (fn, pred, target, leaf, v)


def loss_gradient(fn: Callable[[Any, Any], Any], who: str, reduction: str, pred: Any, target: Any, out: Any) -> Any:
    """``out`` = d(batch loss)/d(pred), from the graph :func:`loss_value` just recorded on
    these arrays, else by recording ``fn`` on ``pred`` now."""
    entry = getattr(_last, "entry", None)
    _last.entry = None
    if entry is not None and entry[0] == fn and entry[1] is pred and entry[2] is target:
        leaf, v = entry[3], entry[4]
    else:
        leaf = ad.Tensor(pred, requires_grad=True)
        v = _batch_loss(fn, who, reduction, ad.Tensor(target.astype(pred.dtype, copy=False)), leaf)
    out[...] = ad.gradients(v, [leaf])[0]
    return out
