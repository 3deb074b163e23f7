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
from .backends import numpy_ext
from .backends.base import LOSS_CLASS_BALANCING, LOSS_FROM_LOGITS

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
    def kernel_param(self) -> float | tuple[float, float, float, int]:
        """The kernel's loss constants: Huber's delta (0 for the losses without one), or
        the focal losses' (gamma, alpha, label_smoothing, flags) (backends.base.loss_params)."""
        return self._param

    def kernel_param_on(self, logits: bool) -> float | tuple[float, float, float, int]:
        """:attr:`kernel_param` for predictions that are logits or not (only the focal
        losses tell them apart)."""
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


# ---- the focal cross-entropies (Keras 3's formulas: fusednn/loss_math.h; float64 reference
# backends.numpy_ext.binary_focal64 / categorical_focal64). Unlike the plain cross-entropies
# they fold no output activation in: like Keras' torch backend they work on the sigmoid or
# softmax output (clipped to [1e-7, 1 - 1e-7]), or apply it themselves with from_logits.
class _Focal(LossFunction):
    """Shared arguments and checks of the focal cross-entropies."""

    def __init__(self, alpha: float, gamma: float, from_logits: bool, label_smoothing: float, axis: int,
                 reduction: str, name: str | None, dtype: Any) -> None:
        kind = type(self).__name__
        if isinstance(alpha, (list, tuple)) or np.ndim(alpha) != 0:
            raise ValueError(f"{kind}: only a scalar alpha is supported (a per-class list is not), got {alpha!r}")
        self.alpha, self.gamma = float(alpha), float(gamma)
        if not np.isfinite(self.alpha):
            raise ValueError(f"{kind}: alpha must be finite, got {alpha!r}")
        if not (np.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError(f"{kind}: gamma must be finite and >= 0, got {gamma!r}")
        self.label_smoothing = float(label_smoothing)
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"{kind}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        if isinstance(axis, bool) or axis not in (-1, 1):
            raise ValueError(f"{kind}: only the class axis (-1) is supported, got axis={axis!r}")
        if dtype not in (None, "float32"):
            raise ValueError(f"{kind}: dtype must be None or 'float32' (fusednn computes in float32), got {dtype!r}")
        self.from_logits, self.axis = bool(from_logits), -1
        super().__init__(reduction, name)

    def _flags(self) -> int:
        return 0

    @property
    def _param(self) -> tuple[float, float, float, int]:
        return self.kernel_param_on(self.from_logits)

    def kernel_param_on(self, logits: bool) -> tuple[float, float, float, int]:
        """The kernel's (gamma, alpha, label_smoothing, flags) for predictions that are
        logits (always with ``from_logits``; else when the output activation is folded)
        or probabilities."""
        logits = logits or self.from_logits
        return (self.gamma, self.alpha, self.label_smoothing, self._flags() | (LOSS_FROM_LOGITS if logits else 0))

    def value(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> None:
        be.loss_grad(self.fn, pred, target, None, out, self.kernel_param_on(logits))

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> Any:
        be.loss_grad(self.fn, pred, target, out, self._scratch(be), self.kernel_param_on(logits))
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis, "alpha": self.alpha, "gamma": self.gamma}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class BinaryFocalCrossentropy(_Focal):
    """Keras' binary focal cross-entropy (Lin et al. 2018), mean over all elements:
    ``(1 - p_t)^gamma * bce`` with ``p_t = t p + (1 - t)(1 - p)``, times ``alpha`` for
    class 1 and ``1 - alpha`` for class 0 with ``apply_class_balancing``; targets in
    [0, 1] smoothed towards 1/2 by ``label_smoothing``."""

    fn = "binary_focal_crossentropy"

    default_name = "binary_focal_crossentropy"

    def __init__(self, apply_class_balancing: bool = False, alpha: float = 0.25, gamma: float = 2.0,
                 from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size", name: str | None = None, dtype: Any = None) -> None:
        self.apply_class_balancing = bool(apply_class_balancing)
        super().__init__(alpha, gamma, from_logits, label_smoothing, axis, reduction, name, dtype)

    def _flags(self) -> int:
        return super()._flags() | (LOSS_CLASS_BALANCING if self.apply_class_balancing else 0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "apply_class_balancing": self.apply_class_balancing}


class CategoricalFocalCrossentropy(_Focal):
    """Keras' categorical focal cross-entropy, mean over samples of
    ``sum(alpha (1 - q)^gamma (-t log q))`` over the classes, ``q`` the prediction row
    normalised to sum 1 (a softmax of it with ``from_logits``); one-hot (or probability)
    target rows, smoothed towards 1/classes by ``label_smoothing``. A softmax output layer
    is folded in (the loss applies the softmax to its logits: the same formula, and it
    lets the fused trainer run it)."""

    fn = "categorical_focal_crossentropy"
    folds = "softmax"

    default_name = "categorical_focal_crossentropy"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0, axis: int = -1, reduction: str = "sum_over_batch_size",
                 name: str | None = None, dtype: Any = None) -> None:
        super().__init__(alpha, gamma, from_logits, label_smoothing, axis, reduction, name, dtype)

    def get_config(self) -> dict[str, Any]:
        return super().get_config()  # (every constructor argument is in _Focal's)


def _per_sample(fn: str, y_true: Any, y_pred: Any, param: tuple[float, float, float, int]) -> np.ndarray:
    """Keras' functional form: the loss of each sample (float32 host array of y_pred's
    shape without the class axis), from the float64 reference formulas."""
    def host(x: Any) -> np.ndarray:  # device (CuPy) arrays are copied to the host
        return np.asarray(get_backend().to_numpy(x) if hasattr(x, "__cuda_array_interface__") else x, np.float64)

    p, t = host(y_pred), host(y_true)
    if p.ndim == 0 or t.shape != p.shape:
        raise ValueError(f"{fn}: y_true has shape {t.shape} but y_pred has shape {p.shape} (they must match)")
    rows_p, rows_t = p.reshape(-1, p.shape[-1]), t.reshape(-1, p.shape[-1])
    if fn == "binary_focal_crossentropy":
        loss = numpy_ext.binary_focal64(rows_p, rows_t, *param)[0].mean(axis=1)
    else:
        loss = numpy_ext.categorical_focal64(rows_p, rows_t, *param)[0]
    return loss.reshape(p.shape[:-1]).astype(np.float32)


def binary_focal_crossentropy(y_true: Any, y_pred: Any, apply_class_balancing: bool = False, alpha: float = 0.25,
                              gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0,
                              axis: int = -1) -> np.ndarray:
    """Keras' ``binary_focal_crossentropy`` function: the loss of each sample (the mean
    over its last axis), unreduced, as a float32 NumPy array."""
    loss = BinaryFocalCrossentropy(apply_class_balancing, alpha, gamma, from_logits, label_smoothing, axis)
    return _per_sample(loss.fn, y_true, y_pred, loss._param)


def categorical_focal_crossentropy(y_true: Any, y_pred: Any, alpha: float = 0.25, gamma: float = 2.0,
                                   from_logits: bool = False, label_smoothing: float = 0.0,
                                   axis: int = -1) -> np.ndarray:
    """Keras' ``categorical_focal_crossentropy`` function: the loss of each sample (summed
    over its classes), unreduced, as a float32 NumPy array."""
    loss = CategoricalFocalCrossentropy(alpha, gamma, from_logits, label_smoothing, axis)
    return _per_sample(loss.fn, y_true, y_pred, loss._param)


_ALIASES.update({"binary_focal_crossentropy": BinaryFocalCrossentropy,
                 "binaryfocalcrossentropy": BinaryFocalCrossentropy,
                 "categorical_focal_crossentropy": CategoricalFocalCrossentropy,
                 "categoricalfocalcrossentropy": CategoricalFocalCrossentropy})
#: the functional forms, for get() (compile(loss=keras.losses.binary_focal_crossentropy))
_FUNCTIONS = {binary_focal_crossentropy: BinaryFocalCrossentropy,
              categorical_focal_crossentropy: CategoricalFocalCrossentropy}


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
    for fn, cls in _FUNCTIONS.items():  # a functional form, with its defaults (Keras wraps it alike)
        if identifier is fn:
            return cls()
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
