"""Comparison helpers for the tests; the float64 reference of each op is the one
``fusednn bench`` checks against too (:mod:`fusednn.bench.reference`)."""
from __future__ import annotations

import numpy as np

from fusednn.bench import reference

ref_act = reference.activation
ref_act_grad = reference.activation_grad


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max(|ref|, tiny): relative error, absolute where ref is ~0."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    scale = np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
    with np.errstate(invalid="ignore"):
        diff = np.where(got == ref, 0.0, np.abs(got - ref))  # equal infinities agree
    return float(np.max(diff / scale)) if ref.size else 0.0


def matmul_ref(a, b, ta, tb, bias=None, act="linear"):
    """(act(op(a) @ op(b) + bias), |op(a)| @ |op(b)| + |bias|): the result and the scale
    of each dot product's terms, for a per-element bound."""
    return reference.matmul(a, b, ta, tb, bias, act)


def poisoned(shape, dtype=np.float32) -> np.ndarray:
    """An output buffer full of NaN, so an unwritten element cannot pass."""
    return np.full(shape, np.nan, dtype=dtype)


def numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f at x (float64, x changed in place
    and restored)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = f(x)
        x[i] = old - h
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


class FakeCupy:
    """Stands in for a CuPy array: device memory that must be copied with .get()."""

    def __init__(self, a):
        self._a = np.asarray(a)
        self.__cuda_array_interface__ = {"shape": self._a.shape}

    def get(self):
        return self._a.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("implicit conversion to a NumPy array is not allowed")
