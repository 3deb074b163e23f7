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

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits}

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
        if logits:
            be.xent(self.kind, pred, target, None, out)
        else:
            out[...] = self._prob_loss_and_grad(be, pred, target, None)

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> Any:
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
        return f"{type(self).__name__}(from_logits={self.from_logits})"


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


def get(identifier: str | Loss) -> Loss:
    """A loss from a Keras name ('mse', 'mean_squared_error', 'MeanSquaredError') or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is not None:
            return cls()
    raise ValueError(f"unknown loss {identifier!r}; valid: 'mse', 'mean_squared_error', "
                     "'binary_crossentropy', 'categorical_crossentropy', 'sparse_categorical_crossentropy' "
                     "(or their class names) or a Loss instance")


def serialize(loss: Loss) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of a loss, as Keras saves it."""
    return registry.serialize(loss, REGISTRY)


def deserialize(config: dict[str, Any]) -> Loss:
    """The loss :func:`serialize` described."""
    return registry.deserialize(config, REGISTRY)
