"""Losses with Keras' names. A loss gives a model two things on backend arrays:
its value for a batch (written to a one-element device array, so that a
training loop never waits for it) and its gradient w.r.t. the predictions."""
from __future__ import annotations

from typing import Any

from . import registry
from .backends import Backend, get_backend


#: every Loss subclass by class name, for restoring a saved model's compile settings
REGISTRY = registry.Registry("loss")


class Loss:
    """Base class: ``value`` and ``gradient`` compute on arrays of backend ``be``
    (pred and target of equal shape); calling the loss on two arrays returns a float."""

    def value(self, be: Backend, pred: Any, target: Any, out: Any) -> None:
        """Write the loss of the batch to ``out[0]`` without waiting for it."""
        raise NotImplementedError

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any) -> Any:
        """Write d loss / d pred into ``out`` and return it."""
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        """The loss of predictions ``y_pred`` against ``y_true`` (Keras argument order),
        computed on the active backend."""
        be = get_backend()
        t, p = be.asarray(y_true), be.asarray(y_pred)
        if t.shape != p.shape:
            raise ValueError(f"y_true has shape {tuple(t.shape)} but y_pred has shape {tuple(p.shape)}")
        if t.size == 0:
            raise ValueError("the loss of empty arrays is undefined")
        out = be.zeros((1,))
        self.value(be, p, t, out)
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

    def value(self, be: Backend, pred: Any, target: Any, out: Any) -> None:
        be.mse(pred, target, out=out)

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any) -> Any:
        be.mse_grad(pred, target, out, 2.0 / pred.size)
        return out


_ALIASES = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
            "meansquarederror": MeanSquaredError}


def get(identifier: str | Loss) -> Loss:
    """A loss from a Keras name ('mse', 'mean_squared_error', 'MeanSquaredError') or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is not None:
            return cls()
    raise ValueError(f"unknown loss {identifier!r}; valid: 'mse', 'mean_squared_error', "
                     "'MeanSquaredError' or a Loss instance")


def serialize(loss: Loss) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of a loss, as Keras saves it."""
    return registry.serialize(loss, REGISTRY)


def deserialize(config: dict[str, Any]) -> Loss:
    """The loss :func:`serialize` described."""
    return registry.deserialize(config, REGISTRY)
