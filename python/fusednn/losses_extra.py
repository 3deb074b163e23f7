"""The Keras losses beyond MSE and the cross-entropies: mean absolute (percentage)
error, mean squared logarithmic error, Huber, log-cosh, the hinges, KL divergence,
Poisson and cosine similarity, with Keras 3's names, arguments, formulas, clipping
constants and default 'sum_over_batch_size' reduction. Each runs as one fused
value-and-gradient kernel per backend (``Backend.loss_grad``; fusednn/loss_math.h)
on the per-op path and inside the fused trainer. Exported from :mod:`fusednn.losses`.
"""
from __future__ import annotations

from typing import Any

from .backends import Backend
from .losses import Loss

_REDUCTIONS = ("sum_over_batch_size",)


class LossFunction(Loss):
    """A loss computed by the ``loss_grad`` kernel named ``fn``: the mean over all
    elements (over rows for the row losses) of Keras' per-element formula."""

    #: the kernel's loss name (fusednn.backends.base.LOSS_FNS)
    fn: str = ""
    #: Keras' default ``name`` of the loss object
    default_name: str = ""

    def __init__(self, reduction: str = "sum_over_batch_size", name: str | None = None) -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction {reduction!r} is not supported "
                             f"(only Keras' default 'sum_over_batch_size')")
        self.reduction = reduction
        self.name = name or self.default_name or self.fn

    @property
    def _param(self) -> float:
        return 0.0

    def _scratch(self, be: Backend) -> Any:
        scratch = getattr(self, "_scratch_arrays", None)
        if scratch is None:
            scratch = self._scratch_arrays = {}
        if be.name not in scratch:
            scratch[be.name] = be.zeros((1,))
        return scratch[be.name]

    def value(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> None:
        be.loss_grad(self.fn, pred, target, None, out, self._param)

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> Any:
        # the value goes to a scratch element: returning it as a float would wait for a GPU
        be.loss_grad(self.fn, pred, target, out, self._scratch(be), self._param)
        return out

    def get_config(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MeanAbsoluteError(LossFunction):
    """mean(|y_pred - y_true|) (Keras' ``MeanAbsoluteError``, 'mae')."""

    fn = "mae"

    default_name = "mean_absolute_error"


class MeanAbsolutePercentageError(LossFunction):
    """100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7)) ('mape')."""

    fn = "mape"

    default_name = "mean_absolute_percentage_error"


class MeanSquaredLogarithmicError(LossFunction):
    """mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))^2) ('msle')."""

    fn = "msle"

    default_name = "mean_squared_logarithmic_error"


class Huber(LossFunction):
    """0.5 e^2 where |e| <= delta, else delta |e| - 0.5 delta^2, e = y_pred - y_true, averaged."""

    fn = "huber"

    default_name = "huber_loss"

    def __init__(self, delta: float = 1.0, reduction: str = "sum_over_batch_size",
                 name: str | None = None) -> None:
        delta = float(delta)
        if not delta >= 0:
            raise ValueError(f"Huber: delta must be >= 0, got {delta}")
        self.delta = delta
        super().__init__(reduction, name)

    @property
    def _param(self) -> float:
        return self.delta

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "delta": self.delta}

    def __repr__(self) -> str:
        return f"Huber(delta={self.delta})"


class LogCosh(LossFunction):
    """mean(log(cosh(y_pred - y_true))), computed as x + softplus(-2x) - log 2 (no overflow)."""

    fn = "log_cosh"

    default_name = "log_cosh"


class Hinge(LossFunction):
    """mean(max(1 - y_true * y_pred, 0)); targets in {-1, 1}, or {0, 1} (converted to
    {-1, 1} when every target of the batch is 0 or 1, as Keras does)."""

    fn = "hinge"

    default_name = "hinge"


class SquaredHinge(LossFunction):
    """mean(max(1 - y_true * y_pred, 0)^2), targets as for :class:`Hinge`."""

    fn = "squared_hinge"

    default_name = "squared_hinge"


class CategoricalHinge(LossFunction):
    """Per sample max(neg - pos + 1, 0), pos = sum(y_true * y_pred), neg = max((1 - y_true) * y_pred),
    averaged over samples."""

    fn = "categorical_hinge"

    default_name = "categorical_hinge"


class KLDivergence(LossFunction):
    """Per sample sum(t * log(t / p)) with t, p clipped to [1e-7, 1], averaged over samples."""

    fn = "kl_divergence"

    default_name = "kl_divergence"


class Poisson(LossFunction):
    """mean(y_pred - y_true * log(y_pred + 1e-7))."""

    fn = "poisson"

    default_name = "poisson"


class CosineSimilarity(LossFunction):
    """Per sample -sum(l2_normalize(y_true) * l2_normalize(y_pred)) over the last axis
    (norms floored at 1e-7, as Keras), averaged over samples: -1 is a perfect match."""

    fn = "cosine_similarity"

    default_name = "cosine_similarity"

    def __init__(self, axis: int = -1, reduction: str = "sum_over_batch_size",
                 name: str | None = None) -> None:
        if axis not in (-1, 1):
            raise ValueError(f"CosineSimilarity: only the feature axis (-1) is supported, got axis={axis}")
        self.axis = -1
        super().__init__(reduction, name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


#: Keras' string names (functions, legacy short names) -> class
ALIASES = {
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError, "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError, "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "huber": Huber, "huber_loss": Huber,
    "log_cosh": LogCosh, "logcosh": LogCosh,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "kld": KLDivergence, "kl_divergence": KLDivergence, "kullback_leibler_divergence": KLDivergence,
    "poisson": Poisson, "cosine_similarity": CosineSimilarity,
}
ALIASES.update({cls.__name__.lower(): cls for cls in set(ALIASES.values())})
