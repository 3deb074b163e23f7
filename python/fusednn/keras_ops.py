"""``keras.ops``: the NumPy-like functions custom Keras code is written with, with Keras 3's
names, argument names and defaults (``ops.mean(x, axis=-1)``, ``ops.where(c, a, b)``,
``ops.categorical_crossentropy(target, output, from_logits=False)``, ...).

On plain arrays (NumPy, or CuPy on the GPU) and Python numbers each function computes
eagerly and returns an array. On :class:`fusednn.autodiff.Tensor` arguments (what a custom
loss or a custom layer's ``call`` receives while a model trains) it returns a tensor and
records the operation, so :mod:`fusednn.autodiff` can differentiate the code: every
function here that is differentiable in Keras has its vector-Jacobian product (directly,
or by being composed of ones that do). Float lists and Python floats become float32
(Keras' ``floatx``); arrays keep their dtype, so float64 inputs compute in float64.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import autodiff as ad
from .autodiff import Tensor, Variable, value_of, xp_of

EPSILON = 1e-7  # keras.backend.epsilon()'s default


def _epsilon() -> float:
    """``keras.backend.epsilon()`` where that module exists (it follows ``set_epsilon``, as
    Keras' ops read it at call time), else Keras' default 1e-7."""
    try:
        from .keras_backend import epsilon
    except ImportError:
        return EPSILON
    return float(epsilon())

__all__ = [
    "Tensor", "Variable",
    # arithmetic
    "add", "subtract", "multiply", "divide", "true_divide", "negative", "power", "square", "sqrt", "abs", "absolute",
    "exp", "log", "log1p", "expm1", "log2", "log10", "maximum", "minimum", "clip", "where", "sign", "floor", "ceil",
    "round", "reciprocal",
    # reductions
    "sum", "mean", "max", "min", "prod", "std", "var", "logsumexp", "norm",
    # shapes and linear algebra
    "matmul", "dot", "transpose", "reshape", "expand_dims", "squeeze", "concatenate", "stack", "ravel", "take",
    "take_along_axis", "cumsum", "any", "all",
    # nn
    "relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "softplus", "softsign", "elu", "selu", "gelu", "silu",
    "swish", "leaky_relu", "log_sigmoid", "hard_sigmoid", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "one_hot",
    # comparisons, casting, creation
    "equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and", "logical_or",
    "logical_not", "isnan", "isfinite", "cast", "convert_to_tensor", "convert_to_numpy", "is_tensor", "zeros", "ones",
    "full", "zeros_like", "ones_like", "full_like", "arange", "shape", "ndim", "size", "argmax", "argmin",
    "stop_gradient", "erf",
]


def _has_tensor(args: Sequence[Any]) -> bool:
    for a in args:
        if isinstance(a, Tensor):
            return True
        if isinstance(a, (list, tuple)) and _has_tensor(a):
            return True
    return False


def _plain(out: Any) -> Any:
    if isinstance(out, Tensor):
        return out.value
    if isinstance(out, tuple):
        return tuple(_plain(o) for o in out)
    if isinstance(out, list):
        return [_plain(o) for o in out]
    return out


def _public(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Tensors in, tensor out (recorded); arrays in, array out."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        if _has_tensor(args) or _has_tensor(tuple(kwargs.values())):
            return out
        return _plain(out)
    return run


def _xp(*xs: Any) -> Any:
    return xp_of(*xs)


def _arr(x: Any) -> Any:
    """An array for ``x`` (Keras' convert_to_tensor: Python floats become float32)."""
    if isinstance(x, Tensor):
        return x.value
    xp = _xp(x)
    if isinstance(x, (bool, np.bool_)):
        return xp.asarray(x)
    if isinstance(x, float):
        return xp.asarray(x, dtype=np.float32)
    if isinstance(x, int):
        return xp.asarray(x, dtype=np.int32)
    if isinstance(x, (list, tuple)):
        a = np.asarray(x)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        elif a.dtype == np.int64:
            a = a.astype(np.int32)
        return xp.asarray(a)
    return xp.asarray(x)


def _t(x: Any) -> Any:
    """A tensor stays a tensor; anything else becomes an array (scalars stay scalars,
    so that they do not widen a float32 array)."""
    if isinstance(x, (Tensor, int, float)) and not isinstance(x, bool):
        return x
    return _arr(x)


def _floating(x: Any) -> Any:
    """``x`` as a floating tensor/array (integer inputs become float32, as Keras)."""
    x = _t(x)
    dt = getattr(value_of(x), "dtype", None)
    if dt is not None and np.dtype(dt).kind not in "fc":
        return ad.cast(x, np.float32)
    return x


def _unary(f_name: str, df: Callable[[Any, Any, Any, Any], Any]) -> Callable[[Any], Any]:
    def op(x: Any) -> Any:
        x = _floating(x)
        xp = _xp(x)
        return ad.unary(x, getattr(xp, f_name), lambda g, v, y: df(xp, g, v, y))
    return op


# ---------------------------------------------------------------------------- arithmetic
@_public
def add(x1: Any, x2: Any) -> Any:
    """x1 + x2 with broadcasting."""
    return ad.add(_t(x1), _t(x2))


@_public
def subtract(x1: Any, x2: Any) -> Any:
    """x1 - x2 with broadcasting."""
    return ad.subtract(_t(x1), _t(x2))


@_public
def multiply(x1: Any, x2: Any) -> Any:
    """x1 * x2 with broadcasting."""
    return ad.multiply(_t(x1), _t(x2))


@_public
def divide(x1: Any, x2: Any) -> Any:
    """x1 / x2 (true division) with broadcasting."""
    return ad.divide(_floating(x1), _floating(x2))


true_divide = divide


@_public
def negative(x: Any) -> Any:
    """-x."""
    return ad.negative(_t(x))


@_public
def power(x1: Any, x2: Any) -> Any:
    """x1 ** x2 with broadcasting."""
    return ad.power(_t(x1), _t(x2))


@_public
def square(x: Any) -> Any:
    """x * x."""
    x = _t(x)
    return ad.unary(x, lambda v: v * v, lambda g, v, y: 2 * g * v)


@_public
def sqrt(x: Any) -> Any:
    """The elementwise square root."""
    return _unary("sqrt", lambda xp, g, v, y: g * 0.5 / y)(x)


@_public
def abs(x: Any) -> Any:  # noqa: A001 - Keras' name
    """|x| (the gradient at 0 is 0)."""
    return ad.absolute(_t(x))


absolute = abs


@_public
def exp(x: Any) -> Any:
    """e ** x."""
    return _unary("exp", lambda xp, g, v, y: g * y)(x)


@_public
def log(x: Any) -> Any:
    """The natural logarithm."""
    return _unary("log", lambda xp, g, v, y: g / v)(x)


@_public
def log1p(x: Any) -> Any:
    """log(1 + x), accurate for small x."""
    return _unary("log1p", lambda xp, g, v, y: g / (1 + v))(x)


@_public
def expm1(x: Any) -> Any:
    """exp(x) - 1, accurate for small x."""
    return _unary("expm1", lambda xp, g, v, y: g * (y + 1))(x)


@_public
def log2(x: Any) -> Any:
    """The base-2 logarithm."""
    return _unary("log2", lambda xp, g, v, y: g / (v * math.log(2.0)))(x)


@_public
def log10(x: Any) -> Any:
    """The base-10 logarithm."""
    return _unary("log10", lambda xp, g, v, y: g / (v * math.log(10.0)))(x)


@_public
def reciprocal(x: Any) -> Any:
    """1 / x."""
    return ad.divide(1.0, _floating(x))


@_public
def maximum(x1: Any, x2: Any) -> Any:
    """The elementwise maximum (a tie sends the gradient to x1)."""
    return ad.maximum(_t(x1), _t(x2))


@_public
def minimum(x1: Any, x2: Any) -> Any:
    """The elementwise minimum (a tie sends the gradient to x1)."""
    return ad.minimum(_t(x1), _t(x2))


@_public
def clip(x: Any, x_min: Any, x_max: Any) -> Any:
    """x limited to [x_min, x_max]; the gradient passes where x is inside (bounds included)."""
    return ad.clip(_t(x), value_of(x_min), value_of(x_max))


@_public
def where(condition: Any, x1: Any = None, x2: Any = None) -> Any:
    """x1 where condition holds, else x2 (broadcast); with one argument, the indices
    where it holds (as NumPy's ``nonzero``)."""
    if x1 is None and x2 is None:
        c = _arr(condition)
        return tuple(ad.constant(i) for i in _xp(c).nonzero(c))
    if x1 is None or x2 is None:
        raise ValueError("where: give both x1 and x2, or neither")
    return ad.where(_t(condition), _t(x1), _t(x2))


def _constant_op(name: str) -> Callable[[Any], Any]:
    def op(x: Any) -> Any:
        v = _arr(x)
        return ad.constant(getattr(_xp(v), name)(v))
    op.__name__ = name
    op.__doc__ = f"NumPy's ``{name}`` (no gradient flows through it)."
    return _public(op)


sign = _constant_op("sign")
floor = _constant_op("floor")
ceil = _constant_op("ceil")
isnan = _constant_op("isnan")
isfinite = _constant_op("isfinite")
logical_not = _constant_op("logical_not")


@_public
def round(x: Any, decimals: int = 0) -> Any:  # noqa: A001 - Keras' name
    """Round to ``decimals`` places, half to even (no gradient)."""
    v = _arr(x)
    return ad.constant(_xp(v).round(v, decimals))


# ---------------------------------------------------------------------------- reductions
@_public
def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001 - Keras' name
    """The sum over ``axis`` (all axes by default)."""
    return ad.reduce_sum(_t(x) if isinstance(x, Tensor) else _arr(x), axis, keepdims)


@_public
def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """The mean over ``axis`` (all axes by default); integers average as float32."""
    return ad.reduce_mean(_floating(_arr(x) if not isinstance(x, Tensor) else x), axis, keepdims)


@_public
def max(x: Any, axis: Any = None, keepdims: bool = False, initial: Any = None) -> Any:  # noqa: A001
    """The maximum over ``axis`` (the gradient is shared among ties)."""
    out = ad.reduce_extreme(x if isinstance(x, Tensor) else _arr(x), axis, keepdims, "max")
    return out if initial is None else ad.maximum(out, initial)


@_public
def min(x: Any, axis: Any = None, keepdims: bool = False, initial: Any = None) -> Any:  # noqa: A001
    """The minimum over ``axis`` (the gradient is shared among ties)."""
    out = ad.reduce_extreme(x if isinstance(x, Tensor) else _arr(x), axis, keepdims, "min")
    return out if initial is None else ad.minimum(out, initial)


@_public
def prod(x: Any, axis: Any = None, keepdims: bool = False, dtype: Any = None) -> Any:
    """The product over ``axis`` (exact gradients where elements are zero)."""
    x = x if isinstance(x, Tensor) else _arr(x)
    if dtype is not None:
        x = ad.cast(x, dtype)
    return ad.reduce_prod(x, axis, keepdims)


@_public
def var(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """The (biased, ddof=0) variance over ``axis``."""
    x = _floating(x)
    m = ad.reduce_mean(x, axis, True)
    d = ad.subtract(x, m)
    return ad.reduce_mean(ad.multiply(d, d), axis, keepdims)


@_public
def std(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """The (biased) standard deviation over ``axis`` (gradient 0 where it is 0)."""
    return ad.reduce_std(_floating(x), axis, keepdims)


@_public
def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """log(sum(exp(x))) over ``axis``, without overflow."""
    return ad.logsumexp(_floating(x), axis, keepdims)


@_public
def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A002
    """The Euclidean (ord None or 2 over one axis, 'fro' over two) or L1 (ord=1) norm over ``axis``."""
    x = _floating(x)
    if ord in (None, 2, "fro", "euclidean"):
        return sqrt(ad.reduce_sum(ad.multiply(x, x), axis, keepdims))
    if ord == 1 and axis is not None and isinstance(axis, int):
        return ad.reduce_sum(ad.absolute(x), axis, keepdims)
    raise NotImplementedError(f"keras.ops.norm: ord={ord!r} is not supported (None, 2, 'fro' or 1 over one axis)")


# ---------------------------------------------------------------------------- shapes, linear algebra
@_public
def matmul(x1: Any, x2: Any) -> Any:
    """The matrix product, NumPy's ``matmul`` (batched, broadcasting, 1-D operands)."""
    return ad.matmul(_t(x1) if isinstance(x1, Tensor) else _arr(x1), _t(x2) if isinstance(x2, Tensor) else _arr(x2))


@_public
def dot(x1: Any, x2: Any) -> Any:
    """NumPy's ``dot``: a product with a scalar, else the matrix product when ``x2`` has at
    most two dimensions."""
    a = x1 if isinstance(x1, Tensor) else _arr(x1)
    b = x2 if isinstance(x2, Tensor) else _arr(x2)
    if np.ndim(value_of(a)) == 0 or np.ndim(value_of(b)) == 0:
        return ad.multiply(a, b)
    if np.ndim(value_of(b)) > 2:
        raise NotImplementedError("keras.ops.dot with a second operand of more than two dimensions is not "
                                  "supported; use matmul or tensordot-free reshapes")
    return ad.matmul(a, b)


@_public
def transpose(x: Any, axes: Sequence[int] | None = None) -> Any:
    """Permute the axes (reverse them by default)."""
    return ad.transpose(x if isinstance(x, Tensor) else _arr(x), axes)


@_public
def reshape(x: Any, newshape: Any) -> Any:
    """The same values in ``newshape`` (one entry may be -1)."""
    x = x if isinstance(x, Tensor) else _arr(x)
    shape = (int(newshape),) if isinstance(newshape, (int, np.integer)) else tuple(newshape)
    return ad.reshape(x, shape)


@_public
def ravel(x: Any) -> Any:
    """The values as one axis."""
    return reshape(x, (-1,))


@_public
def expand_dims(x: Any, axis: Any) -> Any:
    """A new axis of size 1 at ``axis`` (or several)."""
    x = x if isinstance(x, Tensor) else _arr(x)
    v = value_of(x)
    return ad.reshape(x, np.expand_dims(np.empty(v.shape, dtype=np.bool_), axis).shape)


@_public
def squeeze(x: Any, axis: Any = None) -> Any:
    """Drop axes of size 1 (all of them, or ``axis``: an error unless they are size 1)."""
    x = x if isinstance(x, Tensor) else _arr(x)
    v = value_of(x)
    return ad.reshape(x, np.squeeze(np.empty(v.shape, dtype=np.bool_), axis).shape)


@_public
def concatenate(xs: Sequence[Any], axis: int = 0) -> Any:
    """Join arrays along an existing axis."""
    return ad.concatenate([x if isinstance(x, Tensor) else _arr(x) for x in xs], axis)


@_public
def stack(x: Sequence[Any], axis: int = 0) -> Any:
    """Join arrays along a new axis."""
    return ad.stack([v if isinstance(v, Tensor) else _arr(v) for v in x], axis)


@_public
def take(x: Any, indices: Any, axis: int | None = None) -> Any:
    """Elements of ``x`` at ``indices`` along ``axis`` (of the flattened array by default);
    repeated indices accumulate in the gradient."""
    x = x if isinstance(x, Tensor) else _arr(x)
    idx = _arr(indices).astype(np.int64)
    if axis is None:
        return ad.getitem(ad.reshape(x, (-1,)), idx)
    ax = int(axis) % np.ndim(value_of(x))
    return ad.getitem(x, (slice(None),) * ax + (idx,))


@_public
def take_along_axis(x: Any, indices: Any, axis: int | None = None) -> Any:
    """NumPy's ``take_along_axis`` (e.g. each row's value at its label)."""
    x = x if isinstance(x, Tensor) else _arr(x)
    if axis is None:
        return ad.take_along_axis(ad.reshape(x, (-1,)), ravel(indices), 0)
    return ad.take_along_axis(x, indices, axis)


@_public
def cumsum(x: Any, axis: int | None = None, dtype: Any = None) -> Any:
    """The cumulative sum along ``axis`` (of the flattened array by default)."""
    x = x if isinstance(x, Tensor) else _arr(x)
    if dtype is not None:
        x = ad.cast(x, _dtype(dtype))
    return ad.cumsum(x, axis)


@_public
def any(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001 - Keras' name
    """Whether any element along ``axis`` is true (no gradient)."""
    v = _arr(x)
    return ad.constant(_xp(v).any(v, axis=axis, keepdims=keepdims))


@_public
def all(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001 - Keras' name
    """Whether every element along ``axis`` is true (no gradient)."""
    v = _arr(x)
    return ad.constant(_xp(v).all(v, axis=axis, keepdims=keepdims))


# ---------------------------------------------------------------------------- nn
@_public
def relu(x: Any) -> Any:
    """max(x, 0) (the gradient at 0 is 0)."""
    x = _floating(x)
    return ad.where(ad.constant(value_of(x) > 0), x, 0.0)


@_public
def relu6(x: Any) -> Any:
    """min(max(x, 0), 6)."""
    x = _floating(x)
    v = value_of(x)
    return ad.where(ad.constant((v > 0) & (v < 6)), x, ad.constant(_xp(v).where(v >= 6, 6, 0).astype(v.dtype)))


def _sigmoid_value(xp: Any, v: Any) -> Any:
    e = xp.exp(-xp.abs(v))  # never overflows
    return xp.where(v >= 0, 1 / (1 + e), e / (1 + e)).astype(v.dtype)


@_public
def sigmoid(x: Any) -> Any:
    """1 / (1 + exp(-x)), without overflow."""
    x = _floating(x)
    xp = _xp(x)
    return ad.unary(x, lambda v: _sigmoid_value(xp, v), lambda g, v, y: g * y * (1 - y))


@_public
def tanh(x: Any) -> Any:
    """The hyperbolic tangent."""
    return _unary("tanh", lambda xp, g, v, y: g * (1 - y * y))(x)


@_public
def softplus(x: Any) -> Any:
    """log(1 + exp(x)), without overflow."""
    x = _floating(x)
    xp = _xp(x)
    return ad.unary(x, lambda v: xp.maximum(v, 0) + xp.log1p(xp.exp(-xp.abs(v))),
                    lambda g, v, y: g * _sigmoid_value(xp, v))


@_public
def softsign(x: Any) -> Any:
    """x / (1 + |x|)."""
    x = _floating(x)
    return ad.divide(x, ad.add(1.0, ad.absolute(x)))


@_public
def log_sigmoid(x: Any) -> Any:
    """log(sigmoid(x)) = -softplus(-x)."""
    return negative(softplus(negative(x)))


@_public
def hard_sigmoid(x: Any) -> Any:
    """relu6(x + 3) / 6 (Keras 3)."""
    return divide(relu6(add(x, 3.0)), 6.0)


@_public
def log_softmax(x: Any, axis: int = -1) -> Any:
    """x - logsumexp(x) over ``axis``."""
    x = _floating(x)
    return ad.subtract(x, ad.logsumexp(x, axis, True))


@_public
def softmax(x: Any, axis: int = -1) -> Any:
    """exp(x) / sum(exp(x)) over ``axis``, without overflow."""
    x = _floating(x)
    lsm = ad.subtract(x, ad.logsumexp(x, axis, True))
    return exp(lsm)


@_public
def elu(x: Any, alpha: float = 1.0) -> Any:
    """x for x > 0, else alpha (exp(x) - 1)."""
    x = _floating(x)
    pos = ad.constant(value_of(x) > 0)
    # expm1 of min(x, 0): the branch not taken must not overflow (its gradient would be inf * 0)
    return ad.where(pos, x, ad.multiply(alpha, expm1(ad.minimum(x, 0.0))))


@_public
def selu(x: Any) -> Any:
    """scale * elu(x, alpha) with Keras' constants."""
    return multiply(1.0507009873554805, elu(x, 1.6732632423543772))


@_public
def leaky_relu(x: Any, negative_slope: float = 0.2) -> Any:
    """x for x >= 0, else negative_slope * x."""
    x = _floating(x)
    return ad.where(ad.constant(value_of(x) >= 0), x, ad.multiply(negative_slope, x))


@_public
def erf(x: Any) -> Any:
    """The error function."""
    return ad.erf(_floating(x))


@_public
def gelu(x: Any, approximate: bool = True) -> Any:
    """x Φ(x): exact with the error function, or (Keras' default for ``ops.gelu``)
    the tanh approximation."""
    x = _floating(x)
    if approximate:
        inner = ad.multiply(math.sqrt(2.0 / math.pi), ad.add(x, ad.multiply(0.044715, ad.multiply(x, ad.multiply(x, x)))))
        return ad.multiply(ad.multiply(0.5, x), ad.add(1.0, tanh(inner)))
    return ad.multiply(ad.multiply(0.5, x), ad.add(1.0, ad.erf(ad.multiply(1.0 / math.sqrt(2.0), x))))


@_public
def silu(x: Any) -> Any:
    """x * sigmoid(x) (swish)."""
    x = _floating(x)
    return ad.multiply(x, sigmoid(x))


swish = silu


@_public
def binary_crossentropy(target: Any, output: Any, from_logits: bool = False) -> Any:
    """Elementwise binary cross-entropy (no reduction), Keras' formula: probabilities
    clipped to [eps, 1 - eps], or the stable form on logits."""
    output = _floating(output)
    target = ad.cast(_t(target), value_of(output).dtype) if not isinstance(target, (int, float)) else target
    if from_logits:
        # max(x, 0) - x t + log(1 + exp(-|x|))
        return ad.add(ad.subtract(relu(output), ad.multiply(output, target)), log1p(exp(negative(abs(output)))))
    eps = _epsilon()
    p = ad.clip(output, eps, 1.0 - eps)
    return negative(ad.add(ad.multiply(target, log(p)), ad.multiply(ad.subtract(1.0, target), log(ad.subtract(1.0, p)))))


@_public
def categorical_crossentropy(target: Any, output: Any, from_logits: bool = False, axis: int = -1) -> Any:
    """-sum(target * log(p)) over ``axis`` (no reduction over samples): p is
    softmax(output) with ``from_logits``, else output normalised to sum 1 and clipped
    to [eps, 1 - eps], as Keras."""
    output = _floating(output)
    target = ad.cast(_t(target), value_of(output).dtype)
    if tuple(np.shape(value_of(target))) != tuple(np.shape(value_of(output))):
        raise ValueError(f"categorical_crossentropy: target shape {np.shape(value_of(target))} must equal output "
                         f"shape {np.shape(value_of(output))}")
    if from_logits:
        logp = log_softmax(output, axis)
    else:
        p = ad.divide(output, ad.reduce_sum(output, axis, True))
        eps = _epsilon()
        logp = log(ad.clip(p, eps, 1.0 - eps))
    return negative(ad.reduce_sum(ad.multiply(target, logp), axis, False))


@_public
def one_hot(x: Any, num_classes: int, axis: int = -1, dtype: Any = "float32", sparse: bool = False) -> Any:
    """Integer class indices as one-hot rows along a new ``axis`` (out-of-range indices
    give all-zero rows, as Keras)."""
    if sparse:
        raise NotImplementedError("keras.ops.one_hot(sparse=True) is not supported")
    v = _arr(x)
    xp = _xp(v)
    idx = v.astype(np.int64)
    out = (idx[..., None] == xp.arange(int(num_classes))).astype(dtype)
    if axis != -1:
        out = xp.moveaxis(out, -1, axis)
    return ad.constant(out)


@_public
def sparse_categorical_crossentropy(target: Any, output: Any, from_logits: bool = False, axis: int = -1) -> Any:
    """categorical_crossentropy against ``one_hot(target)``: one integer class index per
    sample (a trailing axis of size 1 is dropped, as Keras)."""
    output = _floating(output)
    t = _arr(target)
    out_shape = np.shape(value_of(output))
    if t.ndim == len(out_shape) and t.shape[-1] == 1:
        t = t.reshape(t.shape[:-1])
    if t.ndim != len(out_shape) - 1:
        raise ValueError(f"sparse_categorical_crossentropy: target shape {t.shape} must be the output shape "
                         f"{out_shape} without its class axis")
    onehot = one_hot(t, out_shape[axis], axis=axis, dtype=value_of(output).dtype)
    return categorical_crossentropy(onehot, output, from_logits=from_logits, axis=axis)


# ---------------------------------------------------------------------------- comparisons, casting, creation
def _compare_op(name: str) -> Callable[[Any, Any], Any]:
    def op(x1: Any, x2: Any) -> Any:
        return ad.compare(name, _t(x1), _t(x2))
    op.__name__ = name
    op.__doc__ = f"Elementwise ``{name}`` (a boolean array; no gradient)."
    return _public(op)


equal = _compare_op("equal")
not_equal = _compare_op("not_equal")
greater = _compare_op("greater")
greater_equal = _compare_op("greater_equal")
less = _compare_op("less")
less_equal = _compare_op("less_equal")
logical_and = _compare_op("logical_and")
logical_or = _compare_op("logical_or")


def _dtype(dtype: Any) -> Any:
    try:
        return np.dtype(getattr(dtype, "name", dtype))
    except TypeError:
        raise ValueError(f"unknown dtype {dtype!r}") from None


@_public
def cast(x: Any, dtype: Any) -> Any:
    """``x`` as ``dtype`` ('float32', 'int32', 'bool', ...); differentiable between float types."""
    return ad.cast(x if isinstance(x, Tensor) else _arr(x), _dtype(dtype))


def convert_to_tensor(x: Any, dtype: Any = None, sparse: Any = None) -> Any:
    """An array for ``x`` (a tensor stays one): lists and Python floats as float32, arrays
    keep their dtype unless ``dtype`` is given; on the active backend's device."""
    if sparse:
        raise NotImplementedError("keras.ops.convert_to_tensor(sparse=True) is not supported")
    if isinstance(x, Tensor):
        return x if dtype is None else cast(x, dtype)
    if not hasattr(x, "__array_interface__") and not hasattr(x, "__cuda_array_interface__"):
        v = _arr(x)
        xp = _device_xp()
        if xp is not np:  # pragma: no cover - GPU only
            v = xp.asarray(v)
    else:
        v = _arr(x)
    return v if dtype is None else v.astype(_dtype(dtype))


def convert_to_numpy(x: Any) -> np.ndarray:
    """A NumPy array of ``x`` (copied from the GPU if needed)."""
    if isinstance(x, Tensor):
        return x.numpy()
    if hasattr(x, "get") and not isinstance(x, np.ndarray) and hasattr(x, "__cuda_array_interface__"):
        return x.get()  # pragma: no cover - GPU only
    return np.asarray(x)


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor or array of the backend."""
    return isinstance(x, Tensor) or isinstance(x, _device_xp().ndarray) or isinstance(x, np.ndarray)


def _device_xp() -> Any:
    from .backends import get_backend

    return get_backend().xp


def zeros(shape: Any, dtype: Any = "float32") -> Any:
    """An array of zeros on the active backend's device."""
    return _device_xp().zeros(shape, dtype=_dtype(dtype))


def ones(shape: Any, dtype: Any = "float32") -> Any:
    """An array of ones on the active backend's device."""
    return _device_xp().ones(shape, dtype=_dtype(dtype))


def full(shape: Any, fill_value: Any, dtype: Any = None) -> Any:
    """An array of ``fill_value`` (float32 unless ``dtype``) on the active backend's device."""
    return _device_xp().full(shape, value_of(fill_value), dtype=_dtype(dtype or "float32"))


def _like(x: Any, fill: Any, dtype: Any) -> Any:
    v = _arr(x)
    xp = _xp(v)
    out = xp.full(v.shape, fill, dtype=v.dtype if dtype is None else _dtype(dtype))
    return ad.constant(out) if isinstance(x, Tensor) else out


def zeros_like(x: Any, dtype: Any = None) -> Any:
    """Zeros of ``x``'s shape (and dtype unless given)."""
    return _like(x, 0, dtype)


def ones_like(x: Any, dtype: Any = None) -> Any:
    """Ones of ``x``'s shape (and dtype unless given)."""
    return _like(x, 1, dtype)


def full_like(x: Any, fill_value: Any, dtype: Any = None) -> Any:
    """``fill_value`` in ``x``'s shape (and dtype unless given)."""
    return _like(x, value_of(fill_value), dtype)


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> Any:
    """Evenly spaced values in [start, stop) (int32 for integer arguments, as Keras)."""
    a = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is not None:
        a = a.astype(_dtype(dtype))
    elif a.dtype == np.int64:
        a = a.astype(np.int32)
    elif a.dtype == np.float64:
        a = a.astype(np.float32)
    return _device_xp().asarray(a)


def shape(x: Any) -> tuple[int, ...]:
    """The shape as a tuple of ints."""
    return tuple(int(s) for s in np.shape(value_of(x)))


def ndim(x: Any) -> int:
    """The number of axes."""
    return len(shape(x))


def size(x: Any) -> int:
    """The number of elements."""
    return int(np.prod(shape(x)))


@_public
def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    """Index of the largest value along ``axis`` (of the flattened array by default)."""
    v = _arr(x)
    return ad.constant(_xp(v).argmax(v, axis=axis, keepdims=keepdims).astype(np.int32))


@_public
def argmin(x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    """Index of the smallest value along ``axis`` (of the flattened array by default)."""
    v = _arr(x)
    return ad.constant(_xp(v).argmin(v, axis=axis, keepdims=keepdims).astype(np.int32))


@_public
def stop_gradient(variable: Any) -> Any:
    """The value, with no gradient flowing back through it."""
    return ad.stop_gradient(variable)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"keras.ops.{name} is not supported by fusednn (supported: {', '.join(sorted(__all__))})")
