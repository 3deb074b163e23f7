"""Core layers: Dense, Activation and the Input marker, with Keras' names and defaults.

Each layer implements its own forward and backward pass on the backend it was
built on, and nothing else: it never allocates while running. The caller (a
model) owns one :class:`Buffers` per layer and batch size, and the layer writes
its output, and in training its gradients, into them. A layer keeps references
to what its backward pass needs (its input and output of the last forward).
Weights and gradients are backend arrays (NumPy or CuPy); initial values are
drawn on the host so that a seed gives the same model on every backend.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import constraints, initializers, regularizers
from ..activations import name_of
from ..backends import NEEDS_INPUT, activation_code
from .base import Buffers, Layer, feature_dim, unique_name


def _activation_name(activation: str | None) -> str:
    name = "linear" if activation is None else name_of(activation)  # keras.activations.f stands for 'f'
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name (str) or None, got {type(activation).__name__}")
    if name not in ("softmax", "log_softmax"):  # row-wise: their own kernels, not the elementwise codes
        try:
            activation_code(name)
        except ValueError:
            from ..backends import ACTIVATIONS

            valid = ", ".join(sorted([*ACTIVATIONS, "softmax", "log_softmax"]))
            raise ValueError(f"unknown activation {name!r}; valid: {valid}") from None
    return name




class Dense(Layer):
    """Fully connected layer ``activation(x @ kernel + bias)``, Keras' Dense: kernel
    (input_dim, units) initialised with glorot_uniform, bias (units,) with zeros.
    Its forward pass is one fused matmul+bias+activation kernel call."""

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str | initializers.Initializer = "glorot_uniform",
                 bias_initializer: str | initializers.Initializer = "zeros",
                 kernel_regularizer: str | dict | regularizers.Regularizer | None = None,
                 bias_regularizer: str | dict | regularizers.Regularizer | None = None,
                 input_shape: Any = None, input_dim: int | None = None, name: str | None = None,
                 kernel_constraint: str | dict | constraints.Constraint | None = None,
                 bias_constraint: str | dict | constraints.Constraint | None = None,
                 activity_regularizer: str | dict | regularizers.Regularizer | None = None) -> None:
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = _activation_name(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        # Keras 3: reg(output) / batch size joins the loss in training (on the layer's output,
        # after its activation)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        for reg, what in ((self.kernel_regularizer, "kernel_regularizer"), (self.bias_regularizer, "bias_regularizer"),
                          (self.activity_regularizer, "activity_regularizer")):
            if reg is not None:
                regularizers.check_fusable(reg, f"Dense {what}")
        # projections after every optimizer update (Keras' kernel_constraint/bias_constraint)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
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

    #: the one-element float32 loss buffer ``backward`` adds the activity penalty to (set by
    #: the trainer for each training step; None: the penalty's gradient only)
    activity_loss: Any = None

    def activity_penalty(self) -> float:
        """The activity penalty of the latest forward pass's output (``reg(y) / rows``, the
        loss term Keras 3 adds in training and evaluation); 0 without a regularizer."""
        if self.activity_regularizer is None:
            return 0.0
        y = self.backend.to_numpy(self._y)
        return self.activity_regularizer(y) / y.shape[0]

    def activity_factors(self, rows: int) -> tuple[float, float] | None:
        """The L1/L2 factors of the activity penalty for a batch of ``rows`` (Keras divides
        the regularizer's value by the batch size), as the fused trainer computes them:
        float32 factor over rows, in double; None without an activity regularizer."""
        reg = self.activity_regularizer
        if reg is None:
            return None
        return float(np.float32(reg.l1)) / rows, float(np.float32(reg.l2)) / rows

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        be = self.backend
        factors = self.activity_factors(dy.shape[0])
        if factors is not None:  # the penalty's gradient joins the output's (loss: add_activity_penalty)
            if self._logits:
                raise ValueError(f"Dense {self.name!r}: an activity_regularizer on an output whose activation the "
                                 "loss takes into itself (a cross-entropy on logits) is not supported")
            be.regularize(self._y, dy, factors[0], factors[1], self.activity_loss)
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

    def regularized(self) -> list[tuple[Any, Any, regularizers.Regularizer]]:
        """(weight, its gradient, regularizer) for each regularized weight, kernel first."""
        out = []
        if self.kernel_regularizer is not None:
            out.append((self.kernel, self.grads[0], self.kernel_regularizer))
        if self.use_bias and self.bias_regularizer is not None:
            out.append((self.bias, self.grads[1], self.bias_regularizer))
        return out

    def add_penalties(self, loss_out: Any) -> None:
        for w, g, reg in self.regularized():
            self.backend.regularize(w, g, reg.l1, reg.l2, loss_out)

    def penalty(self) -> float:
        return sum(reg(self.backend.to_numpy(w)) for w, _, reg in self.regularized())

    def constrained(self) -> list[tuple[Any, constraints.Constraint]]:
        """(weight, constraint) for each constrained weight, kernel first."""
        out = []
        if self.kernel_constraint is not None:
            out.append((self.kernel, self.kernel_constraint))
        if self.use_bias and self.bias_constraint is not None:
            out.append((self.bias, self.bias_constraint))
        return out

    def apply_constraints(self) -> None:
        for w, con in self.constrained():
            spec = con.kernel_spec(w.ndim, f"Dense {self.name!r}")
            if spec is not None:
                self.backend.constrain(w, spec)
            else:  # a user constraint: its own Python projection
                w[...] = self.backend.asarray(con(w))

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "units": self.units, "activation": self.activation,
                  "use_bias": self.use_bias,
                  "kernel_initializer": initializers.serialize(self.kernel_initializer),
                  "bias_initializer": initializers.serialize(self.bias_initializer)}
        # written only when set, so files saved before regularizers existed stay identical
        if self.kernel_regularizer is not None:
            config["kernel_regularizer"] = regularizers.serialize(self.kernel_regularizer)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        if self.bias_regularizer is not None:
            config["bias_regularizer"] = regularizers.serialize(self.bias_regularizer)
        if self.kernel_constraint is not None:
            config["kernel_constraint"] = constraints.serialize(self.kernel_constraint)
        if self.bias_constraint is not None:
            config["bias_constraint"] = constraints.serialize(self.bias_constraint)
        return config

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


class InputLayer(Layer):
    """Declares the per-sample input shape ``(features,)`` of a Sequential model when
    placed first in it, as ``keras.Input(shape=...)`` does; it computes nothing. In a
    functional model it is the first layer of each input, as in Keras' ``model.layers``
    (the identity on the rows it is given)."""

    def __init__(self, shape: Any = None, batch_size: int | None = None, name: str | None = None,
                 input_shape: Any = None) -> None:
        super().__init__(name or unique_name("input_layer"))
        self.batch_size = batch_size
        given = shape if shape is not None else input_shape
        #: the per-sample shape when it has more than one axis (then a Flatten follows), else None
        self.sample_shape: tuple[int, ...] | None = None
        if given is not None and not isinstance(given, (int, np.integer)) and len(tuple(given)) > 1:
            # a shaped sample (e.g. an 8x8 image): a Flatten must come next; rows hold prod(shape)
            dims = tuple(given)
            if any(d is None or int(d) < 1 for d in dims):
                raise ValueError(f"{self.name}: shape must have positive sizes, got {dims}")
            self.sample_shape = tuple(int(d) for d in dims)
            given = (int(np.prod(dims)),)
        self.input_dim = feature_dim(given, None, self.name)
        if self.input_dim is None:
            raise ValueError("Input needs a shape, e.g. Input(shape=(10,))")

    @property
    def flattens_input(self) -> bool:
        """Whether samples have a shape (e.g. 8x8) read as flat rows (a Flatten follows)."""
        return self.sample_shape is not None

    def make_buffers(self, batch: int) -> Buffers:
        return Buffers(batch, None)  # the identity: it hands its input on

    def forward(self, x: Any, buf: Buffers) -> Any:
        return x

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        return dy if need_dx else None

    def onnx_nodes(self, builder: Any, x: str) -> str:
        return x

    def __repr__(self) -> str:
        return f"<InputLayer name={self.name!r} shape=({self.input_dim},)>"


    @property
    def output(self) -> Any:
        """The symbolic tensor this input stands for (Keras' ``InputLayer.output``)."""
        from .symbolic import KerasTensor

        if getattr(self, "_output", None) is None:
            dims = self.sample_shape if self.sample_shape is not None else (self.input_dim,)
            self._output = KerasTensor((None, *dims), layer=self, name=self.name)
        return self._output

    def get_config(self) -> dict[str, Any]:
        """Keras' InputLayer config: ``batch_shape`` (batch None), dtype and name."""
        dims = self.sample_shape if self.sample_shape is not None else (self.input_dim,)
        return {"batch_shape": [self.batch_size, *dims], "dtype": "float32", "sparse": False, "name": self.name}


def Input(shape: Any, batch_size: int | None = None, name: str | None = None) -> Any:
    """``keras.Input(shape, batch_size=None, name=None)``: a symbolic tensor of shape
    ``(None, *shape)`` to call layers on (functional API, :class:`fusednn.Model`) or to
    put first in a Sequential model (it then declares the input shape)."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name).output
