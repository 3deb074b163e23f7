"""Losses written as Python code with ``keras.ops``, trained through :mod:`fusednn.autodiff`:
a function ``fn(y_true, y_pred)`` given to ``compile(loss=fn)`` (wrapped in
:class:`LossFunctionWrapper`, Keras' name) and a ``keras.losses.Loss`` subclass that
defines ``call(y_true, y_pred)``.

The function returns per-sample (or per-element) values; the batch loss is their mean
(Keras' default ``sum_over_batch_size`` reduction) or their sum (``reduction='sum'``). Its
gradient w.r.t. the predictions comes from recording the function on a
:class:`~fusednn.autodiff.Tensor`, once per step. The fused native trainer cannot call
Python per step, so a model compiled with such a loss trains on the per-op path and
``model.fused_reason`` names the loss.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import autodiff as ad
from .backends import Backend
from .losses import Loss

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


def loss_value(fn: Callable[[Any, Any], Any], who: str, reduction: str, pred: Any, target: Any, out: Any) -> None:
    """``out[0]`` = the batch loss of ``fn`` (no recording)."""
    with ad.no_grad():
        v = _batch_loss(fn, who, reduction, ad.Tensor(target.astype(pred.dtype, copy=False)), ad.Tensor(pred))
    out[...] = v.value.reshape(out.shape)


def loss_gradient(fn: Callable[[Any, Any], Any], who: str, reduction: str, pred: Any, target: Any, out: Any) -> Any:
    """``out`` = d(batch loss)/d(pred), by recording ``fn`` on ``pred``."""
    leaf = ad.Tensor(pred, requires_grad=True)
    v = _batch_loss(fn, who, reduction, ad.Tensor(target.astype(pred.dtype, copy=False)), leaf)
    out[...] = ad.gradients(v, [leaf])[0]
    return out


class LossFunctionWrapper(Loss):
    """A loss function ``fn(y_true, y_pred)`` written with ``keras.ops`` (Keras'
    ``LossFunctionWrapper``, what ``compile(loss=fn)`` makes): the batch loss is the mean
    of what ``fn`` returns; its gradient comes from :mod:`fusednn.autodiff`."""

    def __init__(self, fn: Callable[[Any, Any], Any], reduction: str = "sum_over_batch_size",
                 name: str | None = None, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"LossFunctionWrapper needs a function fn(y_true, y_pred), got {type(fn).__name__}")
        self.loss_fn = fn  # not `fn`: that names a fused loss kernel (losses.LossFunction)
        self.loss_kwargs = kwargs
        self.name = name or getattr(fn, "__name__", "loss")
        self.reduction = check_reduction(reduction, f"loss {self.name!r}")

    @property
    def not_fused_reason(self) -> str:
        """Why a model with this loss trains on the per-op path."""
        return (f"the custom loss {self.name!r} is Python code, run and differentiated (fusednn.autodiff) each "
                "step, which the fused trainer cannot do")

    def _call(self, y_true: Any, y_pred: Any) -> Any:
        return self.loss_fn(y_true, y_pred, **self.loss_kwargs)

    def value(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> None:
        loss_value(self._call, f"loss function {self.name!r}", self.reduction, pred, target, out)

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> Any:
        return loss_gradient(self._call, f"loss function {self.name!r}", self.reduction, pred, target, out)

    def get_config(self) -> dict[str, Any]:
        if self.loss_kwargs:
            raise NotImplementedError(f"loss {self.name!r}: a wrapped function with keyword arguments cannot be saved")
        from .saving import custom_objects

        return {"fn": custom_objects.get_registered_name(self.loss_fn), "reduction": self.reduction, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects_map: dict[str, Any] | None = None) -> "Loss":
        from .saving import custom_objects

        name = config.get("fn")
        fn = custom_objects.get_registered_object(name, custom_objects_map) if isinstance(name, str) else None
        if fn is None or not callable(fn):
            raise ValueError(f"the loss function {name!r} is not known here: define it and decorate it with "
                             "keras.saving.register_keras_serializable(), or pass it in custom_objects "
                             "(saved files never hold code)")
        return cls(fn, reduction=config.get("reduction", "sum_over_batch_size"), name=config.get("name"))

    def __repr__(self) -> str:
        return f"LossFunctionWrapper({self.name})"


# registry.deserialize hands this from_config the load's custom_objects (functions are looked up there)
LossFunctionWrapper.from_config.__func__.takes_custom_objects = True  # type: ignore[attr-defined]
