"""Data preparation in pure NumPy: scalers, cleaning, splitting and augmentation.

- :class:`StandardScaler` and :class:`MinMaxScaler` follow scikit-learn's
  conventions (``fit`` returns self; ``transform``, ``inverse_transform``,
  ``fit_transform``; the same fitted attributes) and expose their statistics as
  plain arrays (``state_dict``) and their settings as plain values
  (``get_config``), so a model can save them without pickle.
- :func:`clean` drops or imputes non-finite values and drops outliers, and
  reports which rows went and why.
- :func:`train_test_split` is scikit-learn's, index for index for the same
  integer ``random_state`` (1-d ``stratify``).
- :class:`RandomFlip`, :class:`RandomRotation`, :class:`RandomZoom`,
  :class:`RandomResizedCrop`, :class:`GaussianNoise` and the
  :class:`Augmentation` pipeline transform whole batches at once.
  **Augmentation is for training batches only**: ``fit`` applies it to each
  training batch as it is drawn and never to validation or test data, whose
  scores must describe the data as it is.

Inputs may be lists, NumPy arrays or CuPy arrays (copied to the host once).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "NotFittedError",
    "StandardScaler",
    "MinMaxScaler",
    "CleanReport",
    "clean",
    "train_test_split",
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomResizedCrop",
    "GaussianNoise",
    "Augmentation",
    "Compose",
]

def _host(a: Any) -> np.ndarray:
    # CuPy arrays expose .get() for the device->host copy; np.asarray on them fails.
    if hasattr(a, "__cuda_array_interface__") and hasattr(a, "get"):
        a = a.get()
    return np.asarray(a)


class NotFittedError(ValueError, AttributeError):
    """Raised when a scaler is used before ``fit`` (a ValueError and an
    AttributeError, as scikit-learn's exception of the same name)."""


# --------------------------------------------------------------------------- scalers

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


# --------------------------------------------------------------------------- cleaning

@dataclass(frozen=True)
class CleanReport:
    """What :func:`clean` did. Row numbers are positions in the input. ``kept``: the
    input rows returned, in order (use it to filter other arrays the same way);
    ``nonfinite_rows``: removed for a NaN/inf in x or y; ``outlier_rows``: removed as
    outliers; ``imputed``: (k, 2) array of [row, column] cells of x replaced by the
    column median."""

    n_samples_in: int
    kept: np.ndarray
    nonfinite_rows: np.ndarray
    outlier_rows: np.ndarray
    imputed: np.ndarray

    @property
    def removed(self) -> np.ndarray:
        """All removed rows, sorted."""
        return np.union1d(self.nonfinite_rows, self.outlier_rows)

    @property
    def n_removed(self) -> int:
        """How many rows were removed."""
        return len(self.removed)

    def __str__(self) -> str:
        return (
            f"clean: kept {len(self.kept)} of {self.n_samples_in} rows; removed "
            f"{len(self.nonfinite_rows)} with non-finite values, {len(self.outlier_rows)} outliers; "
            f"imputed {len(self.imputed)} cells"
        )


_F32_MAX = float(np.finfo(np.float32).max)


def _nonfinite_mask(a: np.ndarray) -> np.ndarray:
    # A finite float64 beyond float32's range becomes inf when training converts it to
    # float32, so it counts as non-finite here, where its row can still be named.
    if a.dtype.kind in "fc":
        bad = ~np.isfinite(a)
        if a.dtype.itemsize > 4 and a.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                bad |= np.abs(a) > _F32_MAX
        return bad
    return np.zeros(a.shape, dtype=bool)


def _outlier_rows(x: np.ndarray, valid: np.ndarray, method: str, z_thresh: float, iqr_k: float) -> np.ndarray:
    """Rows with a valid cell outside the column's bounds; statistics use valid cells only."""
    data = np.where(valid, x, np.nan).astype(np.float64)
    flagged = np.zeros(x.shape, dtype=bool)
    usable = valid.any(axis=0)
    if not usable.any():
        return flagged.any(axis=1)
    d = data[:, usable]
    with np.errstate(invalid="ignore"):
        if method == "zscore":
            mean, std = np.nanmean(d, axis=0), np.nanstd(d, axis=0)
            # A constant column has std 0: nothing in it is an outlier.
            out = (np.abs(d - mean) > z_thresh * std) & (std > 0)
        else:
            q1, q3 = np.nanpercentile(d, [25, 75], axis=0)
            spread = iqr_k * (q3 - q1)
            out = (d < q1 - spread) | (d > q3 + spread)
    flagged[:, usable] = out & valid[:, usable]
    return flagged.any(axis=1)


def clean(
    x: Any,
    y: Any = None,
    *,
    nonfinite: str = "drop",
    outliers: str | None = None,
    z_thresh: float = 3.0,
    iqr_k: float = 1.5,
) -> tuple[np.ndarray, np.ndarray | None, CleanReport]:
    """Remove or repair bad rows of ``x`` (n_samples, ...) and the matching rows of
    ``y``; returns ``(x_clean, y_clean, report)`` (``y_clean`` None when ``y`` is).
    ``nonfinite``: 'drop' removes rows with a NaN/inf (or a value beyond float32's range,
    which training would turn into inf) in x or y; 'impute' replaces
    NaN/inf in x by the median of that column's finite values (rows with a non-finite
    target are still dropped: targets are never invented); 'raise' raises ValueError
    naming the first bad row and column. ``outliers``: None keeps all rows; 'zscore'
    drops rows with a value more than ``z_thresh`` population standard deviations from
    its column mean; 'iqr' drops rows with a value outside [Q1 - iqr_k*IQR, Q3 +
    iqr_k*IQR]. Outlier statistics are computed once, per column of x, over the finite
    values of the rows left after the non-finite step; imputed cells are never outliers.
    The :class:`CleanReport` lists the rows removed and why."""
    if nonfinite not in ("drop", "impute", "raise"):
        raise ValueError(f"nonfinite must be 'drop', 'impute' or 'raise', got {nonfinite!r}")
    if outliers not in (None, "zscore", "iqr"):
        raise ValueError(f"outliers must be None, 'zscore' or 'iqr', got {outliers!r}")
    if z_thresh <= 0 or iqr_k < 0:
        raise ValueError(f"z_thresh must be > 0 and iqr_k >= 0, got {z_thresh} and {iqr_k}")
    x = _host(x)
    if x.ndim == 0 or x.dtype.kind not in "biuf":
        raise ValueError(f"x must be a numeric array of samples, got dtype {x.dtype} and shape {x.shape}")
    n = len(x)
    x2 = x.reshape(n, -1)
    y_arr = None if y is None else _host(y)
    if y_arr is not None and len(y_arr) != n:
        raise ValueError(f"x and y have different lengths: {n} != {len(y_arr)}")

    bad_x = _nonfinite_mask(x2)
    bad_y = np.zeros(n, dtype=bool) if y_arr is None else _nonfinite_mask(y_arr.reshape(n, -1)).any(axis=1)
    if nonfinite == "raise":
        if bad_x.any():
            r, c = np.argwhere(bad_x)[0]
            raise ValueError(f"x has a non-finite value ({x2[r, c]}) at row {r}, column {c}")
        if bad_y.any():
            r = int(np.argmax(bad_y))
            raise ValueError(f"y has a non-finite value at row {r}")
    drop_nonfinite = bad_y | (bad_x.any(axis=1) if nonfinite == "drop" else False)

    rows = np.flatnonzero(~drop_nonfinite)
    x_rows = x2[rows]
    valid = ~bad_x[rows]
    imputed = np.empty((0, 2), dtype=np.int64)
    if nonfinite == "impute" and not valid.all():
        need = ~valid.all(axis=0)
        empty = np.flatnonzero(need & ~valid.any(axis=0))
        if empty.size:
            raise ValueError(f"column {empty[0]} of x has no finite value to impute from")
        medians = np.zeros(x_rows.shape[1])
        medians[need] = np.nanmedian(np.where(valid, x_rows, np.nan)[:, need], axis=0)
        x_rows = np.where(valid, x_rows, medians)
        cells = np.argwhere(~valid)
        imputed = np.column_stack([rows[cells[:, 0]], cells[:, 1]])

    is_outlier = np.zeros(len(rows), dtype=bool)
    if outliers is not None:
        is_outlier = _outlier_rows(x_rows, valid, outliers, z_thresh, iqr_k)
    keep = ~is_outlier
    report = CleanReport(
        n_samples_in=n,
        kept=rows[keep],
        nonfinite_rows=np.flatnonzero(drop_nonfinite),
        outlier_rows=rows[is_outlier],
        imputed=imputed,
    )
    x_clean = x_rows[keep].reshape((-1,) + x.shape[1:])
    y_clean = None if y_arr is None else y_arr[report.kept]
    return x_clean, y_clean, report


# --------------------------------------------------------------------------- splitting

def _split_sizes(n: int, test_size: Any, train_size: Any) -> tuple[int, int]:
    """scikit-learn's _validate_shuffle_split: (n_train, n_test), floats rounded test-up."""
    if test_size is None and train_size is None:
        test_size = 0.25
    for name, size in (("test_size", test_size), ("train_size", train_size)):
        kind = np.asarray(size).dtype.kind
        if size is not None and kind not in "if":
            raise ValueError(f"Invalid value for {name}: {size}")
        if (kind == "i" and not 0 < size < n) or (kind == "f" and not 0 < size < 1):
            raise ValueError(
                f"{name}={size} should be either positive and smaller than the number of samples {n} "
                "or a float in the (0, 1) range"
            )
    floats = [np.asarray(s).dtype.kind == "f" for s in (test_size, train_size)]
    if all(floats) and train_size + test_size > 1:
        raise ValueError(
            f"The sum of test_size and train_size = {train_size + test_size}, should be in the (0, 1) range. "
            "Reduce test_size and/or train_size."
        )
    n_test = None if test_size is None else (math.ceil(test_size * n) if floats[0] else int(test_size))
    n_train = None if train_size is None else (math.floor(train_size * n) if floats[1] else int(train_size))
    n_train = n - n_test if n_train is None else n_train
    n_test = n - n_train if n_test is None else n_test
    if n_train + n_test > n:
        raise ValueError(
            f"The sum of train_size and test_size = {n_train + n_test}, should be smaller than the number of "
            f"samples {n}. Reduce test_size and/or train_size."
        )
    if n_train == 0:
        raise ValueError(
            f"With n_samples={n}, test_size={test_size} and train_size={train_size}, the resulting train set "
            "will be empty. Adjust any of the aforementioned parameters."
        )
    return n_train, n_test


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng) -> np.ndarray:
    """Per-class draw counts closest to proportional, ties broken at random (sklearn's)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _stratified_indices(y: np.ndarray, n_train: int, n_test: int, rng) -> tuple[np.ndarray, np.ndarray]:
    if y.ndim == 2:
        _, y_idx, counts = np.unique(y, axis=0, return_inverse=True, return_counts=True)
    else:
        _, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    y_idx = y_idx.reshape(-1)
    if counts.min() < 2:
        raise ValueError(
            "The least populated class in y has only 1 member, which is too few. The minimum number of "
            "groups for any class cannot be less than 2."
        )
    for name, size in (("train_size", n_train), ("test_size", n_test)):
        if size < len(counts):
            raise ValueError(
                f"The {name} = {size} should be greater or equal to the number of classes = {len(counts)}"
            )
    class_indices = np.split(np.argsort(y_idx, kind="stable"), np.cumsum(counts)[:-1])
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train, test = [], []
    for i, members in enumerate(class_indices):
        perm = members.take(rng.permutation(counts[i]), mode="clip")
        train.extend(perm[: n_i[i]])
        test.extend(perm[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _take(a: Any, idx: np.ndarray) -> Any:
    if isinstance(a, (list, tuple)):
        return [a[i] for i in idx]
    if hasattr(a, "iloc"):
        return a.iloc[idx]
    return a[idx]


def train_test_split(
    *arrays: Any,
    test_size: float | int | None = None,
    train_size: float | int | None = None,
    random_state: "int | np.random.RandomState | np.random.Generator | None" = None,
    shuffle: bool = True,
    stratify: Any = None,
) -> list[Any]:
    """Split arrays into random train and test subsets: returns ``[a_train, a_test,
    b_train, b_test, ...]``, as ``sklearn.model_selection.train_test_split``. Sizes are
    fractions (float in (0, 1); test rounded up, train down) or counts (int); with
    neither given the test set is 25%. ``random_state`` (int, RandomState or
    Generator) makes it repeatable; an int gives the same indices as scikit-learn.
    ``stratify`` (class labels) keeps each class's proportion in both parts;
    ``shuffle=False`` takes the first rows for training and cannot stratify."""
    if not arrays:
        raise ValueError("At least one array required as input")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: {lengths}")
    n = lengths[0]
    n_train, n_test = _split_sizes(n, test_size, train_size)
    if not shuffle:
        if stratify is not None:
            raise ValueError("Stratified train/test split is not implemented for shuffle=False")
        train, test = np.arange(n_train), np.arange(n_train, n_train + n_test)
    else:
        rng = (random_state if isinstance(random_state, (np.random.RandomState, np.random.Generator))
               else np.random.RandomState(random_state))
        if stratify is not None:
            y = _host(stratify)
            if len(y) != n:
                raise ValueError(f"stratify has {len(y)} labels but the arrays have {n} samples")
            train, test = _stratified_indices(y, n_train, n_test, rng)
        else:
            perm = rng.permutation(n)
            test, train = perm[:n_test], perm[n_test: n_test + n_train]
    out: list[Any] = []
    for a in arrays:
        out += [_take(a, train), _take(a, test)]
    return out


# --------------------------------------------------------------------------- augmentation

def _as_images(x: Any, image_shape: Sequence[int] | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """The batch as (N, H, W, C) plus the input's shape, to restore the layout after."""
    x = _host(x)
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) not in (2, 3) or x.ndim < 2 or math.prod(shape) != math.prod(x.shape[1:]):
            raise ValueError(
                f"image_shape {shape} (H, W) or (H, W, C) does not fit samples of shape {x.shape[1:]}"
            )
        imgs = x.reshape((len(x),) + shape)
    elif x.ndim in (3, 4):
        imgs = x
    else:
        raise ValueError(
            f"image batches must be (N, H, W) or (N, H, W, C), got shape {x.shape}; "
            "pass image_shape=(H, W) or (H, W, C) for flat (N, H*W) data"
        )
    return (imgs if imgs.ndim == 4 else imgs[..., None]), x.shape


def _float_dtype(dtype: np.dtype) -> np.dtype:
    # float32 is the compute type; float inputs keep their own precision.
    return dtype if dtype.kind == "f" else np.dtype(np.float32)


def _range(factor: float | tuple[float, float], name: str) -> tuple[float, float]:
    lo, hi = (-abs(factor), abs(factor)) if np.isscalar(factor) else (float(factor[0]), float(factor[1]))
    if lo > hi:
        raise ValueError(f"{name} lower bound {lo} is above upper bound {hi}")
    return lo, hi


def _sample(imgs: np.ndarray, sy: np.ndarray, sx: np.ndarray, fill_value: float,
            interpolation: str) -> np.ndarray:
    """out[n, i, j] = imgs[n] read at source point (sy, sx)[n, i, j]; points outside
    the image read ``fill_value`` (bilinear blends the border with it)."""
    n, h, w, _ = imgs.shape
    batch = np.arange(n)[:, None, None]

    def read(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        vals = imgs[batch, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float64)
        return np.where(inside[..., None], vals, fill_value)

    if interpolation == "nearest":
        return read(np.floor(sy + 0.5).astype(np.intp), np.floor(sx + 0.5).astype(np.intp))
    y0, x0 = np.floor(sy), np.floor(sx)
    wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
    y0, x0 = y0.astype(np.intp), x0.astype(np.intp)
    return ((1 - wy) * ((1 - wx) * read(y0, x0) + wx * read(y0, x0 + 1))
            + wy * ((1 - wx) * read(y0 + 1, x0) + wx * read(y0 + 1, x0 + 1)))


class _Random:
    """Base of the random transforms: holds the Generator (``seed`` may be an int, a
    Generator or None) so repeated calls continue one reproducible stream."""

    def __init__(self, seed: "int | np.random.Generator | None" = None) -> None:
        self.rng = np.random.default_rng(seed)


class _ImageTransform(_Random):
    def __init__(self, *, image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        super().__init__(seed)
        self.image_shape = image_shape

    def __call__(self, x: Any) -> np.ndarray:
        imgs, shape = _as_images(x, self.image_shape)
        return self._apply(imgs).reshape(shape)


def _native_warp():
    """fusednn._cpu's affine_warp kernel, or None where the extension is not built."""
    from .backends import cpu

    return cpu._cpu.affine_warp if cpu._cpu is not None else None


class _Resampling(_ImageTransform):
    """Transforms that read each output pixel from a per-sample source point given by
    an affine map of the output pixel (``_affine``: one 2x3 matrix per image). Float32
    batches are resampled by the C++ kernel when it is built, others in NumPy (float64)."""

    _clamp = False  # move source points outside the image to its edge instead of filling

    def __init__(self, fill_value: float, interpolation: str, image_shape, seed) -> None:
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        super().__init__(image_shape=image_shape, seed=seed)
        self.fill_value = fill_value
        self.interpolation = interpolation

    def _apply(self, imgs: np.ndarray) -> np.ndarray:
        n, h, w, _ = imgs.shape
        mats = np.ascontiguousarray(self._affine(n, h, w), dtype=np.float64)
        if imgs.size == 0:  # a zero-sized side: the empty batch (the kernel has nothing to do)
            return np.empty(imgs.shape, _float_dtype(imgs.dtype))
        warp = _native_warp()
        if warp is not None and imgs.dtype == np.float32:
            return warp(np.ascontiguousarray(imgs), mats, float(self.fill_value),
                        self.interpolation == "bilinear", self._clamp)
        gy, gx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
        m = mats[:, :, :, None, None]
        sy = m[:, 0, 0] * gy + m[:, 0, 1] * gx + m[:, 0, 2]
        sx = m[:, 1, 0] * gy + m[:, 1, 1] * gx + m[:, 1, 2]
        if self._clamp:
            sy, sx = np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)
        return _sample(imgs, sy, sx, self.fill_value, self.interpolation).astype(_float_dtype(imgs.dtype))

    def _affine(self, n: int, h: int, w: int) -> np.ndarray:
        """(n, 2, 3): sy = M[0] . (gy, gx, 1), sx = M[1] . (gy, gx, 1) for output pixel (gy, gx)."""
        raise NotImplementedError


class RandomFlip(_ImageTransform):
    """Flip each image of a batch, independently with probability 1/2, left-right
    ('horizontal'), up-down ('vertical') or each of the two ('horizontal_and_vertical'),
    as Keras's RandomFlip. Values and dtype are kept exactly."""

    def __init__(self, mode: str = "horizontal", *, image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(
                f"mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', got {mode!r}"
            )
        super().__init__(image_shape=image_shape, seed=seed)
        self.mode = mode

    def _apply(self, imgs: np.ndarray) -> np.ndarray:
        out = imgs.copy()
        for axis, kind in ((2, "horizontal"), (1, "vertical")):
            if kind in self.mode:
                m = self.rng.random(len(out)) < 0.5
                out[m] = np.flip(out[m], axis=axis)
        return out


class RandomRotation(_Resampling):
    """Rotate each image about its centre by an angle drawn uniformly from
    ``factor`` * 2 pi (a float f means [-f, f]; a pair gives the bounds), positive
    counter-clockwise, as Keras's RandomRotation: factor 0.05 is up to +-18 degrees.
    Pixels that come from outside the image are ``fill_value``."""

    def __init__(self, factor: float | tuple[float, float], fill_value: float = 0.0, *,
                 interpolation: str = "bilinear", image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        super().__init__(fill_value, interpolation, image_shape, seed)
        self.factor = _range(factor, "factor")

    def _affine(self, n, h, w):
        theta = self.rng.uniform(*self.factor, size=n) * 2 * np.pi
        cy, cx = (h - 1) / 2, (w - 1) / 2
        cos, sin = np.cos(theta), np.sin(theta)
        # Inverse map of a counter-clockwise turn in image (row-down) coordinates:
        # sy = cy + sin (gx - cx) + cos (gy - cy), sx = cx + cos (gx - cx) - sin (gy - cy)
        return np.stack([np.stack([cos, sin, cy - sin * cx - cos * cy], axis=1),
                         np.stack([-sin, cos, cx - cos * cx + sin * cy], axis=1)], axis=1)


class RandomZoom(_Resampling):
    """Zoom each image about its centre by 1 + f with f drawn uniformly from
    ``height_factor`` (a float f means [-f, f]); as in Keras, positive f zooms out
    (the content shrinks, borders get ``fill_value``) and negative f zooms in.
    ``width_factor`` None uses the same draw for both axes (keeps the aspect ratio)."""

    def __init__(self, height_factor: float | tuple[float, float],
                 width_factor: float | tuple[float, float] | None = None, fill_value: float = 0.0, *,
                 interpolation: str = "bilinear", image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        super().__init__(fill_value, interpolation, image_shape, seed)
        self.height_factor = _range(height_factor, "height_factor")
        self.width_factor = None if width_factor is None else _range(width_factor, "width_factor")
        if self.height_factor[0] <= -1 or (self.width_factor is not None and self.width_factor[0] <= -1):
            raise ValueError("zoom factors must be > -1 (a zoom of 1 + factor must stay positive)")

    def _affine(self, n, h, w):
        zy = 1 + self.rng.uniform(*self.height_factor, size=n)
        zx = zy
        if self.width_factor is not None:
            zx = 1 + self.rng.uniform(*self.width_factor, size=n)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        zero = np.zeros(n)
        # sy = cy + (gy - cy) zy, sx = cx + (gx - cx) zx
        return np.stack([np.stack([zy, zero, cy * (1 - zy)], axis=1),
                         np.stack([zero, zx, cx * (1 - zx)], axis=1)], axis=1)


class RandomResizedCrop(_Resampling):
    """Crop a random window covering a fraction of the image area drawn uniformly
    from ``scale`` (same fraction of height and width, random position inside the
    image) and resize it back to the full size. ``scale=(1, 1)`` is the identity."""

    def __init__(self, scale: tuple[float, float] = (0.64, 1.0), *, interpolation: str = "bilinear",
                 image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        super().__init__(0.0, interpolation, image_shape, seed)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        self.scale = (float(scale[0]), float(scale[1]))

    _clamp = True  # clipping to the edge keeps every read inside the image

    def _affine(self, n, h, w):
        s = np.sqrt(self.rng.uniform(*self.scale, size=n))
        top = self.rng.uniform(size=n) * h * (1 - s)
        left = self.rng.uniform(size=n) * w * (1 - s)
        zero = np.zeros(n)
        # pixel centres of the window: sy = top + (gy + 0.5) s - 0.5, likewise sx
        return np.stack([np.stack([s, zero, top + 0.5 * s - 0.5], axis=1),
                         np.stack([zero, s, left + 0.5 * s - 0.5], axis=1)], axis=1)


class GaussianNoise(_Random):
    """Add zero-mean Gaussian noise of standard deviation ``stddev`` to every value of
    a batch of any shape (images or tabular rows), as Keras's GaussianNoise layer in
    training."""

    def __init__(self, stddev: float, *, seed: "int | np.random.Generator | None" = None) -> None:
        if stddev < 0:
            raise ValueError(f"stddev must be >= 0, got {stddev}")
        super().__init__(seed)
        self.stddev = float(stddev)

    def __call__(self, x: Any) -> np.ndarray:
        x = _host(x)
        dtype = _float_dtype(x.dtype)
        return (x + self.rng.normal(0.0, self.stddev, size=x.shape)).astype(dtype)


class Augmentation:
    """Apply transforms in order to a training batch. With ``image_shape`` a flat
    (N, H*W) or (N, H*W*C) batch is viewed as images once for the whole pipeline and
    returned in its input layout. Use it on training batches only, never on
    validation or test data."""

    def __init__(self, transforms: Sequence[Callable[[np.ndarray], np.ndarray]], *,
                 image_shape: Sequence[int] | None = None) -> None:
        self.transforms = list(transforms)
        self.image_shape = image_shape

    def __call__(self, x: Any) -> np.ndarray:
        x = _host(x)
        shape = x.shape
        if self.image_shape is not None:
            x = _as_images(x, self.image_shape)[0]
        for t in self.transforms:
            x = t(x)
        return x.reshape(shape)


Compose = Augmentation
