"""keras.ops: values against NumPy float64 formulas, array-in/array-out and tensor-in/tensor-out,
dtypes (float32 stays float32, Python floats do not widen it), errors naming what is not
supported, and (where Keras 3 is installed, torch backend) the same results as real keras.ops."""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

from fusednn import autodiff as ad
from fusednn import keras
from fusednn import keras_ops as ops

RNG = np.random.default_rng(7)
X = RNG.standard_normal((3, 4))
Y = RNG.standard_normal((3, 4))
P = RNG.uniform(0.02, 0.98, (3, 4))


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _erf(x):
    return np.vectorize(math.erf)(x)


def _lse(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


# (keras.ops call, NumPy float64 reference)
CASES = {
    "add": (lambda: ops.add(X, Y), X + Y),
    "subtract": (lambda: ops.subtract(X, Y[0]), X - Y[0]),
    "multiply": (lambda: ops.multiply(X, 2.5), X * 2.5),
    "divide": (lambda: ops.divide(X, P), X / P),
    "negative": (lambda: ops.negative(X), -X),
    "power": (lambda: ops.power(P, X), P ** X),
    "square": (lambda: ops.square(X), X * X),
    "sqrt": (lambda: ops.sqrt(P), np.sqrt(P)),
    "abs": (lambda: ops.abs(X), np.abs(X)),
    "exp": (lambda: ops.exp(X), np.exp(X)),
    "log": (lambda: ops.log(P), np.log(P)),
    "log1p": (lambda: ops.log1p(P), np.log1p(P)),
    "expm1": (lambda: ops.expm1(X), np.expm1(X)),
    "maximum": (lambda: ops.maximum(X, Y), np.maximum(X, Y)),
    "minimum": (lambda: ops.minimum(X, 0.1), np.minimum(X, 0.1)),
    "clip": (lambda: ops.clip(X, -0.5, 0.5), np.clip(X, -0.5, 0.5)),
    "where": (lambda: ops.where(X > 0, X, Y), np.where(X > 0, X, Y)),
    "sign": (lambda: ops.sign(X), np.sign(X)),
    "sum": (lambda: ops.sum(X, axis=1), X.sum(1)),
    "sum_all": (lambda: ops.sum(X), X.sum()),
    "mean": (lambda: ops.mean(X, axis=0, keepdims=True), X.mean(0, keepdims=True)),
    "max": (lambda: ops.max(X, axis=-1), X.max(-1)),
    "min": (lambda: ops.min(X), X.min()),
    "prod": (lambda: ops.prod(X, axis=1), X.prod(1)),
    "std": (lambda: ops.std(X, axis=1), X.std(1)),
    "var": (lambda: ops.var(X, axis=0), X.var(0)),
    "logsumexp": (lambda: ops.logsumexp(X, axis=1), _lse(X, 1)[:, 0]),
    "matmul": (lambda: ops.matmul(X, Y.T), X @ Y.T),
    "dot": (lambda: ops.dot(X[0], Y[1]), X[0] @ Y[1]),
    "transpose": (lambda: ops.transpose(X), X.T),
    "reshape": (lambda: ops.reshape(X, (2, -1)), X.reshape(2, 6)),
    "expand_dims": (lambda: ops.expand_dims(X, 1), X[:, None]),
    "squeeze": (lambda: ops.squeeze(X[:1]), X[0]),
    "concatenate": (lambda: ops.concatenate([X, Y], axis=1), np.concatenate([X, Y], 1)),
    "stack": (lambda: ops.stack([X, Y]), np.stack([X, Y])),
    "relu": (lambda: ops.relu(X), np.maximum(X, 0)),
    "sigmoid": (lambda: ops.sigmoid(X), _sig(X)),
    "tanh": (lambda: ops.tanh(X), np.tanh(X)),
    "softmax": (lambda: ops.softmax(X), np.exp(X - _lse(X, -1))),
    "log_softmax": (lambda: ops.log_softmax(X, axis=0), X - _lse(X, 0)),
    "softplus": (lambda: ops.softplus(X), np.log1p(np.exp(X))),
    "elu": (lambda: ops.elu(X), np.where(X > 0, X, np.expm1(X))),
    "gelu": (lambda: ops.gelu(X), 0.5 * X * (1 + np.tanh(np.sqrt(2 / np.pi) * (X + 0.044715 * X ** 3)))),
    "gelu_exact": (lambda: ops.gelu(X, approximate=False), 0.5 * X * (1 + _erf(X / np.sqrt(2)))),
    "silu": (lambda: ops.silu(X), X * _sig(X)),
    "binary_crossentropy": (lambda: ops.binary_crossentropy(ops.cast(P > 0.5, "float32"), P),
                            -((P > 0.5) * np.log(P) + (P <= 0.5) * np.log(1 - P))),
    "binary_crossentropy_logits": (lambda: ops.binary_crossentropy(P, X, from_logits=True),
                                   -(P * np.log(_sig(X)) + (1 - P) * np.log(1 - _sig(X)))),
    "categorical_crossentropy": (lambda: ops.categorical_crossentropy(np.eye(4)[[0, 2, 3]], P),
                                 -np.log((P / P.sum(1, keepdims=True))[[0, 1, 2], [0, 2, 3]])),
    "categorical_crossentropy_logits": (lambda: ops.categorical_crossentropy(np.eye(4)[[0, 2, 3]], X, from_logits=True),
                                        -(X - _lse(X, 1))[[0, 1, 2], [0, 2, 3]]),
    "sparse_categorical_crossentropy": (lambda: ops.sparse_categorical_crossentropy(np.array([0, 2, 3]), X,
                                                                                    from_logits=True),
                                        -(X - _lse(X, 1))[[0, 1, 2], [0, 2, 3]]),
    "equal": (lambda: ops.equal(X, X[0]), X == X[0]),
    "greater": (lambda: ops.greater(X, Y), X > Y),
    "less": (lambda: ops.less(X, 0), X < 0),
    "argmax": (lambda: ops.argmax(X, axis=1), X.argmax(1)),
    "argmin": (lambda: ops.argmin(X), X.argmin()),
    "one_hot": (lambda: ops.one_hot(np.array([1, 0, 3]), 4), np.eye(4)[[1, 0, 3]]),
    "zeros_like": (lambda: ops.zeros_like(X), np.zeros_like(X)),
    "take": (lambda: ops.take(X, np.array([3, 0, 3]), axis=1), X[:, [3, 0, 3]]),
    "take_along_axis": (lambda: ops.take_along_axis(X, np.array([[1], [0], [3]]), axis=1), X[[0, 1, 2], [1, 0, 3]][:, None]),
    "cumsum": (lambda: ops.cumsum(X, axis=0), np.cumsum(X, 0)),
    "any": (lambda: ops.any(X > 1.5, axis=1), (X > 1.5).any(1)),
    "all": (lambda: ops.all(X > -3), (X > -3).all()),
    "ones_like": (lambda: ops.ones_like(X), np.ones_like(X)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_match_numpy_float64(name):
    fn, ref = CASES[name]
    out = fn()
    assert isinstance(out, np.ndarray) or np.isscalar(out), type(out)  # arrays in, arrays out
    np.testing.assert_allclose(np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("name", ["add", "multiply", "exp", "mean", "matmul", "softmax", "gelu", "binary_crossentropy",
                                  "categorical_crossentropy", "where", "clip", "std", "logsumexp"])
def test_float32_stays_float32_and_tensors_stay_tensors(name):
    global X, Y, P
    saved = X, Y, P
    try:
        X, Y, P = (a.astype(np.float32) for a in saved)
        fn, ref = CASES[name]
        out = fn()
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=2e-6, atol=2e-6)
        X, Y, P = (ad.Tensor(a) for a in (X, Y, P))  # tensors in give a tensor out
        assert isinstance(CASES[name][0](), ad.Tensor)
    finally:
        X, Y, P = saved


def test_creation_casting_and_shapes():
    assert ops.zeros((2, 3)).dtype == np.float32 and ops.ones((2,)).sum() == 2
    assert ops.full((2,), 3.0).tolist() == [3.0, 3.0]
    assert ops.convert_to_tensor([1.0, 2.0]).dtype == np.float32
    assert ops.convert_to_tensor([1, 2]).dtype == np.int32
    assert ops.convert_to_tensor(np.ones(2)).dtype == np.float64  # arrays keep their dtype
    assert ops.cast(np.array([1.7, -2.2]), "int32").tolist() == [1, -2]
    assert ops.shape(np.ones((2, 5))) == (2, 5) and ops.ndim(np.ones((2, 5))) == 2
    t = ad.Tensor(np.ones((2, 3), dtype=np.float32))
    assert ops.convert_to_tensor(t) is t
    np.testing.assert_array_equal(ops.convert_to_numpy(t * 2.0), np.full((2, 3), 2.0))
    assert isinstance(ops.convert_to_numpy(t), np.ndarray)
    assert (ops.arange(3).dtype, ops.arange(0.0, 1.0, 0.5).dtype) == (np.int32, np.float32)
    assert ops.mean(np.array([1, 2])).dtype == np.float32  # integers average as floatx


def test_errors_name_what_is_unsupported():
    with pytest.raises(AttributeError, match="keras.ops.fft is not supported"):
        ops.fft  # noqa: B018
    with pytest.raises(NotImplementedError, match="dot"):
        ops.dot(np.ones((2, 3)), np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="target shape"):
        ops.categorical_crossentropy(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="out of bounds"):
        ops.sum(np.ones((2, 3)), axis=2)


def test_keras_namespace_and_module_alias():
    assert keras.ops is ops
    import importlib

    assert importlib.import_module("fusednn.keras.ops") is ops
    assert sys.modules["fusednn.keras.ops"] is ops


# ---- against real Keras 3 (torch backend), where installed
@pytest.fixture(scope="module")
def real_ops():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="PyTorch is not installed")
    k = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")
    if k.backend.backend() != "torch":  # pragma: no cover
        pytest.skip(f"Keras runs on {k.backend.backend()!r}; this comparison uses the torch backend")
    return k.ops


REAL = ["add", "subtract", "multiply", "divide", "power", "square", "sqrt", "abs", "exp", "log", "log1p", "expm1",
        "maximum", "minimum", "clip", "where", "sign", "sum", "mean", "max", "min", "prod", "std", "var", "logsumexp",
        "matmul", "dot", "transpose", "reshape", "expand_dims", "squeeze", "concatenate", "stack", "relu", "sigmoid",
        "tanh", "softmax", "log_softmax", "softplus", "elu", "gelu", "gelu_exact", "silu", "binary_crossentropy",
        "binary_crossentropy_logits", "categorical_crossentropy", "categorical_crossentropy_logits",
        "sparse_categorical_crossentropy", "equal", "greater", "less", "argmax", "argmin", "one_hot", "take",
        "take_along_axis", "cumsum", "any", "all"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", REAL)
def test_same_results_as_real_keras_ops(real_ops, name):
    """The same call on float32 inputs through real keras.ops: results to float32 rounding."""
    global ops
    mine = ops
    f32 = {k: v.astype(np.float32) for k, v in (("X", X), ("Y", Y), ("P", P))}
    saved = X, Y, P
    try:
        globals().update(f32)
        out_mine = np.asarray(CASES[name][0](), dtype=np.float64)
        ops = real_ops
        out_real = np.asarray(real_ops.convert_to_numpy(CASES[name][0]()), dtype=np.float64)
    finally:
        ops = mine
        globals().update(dict(zip(("X", "Y", "P"), saved)))
    assert out_mine.shape == out_real.shape
    np.testing.assert_allclose(out_mine, out_real, rtol=3e-6, atol=3e-6)


def test_cross_entropies_clip_with_keras_backend_epsilon():
    """As Keras' ops read backend.epsilon() at call time: set_epsilon changes the clipping."""
    old = keras.backend.epsilon()
    try:
        keras.backend.set_epsilon(1e-3)
        out = ops.binary_crossentropy(np.array([1.0]), np.array([0.0]))
        np.testing.assert_allclose(out, [-np.log(1e-3)], rtol=1e-12)
    finally:
        keras.backend.set_epsilon(old)
    np.testing.assert_allclose(ops.binary_crossentropy(np.array([1.0]), np.array([0.0])), [-np.log(1e-7)], rtol=1e-6)
