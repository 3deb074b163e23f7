"""Independent float64 NumPy references for the model tests: a Sequential of
Dense layers written out by hand, its MSE, and finite differences."""
from __future__ import annotations

import numpy as np


def act64(z: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    return z


def forward64(weights: list[np.ndarray], acts: list[str], x: np.ndarray) -> np.ndarray:
    """Dense stack in float64: weights is [W0, b0, W1, b1, ...] (Keras order)."""
    h = np.asarray(x, np.float64)
    for i, act in enumerate(acts):
        h = act64(h @ np.asarray(weights[2 * i], np.float64) + np.asarray(weights[2 * i + 1], np.float64), act)
    return h


def preactivations64(weights, acts, x):
    h, zs = np.asarray(x, np.float64), []
    for i, act in enumerate(acts):
        z = h @ np.asarray(weights[2 * i], np.float64) + np.asarray(weights[2 * i + 1], np.float64)
        zs.append(z)
        h = act64(z, act)
    return zs


def mse64(pred: np.ndarray, y: np.ndarray) -> float:
    d = np.asarray(pred, np.float64) - np.asarray(y, np.float64).reshape(np.shape(pred))
    return float(np.mean(d * d))


def finite_differences(f, params: list[np.ndarray], h: float = 1e-6) -> list[np.ndarray]:
    """Central differences of the scalar f() w.r.t. every element of every array in
    params (float64 arrays, perturbed in place and restored)."""
    grads = []
    for p in params:
        g = np.zeros(p.shape)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            fp = f()
            p[i] = old - h
            fm = f()
            p[i] = old
            g[i] = (fp - fm) / (2 * h)
        grads.append(g)
    return grads


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: the largest error relative to the largest value."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
