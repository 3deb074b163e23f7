"""Checking and converting the arrays users pass to a model, once, at the API boundary.

Arrays come out float32 and C-contiguous: NumPy arrays (and anything NumPy can
read) stay on the host, arrays of the model's device backend (CuPy) stay on
the device. Every problem is reported here with the array's name, so that no
kernel ever sees a shape it cannot handle and no model trains on garbage.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend

_REAL_KINDS = "fiub"


def float32_array(a: Any, name: str, be: Backend) -> Any:
    """``a`` as a float32 C-contiguous array, on the device if it already lives there."""
    xp = be.xp if isinstance(a, be.xp.ndarray) else np
    if xp is np:
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} cannot be read as a numeric array ({e})") from None
    if a.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} has dtype {a.dtype}; expected numbers (converted to float32)")
    with np.errstate(over="ignore"):  # values beyond float32 become inf: check_finite reports them
        return xp.ascontiguousarray(a, dtype=np.float32)


def check_finite(a: Any, name: str, be: Backend) -> None:
    """Raise ValueError naming the first row of ``a`` holding NaN or Inf. Checked a
    block of rows at a time, so the check never holds a mask as large as the data."""
    xp = be.xp if isinstance(a, be.xp.ndarray) else np
    rows = a.reshape(a.shape[0], -1)
    step = max(1, (1 << 20) // max(1, rows.shape[1]))
    for lo in range(0, rows.shape[0], step):
        finite = xp.isfinite(rows[lo:lo + step]).all(axis=1)
        if not bool(finite.all()):
            row = lo + int(xp.argmin(finite))
            raise ValueError(f"{name} contains NaN or Inf (first in row {row}, after conversion to float32); "
                             "remove or impute those rows first")


def samples(x: Any, name: str, be: Backend, input_dim: int | None) -> Any:
    """Model inputs as a 2-D float32 array (n, features). A 1-D array is n samples of
    one feature, as in Keras, when the model takes one feature (or is not built)."""
    x = float32_array(x, name, be)
    if x.ndim == 1 and input_dim in (None, 1):
        x = x.reshape(-1, 1)
    if x.ndim != 2:
        want = f"(samples, {input_dim})" if input_dim else "(samples, features)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if input_dim is not None and x.shape[1] != input_dim:
        raise ValueError(f"{name} has {x.shape[1]} features per sample but the model expects "
                         f"{input_dim} (input_shape=({input_dim},))")
    return x


def targets(y: Any, name: str, be: Backend, n: int, output_dim: int) -> Any:
    """Targets as a 2-D float32 array (n, output_dim); (n,) is accepted for one output."""
    y = float32_array(y, name, be)
    if y.ndim == 0 or y.shape[0] != n:
        got = "a scalar" if y.ndim == 0 else f"{y.shape[0]} samples"
        raise ValueError(f"x and {name} must have the same number of samples: x has {n}, {name} has {got}")
    if y.ndim == 1 and output_dim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != output_dim:
        raise ValueError(f"{name} has shape {tuple(y.shape)} but the model's output has shape "
                         f"({n}, {output_dim})")
    return y


def batch_size(value: Any) -> int:
    """A batch size: an integer >= 1 (None means Keras' default, 32)."""
    if value is None:
        return 32
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {value!r}")
    return int(value)


def augmented(augment: Any, batch: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``augment(batch)`` checked to keep the batch's shape, as float32."""
    out = np.ascontiguousarray(augment(batch), dtype=np.float32)
    if out.shape != tuple(shape):
        raise ValueError(f"augment changed the batch shape from {tuple(shape)} to {out.shape}; "
                         "augmentations must keep it (give image transforms image_shape=...)")
    return out
