"""``keras.activations``: the activation functions by their Keras names, callable on
arrays (NumPy, or CuPy on the GPU; float32 out) and accepted wherever an activation is
named (``Dense(activation=keras.activations.gelu)`` is ``activation='gelu'``).

The kernels implement Keras 3's default constants (elu alpha 1, leaky_relu
negative_slope 0.2, ...); other values of those arguments raise ValueError rather than
silently computing something else. ``get``/``serialize``/``deserialize`` map names and
functions as Keras does.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from . import keras_ops, ops
from .autodiff import Tensor


def _named(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(x: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(x, Tensor):  # in a custom layer's call or a custom loss: the differentiable form
                bound = signature.bind(x, *args, **kwargs)
                bound.apply_defaults()
                return _on_tensor(name, **bound.arguments)
            return fn(x, *args, **kwargs)
        run.keras_name = name  # what Dense/Activation store for this function
        return run
    return mark


def _on_tensor(name: str, x: Tensor, **args: Any) -> Tensor:
    """The activation ``name`` written with keras.ops (recorded for fusednn.autodiff), any
    argument values allowed."""
    k = keras_ops
    if name == "relu":
        ns, mv, th = args["negative_slope"], args["max_value"], args["threshold"]
        y = k.relu(x) if ns == 0 and th == 0 else k.where(x >= th, x, k.multiply(ns, k.subtract(x, th)))
        return y if mv is None else k.minimum(y, mv)
    if name == "linear":
        return x
    if name in ("elu",):
        return k.elu(x, args["alpha"])
    if name == "leaky_relu":
        return k.leaky_relu(x, args["negative_slope"])
    if name == "gelu":
        return k.gelu(x, args["approximate"])
    if name in ("softmax", "log_softmax"):
        return getattr(k, name)(x, args["axis"])
    if name in ("hard_silu", "hard_swish"):
        return k.multiply(x, k.hard_sigmoid(x))
    if name == "mish":
        return k.multiply(x, k.tanh(k.softplus(x)))
    if name == "exponential":
        return k.exp(x)
    return getattr(k, name)(x)  # sigmoid, tanh, selu, relu6, swish, silu, softplus, softsign, hard_sigmoid


def _default_only(fn_name: str, **args: Any) -> None:
    for arg, (value, default) in args.items():
        if value != default:
            raise ValueError(f"activations.{fn_name}: only {arg}={default!r} is supported by the kernels, "
                             f"got {value!r}")


@_named("relu")
def relu(x: Any, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0) -> Any:
    """max(x, 0); with max_value=6 (and the other defaults) it is relu6."""
    _default_only("relu", negative_slope=(negative_slope, 0.0), threshold=(threshold, 0.0))
    if max_value is None:
        return ops.relu(x)
    _default_only("relu", max_value=(max_value, 6.0))
    return ops.relu6(x)


@_named("sigmoid")
def sigmoid(x: Any) -> Any:
    """1 / (1 + exp(-x))."""
    return ops.sigmoid(x)


@_named("tanh")
def tanh(x: Any) -> Any:
    """tanh(x)."""
    return ops.tanh(x)


@_named("linear")
def linear(x: Any) -> Any:
    """x unchanged (as float32)."""
    return ops.activation(x, "linear")


@_named("elu")
def elu(x: Any, alpha: float = 1.0) -> Any:
    """x for x > 0, else alpha (exp(x) - 1)."""
    _default_only("elu", alpha=(alpha, 1.0))
    return ops.elu(x)


@_named("selu")
def selu(x: Any) -> Any:
    """Scaled elu with Keras' fixed scale and alpha."""
    return ops.selu(x)


@_named("leaky_relu")
def leaky_relu(x: Any, negative_slope: float = 0.2) -> Any:
    """x for x >= 0, else negative_slope * x."""
    _default_only("leaky_relu", negative_slope=(negative_slope, 0.2))
    return ops.leaky_relu(x)


@_named("relu6")
def relu6(x: Any) -> Any:
    """min(max(x, 0), 6)."""
    return ops.relu6(x)


@_named("gelu")
def gelu(x: Any, approximate: bool = False) -> Any:
    """x * Phi(x), exact by default as in Keras; approximate=True is the tanh form."""
    return ops.gelu(x, approximate=approximate)


@_named("swish")
def swish(x: Any) -> Any:
    """x * sigmoid(x)."""
    return ops.swish(x)


@_named("silu")
def silu(x: Any) -> Any:
    """x * sigmoid(x) (the same function as swish)."""
    return ops.swish(x)


@_named("softplus")
def softplus(x: Any) -> Any:
    """log(1 + exp(x))."""
    return ops.softplus(x)


@_named("softsign")
def softsign(x: Any) -> Any:
    """x / (1 + |x|)."""
    return ops.softsign(x)


@_named("hard_sigmoid")
def hard_sigmoid(x: Any) -> Any:
    """relu6(x + 3) / 6 (Keras 3's definition)."""
    return ops.hard_sigmoid(x)


@_named("hard_silu")
def hard_silu(x: Any) -> Any:
    """x * hard_sigmoid(x)."""
    return ops.hard_swish(x)


@_named("hard_swish")
def hard_swish(x: Any) -> Any:
    """x * hard_sigmoid(x) (the same function as hard_silu)."""
    return ops.hard_swish(x)


@_named("mish")
def mish(x: Any) -> Any:
    """x * tanh(softplus(x))."""
    return ops.mish(x)


@_named("exponential")
def exponential(x: Any) -> Any:
    """exp(x)."""
    return ops.exponential(x)


@_named("softmax")
def softmax(x: Any, axis: int = -1) -> Any:
    """Softmax over the last axis of a 2-D array."""
    _default_only("softmax", axis=(axis, -1))
    return ops.softmax(x)


@_named("log_softmax")
def log_softmax(x: Any, axis: int = -1) -> Any:
    """Log-softmax over the last axis of a 2-D array."""
    _default_only("log_softmax", axis=(axis, -1))
    return ops.log_softmax(x)


_BY_NAME = {fn.keras_name: fn for fn in (relu, sigmoid, tanh, linear, elu, selu, leaky_relu, relu6, gelu, swish,
                                         silu, softplus, softsign, hard_sigmoid, hard_silu, hard_swish, mish,
                                         exponential, softmax, log_softmax)}


def name_of(activation: Any) -> Any:
    """The name for an activation given as a name, None, or one of this module's
    functions; anything else is returned unchanged (for the caller to reject)."""
    if callable(activation) and _BY_NAME.get(getattr(activation, "keras_name", None)) is activation:
        return activation.keras_name
    return activation


def get(identifier: Any) -> Callable[..., Any]:
    """The activation function for a name (None: linear) or one of these functions."""
    if identifier is None:
        return linear
    name = name_of(identifier)
    if isinstance(name, str) and name in _BY_NAME:
        return _BY_NAME[name]
    raise ValueError(f"unknown activation {identifier!r}; valid: {', '.join(sorted(_BY_NAME))}")


def serialize(activation: Callable[..., Any]) -> str:
    """The Keras name of an activation function."""
    return get(activation).keras_name


def deserialize(name: str) -> Callable[..., Any]:
    """The activation function named ``name``."""
    return get(name)
