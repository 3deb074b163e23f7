"""Losses with Keras' names. A loss gives a model two things on backend arrays:
its value for a batch (written to a one-element device array, so that a
training loop never waits for it) and its gradient w.r.t. the predictions.

The cross-entropies follow Keras: with ``from_logits=False`` they take
probabilities, and when the model's output layer is the matching sigmoid or
softmax they are computed from that layer's logits instead (what Keras' TF
backend does), in one stable fused kernel with gradient ``act(z) - y``. Only
without such a layer do they work on probabilities, clipped to [1e-7, 1-1e-7].
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import registry
from .backends import Backend, get_backend

EPSILON = 1e-7  # Keras' backend epsilon, used to clip probabilities


#: every Loss subclass by class name, for restoring a saved model's compile settings
REGISTRY = registry.Registry("loss")


class Loss:
    """Base class: ``value`` and ``gradient`` compute on arrays of backend ``be``
    (pred and target of equal shape, or one class index per row for sparse
    targets); with ``logits`` the model passes the output layer's pre-activation
    (see :meth:`on_logits`). Calling the loss on two arrays returns a float."""

    #: the output activation a cross-entropy folds into itself ('sigmoid', 'softmax')
    folds: str | None = None
    from_logits = False
    #: whether targets are class indices (one per sample) rather than rows like the output
    sparse = False

    def on_logits(self, output_activation: str) -> bool:
        """Whether a model whose last layer has ``output_activation`` feeds this loss
        that layer's logits: from_logits, or the activation this loss folds in."""
        return self.from_logits or (self.folds is not None and output_activation == self.folds)

    def folds_output(self, output_activation: str) -> bool:
        """Whether this loss takes the model's output activation into itself (a sigmoid
        or softmax output with the matching cross-entropy on probabilities): the model
        then runs its last layer without that activation and hands the loss logits."""
        return not self.from_logits and self.folds is not None and output_activation == self.folds

    def value(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> None:
        """Write the loss of the batch to ``out[0]`` without waiting for it."""
        raise NotImplementedError

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> Any:
        """Write d loss / d pred (d loss / d logits with ``logits``) into ``out`` and return it."""
        raise NotImplementedError

    def check_targets(self, y: Any, output_dim: int, be: Backend) -> None:
        """Raise ValueError for targets this loss cannot use (e.g. a class index out of range)."""

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        """The loss of predictions ``y_pred`` against ``y_true`` (Keras argument order),
        computed on the active backend; ``y_pred`` holds logits when ``from_logits``."""
        be = get_backend()
        t, p = be.asarray(y_true), be.asarray(y_pred)
        if p.ndim == 1:
            p = p.reshape(-1, 1)
        if self.sparse:
            t = t.reshape(-1, 1)
            if p.ndim != 2 or t.shape[0] != p.shape[0]:
                raise ValueError(f"y_true has {t.shape[0]} labels but y_pred has shape {tuple(p.shape)}")
        else:
            if t.ndim == 1 and p.shape[1] == 1:
                t = t.reshape(-1, 1)
            if t.shape != p.shape:
                raise ValueError(f"y_true has shape {tuple(t.shape)} but y_pred has shape {tuple(p.shape)}")
        if p.size == 0:
            raise ValueError("the loss of empty arrays is undefined")
        self.check_targets(t, p.shape[1], be)
        out = be.zeros((1,))
        self.value(be, p, t, out, logits=self.from_logits)
        return float(be.to_numpy(out)[0])

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY.register(cls)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (none here); losses with
        arguments extend it, and ``from_config`` inverts it."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Loss":
        """A new loss from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)^2) over all elements of the batch: Keras' MSE with its
    default 'sum_over_batch_size' reduction. Its gradient is 2 (pred - true) / size."""

    def value(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> None:
        be.mse(pred, target, out=out)

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> Any:
        be.mse_grad(pred, target, out, 2.0 / pred.size)
        return out


class _CrossEntropy(Loss):
    """Shared body of the cross-entropies: the fused logits kernel, or Keras' clipped
    formula on probabilities (elementwise backend-array arithmetic) otherwise."""

    kind = ""
    #: whether the class takes Keras' label_smoothing (binary and categorical do; sparse does not)
    smoothable = True

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        self.from_logits = bool(from_logits)
        label_smoothing = float(label_smoothing)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        if label_smoothing and not self.smoothable:
            raise ValueError(f"{type(self).__name__} has no label_smoothing (as in Keras)")
        self.label_smoothing = label_smoothing

    def get_config(self) -> dict[str, Any]:
        if not self.smoothable:
            return {"from_logits": self.from_logits}
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}

    def smooth_targets(self, be: Backend, target: Any) -> Any:
        """Keras' label smoothing of a target array (a new array): t (1 - s) + s / 2 for
        the binary loss, t (1 - s) + s / classes for the categorical one."""
        s = self.label_smoothing
        share = 0.5 * s if self.kind == "binary" else s / target.shape[-1]
        return (target * np.float32(1.0 - s) + np.float32(share)).astype(np.float32)

    def _scratch(self, be: Backend) -> Any:
        scratch = getattr(self, "_scratch_arrays", None)
        if scratch is None:
            scratch = self._scratch_arrays = {}
        if be.name not in scratch:
            scratch[be.name] = be.zeros((1,))
        return scratch[be.name]

    def _scale(self, pred: Any) -> float:
        return 1.0 / (pred.size if self.kind == "binary" else pred.shape[0])

    def value(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> None:
        if self.label_smoothing:
            target = self.smooth_targets(be, target)
        if logits:
            be.xent(self.kind, pred, target, None, out)
        else:
            out[...] = self._prob_loss_and_grad(be, pred, target, None)

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> Any:
        if self.label_smoothing:
            target = self.smooth_targets(be, target)
        if logits:
            # the loss value goes to a scratch element: without an out the backend
            # returns it as a float, which on a GPU would wait for the device
            be.xent(self.kind, pred, target, out, self._scratch(be), self._scale(pred))
        else:
            self._prob_loss_and_grad(be, pred, target, out)
        return out

    def _onehot(self, be: Backend, target: Any, classes: int) -> Any:
        xp = be.xp
        t = xp.zeros((target.shape[0], classes), dtype=np.float32)
        t[xp.arange(target.shape[0]), target.reshape(-1).astype(np.int64)] = 1
        return t

    def _prob_loss_and_grad(self, be: Backend, pred: Any, target: Any, grad: Any) -> Any:
        """Keras' formula on probabilities; returns the loss as a one-element device array."""
        xp = be.xp
        eps = np.float32(EPSILON)
        if self.kind == "binary":
            p = xp.clip(pred, eps, 1 - eps)
            loss = -xp.mean(target * xp.log(p) + (1 - target) * xp.log(1 - p), keepdims=True).reshape(1)
            if grad is not None:
                inside = (pred > eps) & (pred < 1 - eps)  # the clip passes no gradient outside
                grad[...] = xp.where(inside, (p - target) / (p * (1 - p)), 0) / np.float32(pred.size)
            return loss
        t = self._onehot(be, target, pred.shape[1]) if self.sparse else target
        s = pred.sum(axis=1, keepdims=True)
        q = pred / s
        qc = xp.clip(q, eps, 1 - eps)
        loss = -xp.mean(xp.sum(t * xp.log(qc), axis=1), keepdims=True).reshape(1)
        if grad is not None:
            g = xp.where((q > eps) & (q < 1 - eps), -t / qc, 0) / np.float32(pred.shape[0])
            grad[...] = (g - xp.sum(g * q, axis=1, keepdims=True)) / s  # through the normalisation
        return loss

    def __repr__(self) -> str:
        smooth = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"{type(self).__name__}(from_logits={self.from_logits}{smooth})"


class BinaryCrossentropy(_CrossEntropy):
    """Keras' binary cross-entropy, mean over all elements: targets in [0, 1] shaped
    like the outputs; folds a sigmoid output layer in."""

    kind, folds = "binary", "sigmoid"


class CategoricalCrossentropy(_CrossEntropy):
    """Keras' categorical cross-entropy, mean over samples: one-hot (or probability)
    target rows; folds a softmax output layer in."""

    kind, folds = "categorical", "softmax"


class SparseCategoricalCrossentropy(_CrossEntropy):
    """Keras' sparse categorical cross-entropy: one integer class index per sample
    (shape (n,) or (n, 1)); folds a softmax output layer in."""

    kind, folds, sparse = "sparse", "softmax", True
    smoothable = False

    def check_targets(self, y: Any, output_dim: int, be: Backend) -> None:
        xp = be.xp if isinstance(y, be.xp.ndarray) else np  # targets may still be on the host
        labels = y.reshape(-1)
        bad = (labels < 0) | (labels >= output_dim) | (labels != xp.floor(labels))
        if bool(bad.any()):
            i = int(xp.argmax(bad))
            raise ValueError(f"sparse targets must be class indices in [0, {output_dim}); "
                             f"sample {i} has {float(labels[i])!r}")


_ALIASES = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
            "meansquarederror": MeanSquaredError,
            "binary_crossentropy": BinaryCrossentropy, "binarycrossentropy": BinaryCrossentropy,
            "bce": BinaryCrossentropy,
            "categorical_crossentropy": CategoricalCrossentropy,
            "categoricalcrossentropy": CategoricalCrossentropy,
            "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "sparsecategoricalcrossentropy": SparseCategoricalCrossentropy}


# ---- the Keras losses beyond MSE and the cross-entropies: mean absolute (percentage)
# error, mean squared logarithmic error, Huber, log-cosh, the hinges, KL divergence,
# Poisson and cosine similarity, with Keras 3's names, arguments, formulas, clipping
# constants and default 'sum_over_batch_size' reduction. Each runs as one fused
# value-and-gradient kernel per backend (Backend.loss_grad; fusednn/loss_math.h) on the
# per-op path and inside the fused trainer.
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

    @property
    def kernel_param(self) -> float:
        """The kernel's loss parameter (Huber's delta; 0 for the others)."""
        return self._param

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
_EXTRA_ALIASES = {
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError, "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError, "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "huber": Huber, "huber_loss": Huber,
    "log_cosh": LogCosh, "logcosh": LogCosh,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "kld": KLDivergence, "kl_divergence": KLDivergence, "kullback_leibler_divergence": KLDivergence,
    "poisson": Poisson, "cosine_similarity": CosineSimilarity,
}
_EXTRA_ALIASES.update({cls.__name__.lower(): cls for cls in set(_EXTRA_ALIASES.values())})
_ALIASES.update(_EXTRA_ALIASES)
KLD = KLDivergence  # Keras' legacy class alias


def get(identifier: str | Loss) -> Loss:
    """A loss from a Keras name ('mse', 'mean_squared_error', 'MeanSquaredError') or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is not None:
            return cls()
    names = ", ".join(repr(n) for n in sorted(_ALIASES))
    raise ValueError(f"unknown loss {identifier!r}; valid: {names} (or their class names) or a Loss instance")


def serialize(loss: Loss) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of a loss, as Keras saves it."""
    return registry.serialize(loss, REGISTRY)


def deserialize(config: dict[str, Any]) -> Loss:
    """The loss :func:`serialize` described."""
    return registry.deserialize(config, REGISTRY)
