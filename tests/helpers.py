"""Independent float64 references and comparison helpers for the op tests."""
from __future__ import annotations

import numpy as np


def ref_act(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    return x


def ref_act_grad(dy: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
    dy, y = np.asarray(dy, np.float64), np.asarray(y, np.float64)
    if name == "relu":
        return dy * (y > 0)
    if name == "sigmoid":
        return dy * y * (1 - y)
    if name == "tanh":
        return dy * (1 - y * y)  # exact in float64
    return dy


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max(|ref|, tiny): relative error, absolute where ref is ~0."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    scale = np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
    with np.errstate(invalid="ignore"):
        diff = np.where(got == ref, 0.0, np.abs(got - ref))  # equal infinities agree
    return float(np.max(diff / scale)) if ref.size else 0.0


def matmul_ref(a, b, ta, tb, bias=None, act="linear"):
    a64 = np.asarray(a, np.float64)
    b64 = np.asarray(b, np.float64)
    A = a64.T if ta else a64
    B = b64.T if tb else b64
    c = A @ B
    # |A| @ |B|: the scale of each dot product's terms, for a per-element bound
    scale = np.abs(A) @ np.abs(B)
    if bias is not None:
        c = c + np.asarray(bias, np.float64)
        scale = scale + np.abs(np.asarray(bias, np.float64))
    return ref_act(c, act), scale


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
