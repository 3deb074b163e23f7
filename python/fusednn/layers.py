"""Layers: Dense, Activation and the Input marker, with Keras' names and defaults.

Each layer implements its own forward and backward pass on the backend it was
built on, and nothing else: it never allocates while running. The caller (a
model) owns one :class:`Buffers` per layer and batch size, and the layer writes
its output, and in training its gradients, into them. A layer keeps references
to what its backward pass needs (its input and output of the last forward).
Weights and gradients are backend arrays (NumPy or CuPy); initial values are
drawn on the host so that a seed gives the same model on every backend.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np

from . import initializers
from .backends import NEEDS_INPUT, Backend, activation_code, get_backend
from .registry import Registry

_name_counts: defaultdict[str, int] = defaultdict(int)

#: every Layer subclass by class name, for rebuilding saved models (see fusednn.registry)
REGISTRY = Registry("layer")


def unique_name(prefix: str) -> str:
    """Keras-style automatic names: 'dense', then 'dense_1', 'dense_2', ..."""
    n = _name_counts[prefix]
    _name_counts[prefix] += 1
    return prefix if n == 0 else f"{prefix}_{n}"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _activation_name(activation: str | None) -> str:
    name = "linear" if activation is None else activation
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name (str) or None, got {type(activation).__name__}")
    if name not in ("softmax", "log_softmax"):  # row-wise: their own kernels, not the elementwise codes
        try:
            activation_code(name)
        except ValueError:
            from .backends import ACTIVATIONS

            valid = ", ".join(sorted([*ACTIVATIONS, "softmax", "log_softmax"]))
            raise ValueError(f"unknown activation {name!r}; valid: {valid}") from None
    return name


def _feature_dim(input_shape: Any, input_dim: Any, where: str) -> int | None:
    """The per-sample feature count given by Keras' ``input_shape`` / ``input_dim`` / ``shape``."""
    if input_shape is None and input_dim is None:
        return None
    if input_dim is not None:
        shape = (input_dim,)
    elif isinstance(input_shape, (int, np.integer)):
        shape = (input_shape,)
    else:
        shape = tuple(input_shape)
    if len(shape) != 1 or shape[0] is None or int(shape[0]) < 1:
        raise ValueError(f"{where}: input shape must be (features,) with features >= 1 "
                         f"(dense layers take 2-D input (batch, features)), got {shape}")
    return int(shape[0])


class Buffers:
    """Per-layer arrays for one batch size: the output ``y`` and, allocated on the
    first backward pass, the activation gradient ``dz`` and input gradient ``dx``; ``z``
    holds the pre-activation of a layer whose activation's backward needs it (gelu, swish...)."""

    __slots__ = ("batch", "y", "dz", "dx", "z")

    def __init__(self, batch: int, y: Any) -> None:
        self.batch, self.y, self.dz, self.dx, self.z = batch, y, None, None, None


class Layer:
    """Base class. A layer maps (batch, input_dim) to (batch, output_dim), is built
    for a given ``input_dim`` on the backend active at that moment, and owns its
    ``weights`` and matching ``grads`` (backend arrays, Keras order)."""

    def __init__(self, name: str | None = None, input_shape: Any = None, input_dim: int | None = None) -> None:
        self.name = name or unique_name(_snake(type(self).__name__))
        self.input_dim = _feature_dim(input_shape, input_dim, self.name)
        self.backend: Backend | None = None
        self.built = False
        self.weights: list[Any] = []
        self.grads: list[Any] = []

    # ---- shape and construction --------------------------------------------
    def output_dim(self, input_dim: int) -> int:
        """Features per sample of the output for ``input_dim`` input features."""
        return input_dim

    def build(self, input_dim: int) -> None:
        """Create the weights for ``input_dim`` input features on the active backend."""
        if self.input_dim is not None and self.input_dim != input_dim:
            raise ValueError(f"layer {self.name!r} expects {self.input_dim} input features, got {input_dim}")
        self.input_dim = int(input_dim)
        self.backend = get_backend()
        self.built = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY.register(cls)

    # ---- saving and export ---------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (Keras' layer config); subclasses
        with their own arguments extend it. The input size is the model's to save."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        """A new, unbuilt layer from :meth:`get_config`'s output."""
        return cls(**config)

    def onnx_nodes(self, builder: Any, x: str) -> str:
        """Add this layer's ONNX nodes computing from the tensor named ``x`` to
        ``builder`` (a :class:`fusednn.onnx_export.GraphBuilder`); returns the name of
        the output tensor."""
        raise NotImplementedError(f"layer {self.name!r} ({type(self).__name__}) has no ONNX export; "
                                  "define its onnx_nodes()")

    def count_params(self) -> int:
        """Number of weights (all trainable)."""
        return sum(int(w.size) for w in self.weights)

    def get_weights(self) -> list[np.ndarray]:
        """NumPy copies of the weights, in Keras order."""
        return [np.array(self.backend.to_numpy(w), dtype=np.float32) for w in self.weights]

    def set_weights(self, weights: list[Any]) -> None:
        """Copy values into the weights, checking their number and shapes."""
        if len(weights) != len(self.weights):
            raise ValueError(f"layer {self.name!r} has {len(self.weights)} weight arrays, got {len(weights)}")
        values = [np.asarray(v, dtype=np.float32) for v in weights]
        for w, v in zip(self.weights, values):
            if tuple(v.shape) != tuple(w.shape):
                raise ValueError(f"layer {self.name!r}: weight of shape {tuple(w.shape)} cannot take "
                                 f"a value of shape {tuple(v.shape)}")
        for w, v in zip(self.weights, values):
            w[...] = self.backend.asarray(v)

    # ---- compute -------------------------------------------------------------
    def make_buffers(self, batch: int) -> Buffers:
        """Output buffer for ``batch`` samples (training buffers come on first use)."""
        return Buffers(batch, self.backend.empty((batch, self.output_dim(self.input_dim))))

    def forward(self, x: Any, buf: Buffers) -> Any:
        """Compute the output of ``x`` into ``buf.y``, keep what backward needs, return it."""
        raise NotImplementedError

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        """Given the loss gradient ``dy`` w.r.t. the last forward output, write the
        weight gradients into ``grads`` and return the input gradient (None unless
        ``need_dx``: the first layer's is never used)."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        """Apply the layer to a 2-D array (building it on first use); returns a new
        array of the layer's backend (NumPy, or CuPy on the GPU)."""
        if not self.built:
            self.build(int(np.shape(x)[1]))
        x = self.backend.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"layer {self.name!r} expects input of shape (batch, {self.input_dim}), "
                             f"got {tuple(x.shape)}")
        return self.forward(x, self.make_buffers(x.shape[0]))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class Dense(Layer):
    """Fully connected layer ``activation(x @ kernel + bias)``, Keras' Dense: kernel
    (input_dim, units) initialised with glorot_uniform, bias (units,) with zeros.
    Its forward pass is one fused matmul+bias+activation kernel call."""

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str | initializers.Initializer = "glorot_uniform",
                 bias_initializer: str | initializers.Initializer = "zeros",
                 input_shape: Any = None, input_dim: int | None = None, name: str | None = None) -> None:
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = _activation_name(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        super().__init__(name, input_shape, input_dim)
        self.kernel: Any = None
        self.bias: Any = None
        self._x = self._y = self._z = None
        self._logits = False

    def output_dim(self, input_dim: int) -> int:
        return self.units

    def build(self, input_dim: int) -> None:
        super().build(input_dim)
        be = self.backend
        self.kernel = be.asarray(self.kernel_initializer((self.input_dim, self.units)))
        self.weights = [self.kernel]
        if self.use_bias:
            self.bias = be.asarray(self.bias_initializer((self.units,)))
            self.weights.append(self.bias)
        self.grads = [be.zeros(w.shape) for w in self.weights]

    def forward(self, x: Any, buf: Buffers, logits: bool = False) -> Any:
        """With ``logits`` the activation is left out: the loss folds it in (see losses)."""
        row = self.activation in ("softmax", "log_softmax")
        act = "linear" if logits or row else self.activation
        if act in NEEDS_INPUT:  # the backward pass needs the pre-activation: keep it in buf.z
            if buf.z is None:
                buf.z = self.backend.empty(buf.y.shape)
            self.backend.matmul(x, self.kernel, out=buf.z, bias=self.bias, activation="linear")
            self.backend.act_forward(buf.z, buf.y, act)
        else:
            self.backend.matmul(x, self.kernel, out=buf.y, bias=self.bias, activation=act)
        if row and not logits:
            (self.backend.softmax if self.activation == "softmax" else self.backend.log_softmax)(buf.y, buf.y)
        self._x, self._y, self._z, self._logits = x, buf.y, buf.z, logits
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        be = self.backend
        if self.activation == "linear" or self._logits:
            dz = dy
        else:
            if buf.dz is None:
                buf.dz = be.empty(buf.y.shape)
            if self.activation == "softmax":
                be.softmax_backward(dy, self._y, buf.dz)
            elif self.activation == "log_softmax":
                be.log_softmax_backward(dy, self._y, buf.dz)
            else:
                saved = self._z if self.activation in NEEDS_INPUT else self._y
                be.act_backward(dy, saved, buf.dz, self.activation)
            dz = buf.dz
        be.matmul(self._x, dz, out=self.grads[0], transpose_a=True)
        if self.use_bias:
            be.sum_rows(dz, self.grads[1])
        if not need_dx:
            return None
        if buf.dx is None:
            buf.dx = be.empty((buf.batch, self.input_dim))
        be.matmul(dz, self.kernel, out=buf.dx, transpose_b=True)
        return buf.dx

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}

    def onnx_nodes(self, builder: Any, x: str) -> str:
        weights = self.get_weights()
        w = builder.constant(f"{self.name}.kernel", weights[0])
        if self.use_bias:
            z = builder.node("Gemm", [x, w, builder.constant(f"{self.name}.bias", weights[1])])
        else:
            z = builder.node("MatMul", [x, w])
        return builder.activation(self.activation, z)

    def __repr__(self) -> str:
        return f"<Dense name={self.name!r} units={self.units} activation={self.activation!r}>"


class Activation(Layer):
    """Applies an activation: any elementwise one of ``fusednn.backends.ACTIVATIONS``
    ('relu', 'gelu', 'swish', ...), or 'softmax' / 'log_softmax' over each sample's features."""

    def __init__(self, activation: str | None, input_shape: Any = None, input_dim: int | None = None,
                 name: str | None = None) -> None:
        self.activation = _activation_name(activation)
        super().__init__(name, input_shape, input_dim)
        self._x = self._y = None
        self._logits = False

    def forward(self, x: Any, buf: Buffers, logits: bool = False) -> Any:
        """With ``logits`` the input passes through: the loss folds the activation in."""
        if logits or self.activation == "linear":
            buf.y[...] = x
        elif self.activation == "softmax":
            self.backend.softmax(x, buf.y)
        elif self.activation == "log_softmax":
            self.backend.log_softmax(x, buf.y)
        else:
            self.backend.act_forward(x, buf.y, self.activation)
        self._x, self._y, self._logits = x, buf.y, logits
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        if not need_dx:
            return None
        if self._logits or self.activation == "linear":
            return dy
        if buf.dx is None:
            buf.dx = self.backend.empty(buf.y.shape)
        if self.activation == "softmax":
            self.backend.softmax_backward(dy, self._y, buf.dx)
        elif self.activation == "log_softmax":
            self.backend.log_softmax_backward(dy, self._y, buf.dx)
        else:
            saved = self._x if self.activation in NEEDS_INPUT else self._y
            self.backend.act_backward(dy, saved, buf.dx, self.activation)
        return buf.dx

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}

    def onnx_nodes(self, builder: Any, x: str) -> str:
        return builder.activation(self.activation, x)


class InputLayer:
    """Declares the per-sample input shape ``(features,)`` of a Sequential model when
    placed first in it, as ``keras.Input(shape=...)`` does; it computes nothing."""

    def __init__(self, shape: Any = None, batch_size: int | None = None, name: str | None = None,
                 input_shape: Any = None) -> None:
        self.name = name or unique_name("input_layer")
        self.batch_size = batch_size
        self.input_dim = _feature_dim(shape if shape is not None else input_shape, None, self.name)
        if self.input_dim is None:
            raise ValueError("Input needs a shape, e.g. Input(shape=(10,))")

    def __repr__(self) -> str:
        return f"<InputLayer name={self.name!r} shape=({self.input_dim},)>"


def Input(shape: Any, batch_size: int | None = None, name: str | None = None) -> InputLayer:
    """``keras.Input``: the input declaration to put first in a Sequential model."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name)


from .normalization import Normalization  # noqa: E402  (defined over Layer, exported here as in Keras)
