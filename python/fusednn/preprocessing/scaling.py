"""Scalers with scikit-learn's conventions: :class:`StandardScaler`, :class:`MinMaxScaler`.

``fit`` returns self; ``transform``, ``inverse_transform`` and ``fit_transform``
work as in scikit-learn, with the same fitted attributes. The statistics are plain
arrays (``state_dict``) and the settings plain values (``get_config``), so a model
can save them without pickle. Inputs may be lists, NumPy or CuPy arrays (copied to
the host once).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import to_host as _host

__all__ = ["NotFittedError", "StandardScaler", "MinMaxScaler"]


class NotFittedError(ValueError, AttributeError):
    """Raised when a scaler is used before ``fit`` (a ValueError and an
    AttributeError, as scikit-learn's exception of the same name)."""



class _Scaler:
    """Shared checks and (de)serialisation; subclasses list their fitted arrays in
    ``_state`` and implement ``_fit`` / ``_forward`` / ``_backward`` on float64."""

    _state: tuple[str, ...] = ()

    def _check_x(self, x: Any) -> np.ndarray:
        x = _host(x)
        if x.ndim != 2:
            raise ValueError(
                f"{type(self).__name__} expects a 2-d array (n_samples, n_features), got shape {x.shape}; "
                "reshape a single feature with x.reshape(-1, 1)"
            )
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{type(self).__name__} expects numeric data, got dtype {x.dtype}")
        if not np.all(np.isfinite(x)):
            raise ValueError(
                f"{type(self).__name__} got NaN or infinite values; remove them first "
                "(fusednn.preprocessing.clean)"
            )
        return x

    def _check_fitted(self, x: Any) -> tuple[np.ndarray, np.dtype]:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")
        x = self._check_x(x)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        # Float inputs keep their dtype (float32 stays float32); integers become float64.
        return x.astype(np.float64), (x.dtype if x.dtype.kind == "f" else np.dtype(np.float64))

    def fit(self, X: Any, y: Any = None) -> "_Scaler":
        """Learn the statistics of ``X`` (n_samples, n_features); ``y`` is ignored. Returns self."""
        x = self._check_x(X)
        if len(x) == 0:
            raise ValueError(f"{type(self).__name__} needs at least 1 sample to fit, got shape {x.shape}")
        self._fit(x.astype(np.float64))
        self.n_features_in_ = x.shape[1]
        self.n_samples_seen_ = x.shape[0]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Scale ``X`` with the fitted statistics."""
        x, dtype = self._check_fitted(X)
        return self._forward(x).astype(dtype)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Undo :meth:`transform`: map scaled data back to the original units."""
        x, dtype = self._check_fitted(X)
        return self._backward(x).astype(dtype)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X, y).transform(X)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The fitted statistics as plain NumPy arrays (no pickle needed to save them);
        :meth:`load_state_dict` on a scaler built from the same config restores them."""
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")
        state = {k: np.asarray(getattr(self, k)) for k in self._state_keys()}
        state["n_features_in_"] = np.asarray(self.n_features_in_)
        state["n_samples_seen_"] = np.asarray(self.n_samples_seen_)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> "_Scaler":
        """Restore statistics saved by :meth:`state_dict`; returns self, ready to transform."""
        keys = self._state_keys()
        missing = [k for k in keys + ["n_features_in_", "n_samples_seen_"] if k not in state]
        if missing:
            raise ValueError(f"{type(self).__name__} state is missing {missing}")
        n_features = int(np.asarray(state["n_features_in_"]))
        for k in self._state:
            value = np.asarray(state[k], dtype=np.float64) if k in keys else None
            if value is not None and value.shape != (n_features,):
                raise ValueError(f"{k} has shape {value.shape}, expected ({n_features},)")
            setattr(self, k, value)
        self.n_features_in_ = n_features
        self.n_samples_seen_ = int(np.asarray(state["n_samples_seen_"]))
        return self

    def _state_keys(self) -> list[str]:
        """The fitted arrays this configuration has (the others are None)."""
        return list(self._state)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-serialisable values; ``from_config`` inverts it."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        """A new, unfitted scaler with the settings from :meth:`get_config`."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class StandardScaler(_Scaler):
    """Standardise features to zero mean and unit variance: z = (x - mean_) / scale_,
    as ``sklearn.preprocessing.StandardScaler``. ``var_`` is the population variance
    (ddof=0) and ``scale_`` its square root, except that (near-)constant features get
    scale 1 so they are centred, not divided by zero. With ``with_mean=False`` the
    data are not centred; with ``with_std=False`` not scaled (``var_`` and ``scale_``
    are then None; with both False ``mean_`` is None too)."""

    _state = ("mean_", "var_", "scale_")

    def __init__(self, *, with_mean: bool = True, with_std: bool = True) -> None:
        self.with_mean = with_mean
        self.with_std = with_std

    def _fit(self, x: np.ndarray) -> None:
        n = len(x)
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        self.mean_ = mean if (self.with_mean or self.with_std) else None
        self.var_ = var if self.with_std else None
        if self.with_std:
            # sklearn's bound on the rounding error of a two-pass variance: below it the
            # feature is constant and dividing would only amplify rounding noise.
            eps = np.finfo(np.float64).eps
            constant = var <= n * eps * var + (n * mean * eps) ** 2
            self.scale_ = np.where(constant, 1.0, np.sqrt(var))
        else:
            self.scale_ = None

    def _state_keys(self) -> list[str]:
        if not self.with_std:
            return ["mean_"] if self.with_mean else []
        return ["mean_", "var_", "scale_"]

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self.with_mean:
            x = x - self.mean_
        return x / self.scale_ if self.with_std else x

    def _backward(self, x: np.ndarray) -> np.ndarray:
        if self.with_std:
            x = x * self.scale_
        return x + self.mean_ if self.with_mean else x

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-serialisable values; ``from_config`` inverts it."""
        return {"with_mean": self.with_mean, "with_std": self.with_std}


class MinMaxScaler(_Scaler):
    """Scale each feature linearly so its fitted minimum and maximum map to
    ``feature_range``: x * scale_ + min_, as ``sklearn.preprocessing.MinMaxScaler``.
    Constant features (data_range_ 0) get scale_ = range width, so they map to
    ``feature_range[0]``. ``clip=True`` clips transformed values to the range, for
    data outside the fitted minimum/maximum."""

    _state = ("data_min_", "data_max_", "data_range_", "scale_", "min_")

    def __init__(self, feature_range: tuple[float, float] = (0, 1), *, clip: bool = False) -> None:
        self.feature_range = feature_range
        self.clip = clip

    def _fit(self, x: np.ndarray) -> None:
        lo, hi = self.feature_range
        if lo >= hi:
            raise ValueError(
                "Minimum of desired feature range must be smaller than maximum. "
                f"Got {tuple(self.feature_range)}."
            )
        self.data_min_ = x.min(axis=0)
        self.data_max_ = x.max(axis=0)
        self.data_range_ = self.data_max_ - self.data_min_
        # sklearn treats ranges within 10 ulp of zero as constant, to avoid huge scales.
        safe_range = np.where(self.data_range_ < 10 * np.finfo(np.float64).eps, 1.0, self.data_range_)
        self.scale_ = (hi - lo) / safe_range
        self.min_ = lo - self.data_min_ * self.scale_

    def _forward(self, x: np.ndarray) -> np.ndarray:
        out = x * self.scale_ + self.min_
        return np.clip(out, *self.feature_range) if self.clip else out

    def _backward(self, x: np.ndarray) -> np.ndarray:
        return (x - self.min_) / self.scale_

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-serialisable values; ``from_config`` inverts it."""
        return {"feature_range": [float(v) for v in self.feature_range], "clip": self.clip}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MinMaxScaler":
        """A new, unfitted scaler with the settings from :meth:`get_config`."""
        return cls(tuple(config["feature_range"]), clip=config["clip"])
