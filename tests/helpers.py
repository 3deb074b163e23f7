"""Comparison helpers for the tests; the float64 reference of each op is the one
``fusednn bench`` checks against too (:mod:`fusednn.bench.reference`)."""
from __future__ import annotations

import contextlib

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


GUARD = 16  # floats after a guarded buffer: more than any kernel's vector spill


def guarded(shape, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """A poisoned C-contiguous output buffer followed, in the same allocation, by GUARD
    sentinel elements: (buffer, guard). A kernel that writes past the buffer's end
    changes the guard instead of silently corrupting the heap."""
    n = int(np.prod(shape))
    mem = np.full(n + GUARD, np.nan, dtype=dtype)
    mem[n:] = 12345.0
    return mem[:n].reshape(shape), mem[n:]


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


@contextlib.contextmanager
def on_backend(name: str):
    """Make ``name`` the active fusednn backend inside the block (the previous one after)."""
    import fusednn

    prev = fusednn.get_backend().name
    fusednn.set_backend(name)
    try:
        yield
    finally:
        fusednn.set_backend(prev)


def fit_twice(build, loss, x, y, backend: str = "cpu", **fit_kw):
    """Fit the model ``build()`` makes on the fused path and on the per-op path (same seed,
    Adam(0.01), 3 epochs, batch 16) and return ``(fused_reason of the fused fit, [(history,
    weights) fused, (history, weights) per-op])``."""
    from fusednn import keras

    out, reason = [], None
    for fused in ("auto", False):
        with on_backend(backend):
            keras.utils.set_random_seed(0)
            model = build()
            metrics = ["accuracy"] if "crossentropy" in str(loss) else ["mae"]
            model.compile(keras.optimizers.Adam(0.01), loss, metrics=metrics, fused=fused)
            hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0, **fit_kw)
            if fused == "auto":
                reason = model.fused_reason
            out.append((hist.history, model.get_weights()))
    return reason, out


def keras3_on_torch():
    """Real Keras 3 on its torch backend for the oracle tests, or skip saying what is missing."""
    import os

    import pytest

    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    keras3 = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")
    if keras3.backend.backend() != "torch":  # pragma: no cover - another backend was configured first
        pytest.skip(f"Keras runs on {keras3.backend.backend()!r}, this test needs the torch backend")
    return keras3


def assert_fits_like_keras(ours, theirs, x, y, epochs: int, batch_size: int = 32):
    """Fit fusednn's model ``ours`` and real Keras' ``theirs`` (same weights, compiled) on
    (x, y) in order, and compare loss histories and weights at the Keras-oracle tolerance."""
    ht = theirs.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0).history["loss"]
    ho = ours.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(ho, ht, rtol=2e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def assert_close_to_numpy_backend(build, loss, x, y):
    """The cpu backend's fused fit of ``build()`` and the numpy backend's fit agree to
    float32 rounding (loss history and weights)."""
    _, [(h_cpu, w_cpu), _] = fit_twice(build, loss, x, y)
    _, [(h_np, w_np), _] = fit_twice(build, loss, x, y, backend="numpy")
    np.testing.assert_allclose(h_cpu["loss"], h_np["loss"], rtol=2e-4)
    for a, b in zip(w_cpu, w_np):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5)


# Keras losses of the fused trainer's replicated runs, with the output activation each takes
REPLICA_LOSSES = {"mse": ("mse", "linear"), "binary": ("binary_crossentropy", "sigmoid"),
                  "categorical": ("categorical_crossentropy", "softmax"),
                  "sparse": ("sparse_categorical_crossentropy", "softmax")}


def replica_data(kind: str, n: int, d: int, k: int,
                 seed: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray]:
    """n rows of d float32 inputs and targets for REPLICA_LOSSES[kind] with k outputs
    (drawn from `seed`, or from a Generator, whose stream then continues)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    if kind in ("mse", "binary"):
        y = rng.random((n, k)).astype(np.float32)
    elif kind == "categorical":
        y = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
    else:
        y = rng.integers(0, k, (n, 1)).astype(np.float32)
    return x, y


@contextlib.contextmanager
def cpu_backend_threads(n: int):
    """The cpu backend with an n-thread pool, restored afterwards."""
    import fusednn

    prev, threads = fusednn.get_backend().name, fusednn.get_num_threads()
    fusednn.set_backend("cpu")
    fusednn.set_num_threads(n)
    try:
        yield
    finally:
        fusednn.set_num_threads(threads)
        fusednn.set_backend(prev)
