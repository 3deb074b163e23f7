"""Keras' Normalization layer: fixed per-feature standardisation inside a model.

It holds a mean and a variance per feature (from :meth:`Normalization.adapt` on
data, from a fitted :class:`fusednn.preprocessing.StandardScaler` or
:class:`~fusednn.preprocessing.MinMaxScaler`, or given directly) and maps
``x -> (x - mean) / sqrt(variance)``. The statistics are part of the layer's
config, so ``model.save`` keeps them and a loaded model normalises its inputs
exactly as the trained one did. They are not trained.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Buffers, Layer


class Normalization(Layer):
    """``(x - mean) / sqrt(variance)`` per feature; ``mean``/``variance`` given, or set by
    :meth:`adapt` / :meth:`from_scaler` before the model is built. A zero variance
    is treated as one (the feature is only centred), as scikit-learn does."""

    def __init__(self, mean: Any = None, variance: Any = None, input_shape: Any = None,
                 input_dim: int | None = None, name: str | None = None) -> None:
        super().__init__(name, input_shape, input_dim)
        if (mean is None) != (variance is None):
            raise ValueError("give both mean and variance, or neither (then call adapt)")
        self.mean = self.variance = None
        if mean is not None:
            self._set(np.asarray(mean, np.float64), np.asarray(variance, np.float64))
        self._scale = self._offset = None

    def _set(self, mean: np.ndarray, variance: np.ndarray) -> None:
        mean, variance = np.atleast_1d(mean).astype(np.float64), np.atleast_1d(variance).astype(np.float64)
        if mean.shape != variance.shape or mean.ndim != 1:
            raise ValueError(f"mean and variance must be 1-D of equal length, got {mean.shape} and {variance.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(variance).all()) or (variance < 0).any():
            raise ValueError("mean must be finite and variance finite and >= 0")
        if self.input_dim is not None and len(mean) != self.input_dim:
            raise ValueError(f"layer {self.name!r} takes {self.input_dim} features, got statistics for {len(mean)}")
        if self.built:
            raise RuntimeError(f"layer {self.name!r} is already built; set its statistics before building")
        self.mean, self.variance = mean, variance
        if self.input_dim is None:
            self.input_dim = len(mean)

    def adapt(self, data: Any) -> "Normalization":
        """Set the statistics from data (n, features): its mean and population variance."""
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"adapt needs a non-empty 2-D array (samples, features), got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("adapt: data contains NaN or Inf; clean it first (fusednn.preprocessing.clean)")
        self._set(x.mean(axis=0), x.var(axis=0))
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

    def build(self, input_dim: int) -> None:
        if self.mean is None:
            raise RuntimeError(f"Normalization layer {self.name!r} has no statistics: call adapt(data) or "
                               "give mean= and variance= before building the model")
        super().build(input_dim)
        std = np.sqrt(self.variance)
        scale = 1.0 / np.where(std > 0, std, 1.0)
        self._scale = self.backend.asarray(scale)
        self._offset = self.backend.asarray(-self.mean * scale)

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
        # repr of a float64 round-trips exactly through JSON
        return {**super().get_config(), "mean": None if self.mean is None else self.mean.tolist(),
                "variance": None if self.variance is None else self.variance.tolist()}

    def onnx_nodes(self, builder: Any, x: str) -> str:
        scale = self.backend.to_numpy(self._scale).astype(np.float32)
        offset = self.backend.to_numpy(self._offset).astype(np.float32)
        y = builder.node("Mul", [x, builder.constant(f"{self.name}.scale", scale)])
        return builder.node("Add", [y, builder.constant(f"{self.name}.offset", offset)])

    def __repr__(self) -> str:
        return f"<Normalization name={self.name!r} features={self.input_dim}>"
