"""One float64 NumPy reference per kernel: what every device's kernel must compute.

The kernel tests (``tests/kernels/``) and ``fusednn bench`` (which checks each result
before timing it) both compare against these, so "is tanh right" has one answer in
one place. Each function takes float32 (or any) arrays and returns float64 ones;
none calls fusednn's own kernels.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _f64(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


# ------------------------------------------------------------------ activations
def activation(x: Any, name: str) -> np.ndarray:
    """relu / sigmoid / tanh / linear, elementwise."""
    x = _f64(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "linear":
        return x
    raise ValueError(f"no reference for activation {name!r}")


def activation_grad(dy: Any, y: Any, name: str) -> np.ndarray:
    """d loss / d x given d loss / d y and the activation's output ``y``."""
    dy, y = _f64(dy), _f64(y)
    if name == "relu":
        return dy * (y > 0)
    if name == "sigmoid":
        return dy * y * (1 - y)
    if name == "tanh":
        return dy * (1 - y * y)  # exact in float64
    if name == "linear":
        return dy
    raise ValueError(f"no reference for activation {name!r}")


def softmax(z: Any) -> np.ndarray:
    """Row-wise softmax, max-subtracted."""
    z = _f64(z)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_grad(dy: Any, y: Any) -> np.ndarray:
    """d loss / d z of a row-wise softmax with output ``y``: y * (dy - sum(dy * y))."""
    dy, y = _f64(dy), _f64(y)
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


# ------------------------------------------------------------------ products
def matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False, bias: Any = None,
           activation_name: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """``act(op(a) @ op(b) + bias)`` and, per element, the scale of its dot product's
    terms (``|op(a)| @ |op(b)| + |bias|``) for an element-wise error bound."""
    A, B = _f64(a), _f64(b)
    A = A.T if transpose_a else A
    B = B.T if transpose_b else B
    c = A @ B
    scale = np.abs(A) @ np.abs(B)
    if bias is not None:
        c = c + _f64(bias)
        scale = scale + np.abs(_f64(bias))
    return activation(c, activation_name), scale


def sum_rows(x: Any) -> np.ndarray:
    """Column sums of a 2-D array (the bias gradient)."""
    return _f64(x).sum(axis=0)


# ------------------------------------------------------------------ losses
def mse(pred: Any, target: Any) -> float:
    """mean((pred - target)^2) over all elements."""
    d = _f64(pred) - _f64(target)
    return float(np.mean(d * d))


def mse_grad(pred: Any, target: Any) -> np.ndarray:
    """2 (pred - target) / size."""
    d = _f64(pred) - _f64(target)
    return 2.0 * d / d.size


def crossentropy(z: Any, target: Any, kind: str) -> float:
    """Mean cross-entropy of logits ``z``: 'binary' (sigmoid), 'categorical' (softmax,
    one-hot or soft targets) or 'sparse' (softmax, one class index per row)."""
    z = _f64(z)
    if kind == "binary":
        t = _f64(target)
        return float(np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))))
    lse = z.max(axis=1) + np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1))
    if kind == "sparse":
        k = np.asarray(target).reshape(-1).astype(int)
        return float(np.mean(lse - z[np.arange(len(k)), k]))
    if kind == "categorical":
        return float(np.mean((_f64(target) * (lse[:, None] - z)).sum(axis=1)))
    raise ValueError(f"no reference for cross-entropy kind {kind!r}")


def crossentropy_grad(z: Any, target: Any, kind: str) -> np.ndarray:
    """d (summed) cross-entropy / d logits: ``act(z) - target`` (sigmoid for 'binary',
    softmax otherwise; 'sparse' targets are class indices, taken as one-hot rows).
    The kernels scale it by the mean's 1/count."""
    z = _f64(z)
    if kind == "binary":
        return activation(z, "sigmoid") - _f64(target)
    if kind == "sparse":
        t = np.eye(z.shape[1])[np.asarray(target).reshape(-1).astype(np.int64)]
    elif kind == "categorical":
        t = _f64(target)
    else:
        raise ValueError(f"no reference for cross-entropy kind {kind!r}")
    return softmax(z) - t


# ------------------------------------------------------------------ optimizers
def sgd_step(w: Any, g: Any, v: Any, lr: float, momentum: float, nesterov: bool) -> tuple[np.ndarray, np.ndarray]:
    """One step of Keras' SGD: ``(w, velocity)`` after it."""
    w, g, v = _f64(w), _f64(g), _f64(v)
    if momentum == 0:
        return w - lr * g, v
    v = momentum * v - lr * g
    return (w + momentum * v - lr * g if nesterov else w + v), v


def adam_step(w: Any, g: Any, m: Any, v: Any, t: int, lr: float, beta_1: float, beta_2: float,
              epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step ``t`` (from 1) of Keras' Adam: ``(w, m, v)`` after it. Keras holds the
    hyperparameters as float32 and forms 1 - beta in float32 (1 - float32(0.999) is
    1.3e-5 away from 0.001); the rest is float64 here."""
    w, g, m, v = _f64(w), _f64(g), _f64(m), _f64(v)
    c1 = float(np.float32(1) - np.float32(beta_1))
    c2 = float(np.float32(1) - np.float32(beta_2))
    m = m + (g - m) * c1
    v = v + (g * g - v) * c2
    alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    return w - m * alpha / (np.sqrt(v) + epsilon), m, v
