"""Keras' Normalization layer: fixed per-feature standardisation inside a model.

It holds a mean and a variance (from :meth:`Normalization.adapt` on data, from a
fitted :class:`fusednn.preprocessing.StandardScaler` or
:class:`~fusednn.preprocessing.MinMaxScaler`, or given directly) and maps
``x -> (x - mean) / max(sqrt(variance), 1e-7)``, or with ``invert=True`` back:
``x -> mean + x * max(sqrt(variance), 1e-7)`` (Keras 3's formulas). ``axis`` is
Keras': the axes that keep their own statistics (-1: one per feature; None: one
mean and variance over everything). The statistics are part of the layer's config,
so ``model.save`` keeps them and a loaded model normalises its inputs exactly as the
trained one did. They are not trained.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Buffers, Layer

#: Keras' backend.epsilon(): the smallest standard deviation divided by
_EPSILON = 1e-7


def _axis_tuple(axis: Any) -> tuple[int, ...]:
    if axis is None:
        return ()
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        return (int(axis),)
    try:
        out = tuple(int(a) for a in axis)
    except TypeError:
        raise ValueError(f"Normalization axis must be an int, a tuple of ints or None, got {axis!r}") from None
    return out


def _batch(item: Any) -> np.ndarray:
    """An adapt batch as float64: a tuple is (x, y[, sample_weight]) and gives x (Keras' rule)."""
    if isinstance(item, tuple):
        item = item[0]
    return np.asarray(item, dtype=np.float64)


class Normalization(Layer):
    """Keras' ``Normalization(axis=-1, mean=None, variance=None, invert=False)``: shifts
    and scales inputs (batch, features) to zero mean and unit variance with fixed
    statistics — ``adapt(data)``'s, or ``mean``/``variance`` given (a scalar, or one per
    feature, broadcast as Keras does). ``axis=-1`` (or 1) keeps one mean/variance per
    feature, ``axis=None`` one for all features; the batch axis 0 cannot be kept.
    ``invert=True`` maps normalised values back. Keras divides by ``max(sqrt(variance),
    1e-7)``: a constant feature maps to 0 on its training values, any other value is
    divided by 1e-7."""

    def __init__(self, axis: int | tuple[int, ...] | None = -1, mean: Any = None, variance: Any = None,
                 invert: bool = False, input_shape: Any = None, input_dim: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(name, input_shape, input_dim)
        self.axis = _axis_tuple(axis)
        if any(a not in (-1, 1) for a in self.axis) or len(set(a % 2 for a in self.axis)) < len(self.axis):
            raise ValueError(f"Normalization axis {axis!r} is not supported: fusednn layers take (batch, features), "
                             "so axis must be -1 (or 1: statistics per feature) or None (one for all); the batch "
                             "axis 0 has no fixed size")
        self.invert = bool(invert)
        if (mean is None) != (variance is None):
            raise ValueError("give both mean and variance, or neither (then call adapt)")
        self.mean = self.variance = None
        if mean is not None:
            self._set(np.asarray(mean, np.float64), np.asarray(variance, np.float64))
        self._scale = self._offset = None

    def _set(self, mean: np.ndarray, variance: np.ndarray) -> None:
        mean, variance = np.asarray(mean, np.float64), np.asarray(variance, np.float64)
        if mean.shape != variance.shape:
            raise ValueError(f"mean and variance must have the same shape, got {mean.shape} and {variance.shape}")
        if mean.ndim > len(self.axis):
            raise ValueError(f"mean and variance of shape {mean.shape} have more axes than axis={self.axis} keeps "
                             "(a scalar, or one value per feature with axis=-1)")
        if not (np.isfinite(mean).all() and np.isfinite(variance).all()) or (variance < 0).any():
            raise ValueError("mean must be finite and variance finite and >= 0")
        if mean.ndim == 1 and self.input_dim is not None and len(mean) not in (1, self.input_dim):
            raise ValueError(f"layer {self.name!r} takes {self.input_dim} features, got statistics for {len(mean)}")
        self.mean, self.variance = mean, variance
        if self.input_dim is None and mean.ndim == 1 and len(mean) > 1:
            self.input_dim = len(mean)
        if self.built:  # re-adapting a built layer (Keras allows it): new factors in place
            scale, offset = self._factors(self.input_dim)
            self._scale[...] = self.backend.asarray(scale)
            self._offset[...] = self.backend.asarray(offset)

    def adapt(self, data: Any) -> "Normalization":
        """Set the statistics from data: a (samples, features) array, or an iterable of
        such batches (a list, a generator, a ``keras.utils.PyDataset``-like object;
        (x, y) batches use x). The mean and population variance over the samples (and,
        with axis=None, over the features too), combined over batches exactly; returns
        the layer."""
        if isinstance(data, list) and data and all(hasattr(b, "__array__") or isinstance(b, tuple) for b in data):
            batches: Any = (_batch(b) for b in data)  # a list of batches
        elif isinstance(data, (np.ndarray, list, tuple)) or np.isscalar(data) or hasattr(data, "__array__"):
            batches = [np.asarray(data, dtype=np.float64)]
        elif hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (list, tuple)):
            batches = (_batch(data[i]) for i in range(len(data)))  # a PyDataset: batches by index
        elif hasattr(data, "__iter__"):
            batches = (_batch(b) for b in data)
        else:
            raise TypeError(f"adapt takes an array or an iterable of batches, got {type(data).__name__}")
        keep = len(self.axis) > 0
        count, mean, var = 0, None, None
        for b in batches:
            if b.size == 0:
                continue
            if keep and b.ndim != 2:
                raise ValueError(f"adapt needs 2-D batches (samples, features) with axis={self.axis}, "
                                 f"got shape {b.shape}")
            if not np.isfinite(b).all():
                raise ValueError("adapt: data contains NaN or Inf; clean it first (fusednn.preprocessing.clean)")
            if keep and mean is not None and b.shape[1] != mean.shape[0]:
                raise ValueError(f"adapt: a batch has {b.shape[1]} features, earlier ones {mean.shape[0]}")
            bm, bv = (b.mean(axis=0), b.var(axis=0)) if keep else (np.float64(b.mean()), np.float64(b.var()))
            n = b.shape[0] if keep else b.size
            if mean is None:
                count, mean, var = n, bm, bv
                continue
            # merging two groups' moments (Keras' lack-of-fit sum of squares, in float64)
            total = count + n
            w_new = n / total
            new_mean = mean * (1 - w_new) + bm * w_new
            var = (var + (mean - new_mean) ** 2) * (1 - w_new) + (bv + (bm - new_mean) ** 2) * w_new
            mean, count = new_mean, total
        if mean is None:
            raise ValueError("adapt needs at least one non-empty batch of data")
        self._set(mean, var)
        return self

    @classmethod
    def from_scaler(cls, scaler: Any, **kwargs: Any) -> "Normalization":
        """The layer doing what a fitted StandardScaler or MinMaxScaler's ``transform`` does."""
        from ..preprocessing import MinMaxScaler, StandardScaler

        if isinstance(scaler, StandardScaler):
            state = scaler.state_dict()
            n = int(scaler.n_features_in_)
            mean = state.get("mean_") if scaler.with_mean else None
            scale = state.get("scale_") if scaler.with_std else None
            mean = np.zeros(n) if mean is None else np.asarray(mean, np.float64)
            scale = np.ones(n) if scale is None else np.asarray(scale, np.float64)
            return cls(mean=mean, variance=scale**2, **kwargs)
        if isinstance(scaler, MinMaxScaler):
            # x * scale_ + min_ == (x - mean) / sqrt(variance) with these statistics
            scale, offset = np.asarray(scaler.scale_, np.float64), np.asarray(scaler.min_, np.float64)
            return cls(mean=-offset / scale, variance=1.0 / scale**2, **kwargs)
        raise TypeError(f"from_scaler takes a fitted StandardScaler or MinMaxScaler, got {type(scaler).__name__}")

    def _factors(self, input_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale, offset) per feature with y = x * scale + offset: Keras' formula."""
        mean = np.broadcast_to(self.mean, (input_dim,)) if self.mean.ndim == 0 or len(self.mean) == 1 \
            else self.mean
        std = np.maximum(np.sqrt(np.broadcast_to(self.variance, mean.shape)), _EPSILON)
        if self.invert:
            return std, mean.copy()
        return 1.0 / std, -mean / std

    def build(self, input_dim: int) -> None:
        if self.mean is None:
            raise RuntimeError(f"Normalization layer {self.name!r} has no statistics: call adapt(data) or "
                               "give mean= and variance= before building the model")
        if self.mean.ndim == 1 and len(self.mean) not in (1, input_dim):
            raise ValueError(f"layer {self.name!r} has statistics for {len(self.mean)} features, "
                             f"got {input_dim} input features")
        super().build(input_dim)
        scale, offset = self._factors(self.input_dim)
        self._scale = self.backend.asarray(scale)
        self._offset = self.backend.asarray(offset)

    def transform(self, x: Any, out: Any) -> Any:
        """x * scale + offset into ``out`` (backend arrays of the same shape)."""
        xp = self.backend.xp
        xp.multiply(x, self._scale, out=out)
        out += self._offset
        return out

    def forward(self, x: Any, buf: Buffers) -> Any:
        return self.transform(x, buf.y)

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        if not need_dx:
            return None
        if buf.dx is None:
            buf.dx = self.backend.empty(buf.y.shape)
        self.backend.xp.multiply(dy, self._scale, out=buf.dx)
        return buf.dx

    def get_config(self) -> dict[str, Any]:
        # the statistics, given or adapted, travel in the config (repr of a float64
        # round-trips exactly through JSON); Keras keeps adapted ones as weights instead
        return {**super().get_config(), "axis": list(self.axis), "invert": self.invert,
                "mean": None if self.mean is None else self.mean.tolist(),
                "variance": None if self.variance is None else self.variance.tolist()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Normalization":
        config = dict(config)
        if "axis" in config and isinstance(config["axis"], list):
            config["axis"] = tuple(config["axis"])  # [] is axis=None, as Keras saves it
        return cls(**config)

    def onnx_nodes(self, builder: Any, x: str) -> str:
        scale = self.backend.to_numpy(self._scale).astype(np.float32)
        offset = self.backend.to_numpy(self._offset).astype(np.float32)
        y = builder.node("Mul", [x, builder.constant(f"{self.name}.scale", scale)])
        return builder.node("Add", [y, builder.constant(f"{self.name}.offset", offset)])

    def __repr__(self) -> str:
        return f"<Normalization name={self.name!r} features={self.input_dim} axis={self.axis} invert={self.invert}>"
