"""Merging layers of Keras' functional API: ``Concatenate``, ``Add``, ``Subtract``,
``Multiply``, ``Average`` (and the function forms ``concatenate``, ``add``, ...).

They take a list of 2-D inputs (batch, features_i). Forward and backward run on the
backend's array module (NumPy on numpy/cpu, CuPy on cuda): a concatenation and a sum
are memory copies, nothing a native kernel would speed up. This is the per-op path
(and its reference); the fused CPU trainer runs all five as merge blocks of its layer
graphs (fusednn/trainer.h, csrc/cpu/merge.cpp) in the same operation order, so both
give the same numbers.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import get_backend
from .base import Buffers, Layer
from .symbolic import KerasTensor, is_symbolic


class Merge(Layer):
    """Base of the merging layers (Keras' ``Merge``): several inputs (a list), one output."""

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.input_dims: list[int] | None = None

    def _output_features(self, dims: list[int]) -> int:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return super().get_config()

    def output_dim(self, input_dim: Any = None) -> int:
        if self.input_dims is None:
            raise ValueError(f"layer {self.name!r} is not built yet")
        return self._output_features(self.input_dims)

    def build(self, input_dims: Any) -> None:
        """Build for inputs of ``input_dims`` features each (a list of at least two)."""
        dims = [int(d) for d in input_dims] if isinstance(input_dims, (list, tuple)) else None
        if dims is None or len(dims) < 2:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) needs a list of at least 2 inputs, "
                             f"got {input_dims!r}")
        self._output_features(dims)  # checks the shapes
        self.input_dims = dims
        self.backend = get_backend()
        self.built = True

    def _check_inputs(self, xs: Any) -> list[int]:
        if not isinstance(xs, (list, tuple)) or len(xs) < 2:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) must be called on a list of at least "
                             f"2 tensors, got {type(xs).__name__}")
        for x in xs:
            if len(x.shape) != 2:
                raise ValueError(f"layer {self.name!r} merges 2-D tensors (batch, features), got shape "
                                 f"{tuple(x.shape)}")
        return [int(x.shape[1]) for x in xs]

    def symbolic_call(self, inputs: Any, training: Any = None) -> KerasTensor:
        if isinstance(inputs, dict):
            inputs = list(inputs.values())
        dims = self._check_inputs(inputs)
        if not self.built:
            self.build(dims)
        elif dims != self.input_dims:
            raise ValueError(f"layer {self.name!r} was built for inputs of {self.input_dims} features, got {dims}")
        return KerasTensor((None, self.output_dim()), layer=self, inbound=tuple(inputs))

    def make_buffers(self, batch: int) -> Buffers:
        return Buffers(batch, self.backend.empty((batch, self.output_dim())))

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        """On symbolic tensors: a graph node (functional API). On a list of 2-D arrays:
        the merged array (building the layer on first use)."""
        if is_symbolic(inputs):
            return self.symbolic_call(inputs, training)
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) takes a list of arrays")
        be = self.backend or get_backend()
        xs = [be.asarray(np.asarray(x, dtype=np.float32) if isinstance(x, (list, tuple)) else x) for x in inputs]
        xs = [x.astype(np.float32, copy=False) for x in xs]
        dims = self._check_inputs(xs)
        if not self.built:
            self.build(dims)
        elif dims != self.input_dims:
            raise ValueError(f"layer {self.name!r} was built for inputs of {self.input_dims} features, got {dims}")
        if len({x.shape[0] for x in xs}) != 1:
            raise ValueError(f"layer {self.name!r}: inputs have different batch sizes {[x.shape[0] for x in xs]}")
        return self.forward(xs, self.make_buffers(xs[0].shape[0]))


class Concatenate(Merge):
    """``keras.layers.Concatenate(axis=-1)``: joins its inputs along the feature axis
    (the only axis of 2-D inputs besides the batch: -1 or 1)."""

    def __init__(self, axis: int = -1, name: str | None = None, **kwargs: Any) -> None:
        if isinstance(axis, bool) or axis not in (-1, 1):
            raise ValueError(f"Concatenate axis must be -1 (or 1: the features of 2-D inputs), got {axis!r}")
        self.axis = int(axis)
        super().__init__(name, **kwargs)

    def _output_features(self, dims: list[int]) -> int:
        return int(sum(dims))

    def forward(self, xs: list[Any], buf: Buffers) -> Any:
        at = 0
        for x in xs:
            buf.y[:, at:at + x.shape[1]] = x
            at += x.shape[1]
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> list[Any] | None:
        """Each input's gradient: its columns of ``dy``, copied to a contiguous buffer
        (the layers below hand them to kernels that take contiguous arrays)."""
        if not need_dx:
            return None
        if buf.dx is None:
            buf.dx = [self.backend.empty((buf.batch, d)) for d in self.input_dims]
        at = 0
        for g in buf.dx:
            g[...] = dy[:, at:at + g.shape[1]]
            at += g.shape[1]
        return buf.dx

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}

    def onnx_nodes(self, builder: Any, xs: list[str]) -> str:
        return builder.node("Concat", list(xs), axis=1)


class Add(Merge):
    """``keras.layers.Add()``: the elementwise sum of inputs of equal shape."""

    def _output_features(self, dims: list[int]) -> int:
        if len(set(dims)) != 1:
            raise ValueError(f"Add needs inputs of equal shape, got features {dims}")
        return dims[0]

    def forward(self, xs: list[Any], buf: Buffers) -> Any:
        xp = self.backend.xp
        xp.add(xs[0], xs[1], out=buf.y)
        for x in xs[2:]:
            buf.y += x
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> list[Any] | None:
        """d sum / d x_i is the identity: every input gets ``dy`` itself (read-only)."""
        return [dy] * len(self.input_dims) if need_dx else None

    def onnx_nodes(self, builder: Any, xs: list[str]) -> str:
        return builder.node("Sum", list(xs))


class _Elementwise(Merge):
    """Shared shape rule of the elementwise merges: inputs of equal shape."""

    def _output_features(self, dims: list[int]) -> int:
        if len(set(dims)) != 1:
            raise ValueError(f"{type(self).__name__} needs inputs of equal shape, got features {dims}")
        return dims[0]

    def _grad_buffers(self, buf: Buffers) -> list[Any]:
        if buf.dx is None:
            buf.dx = [self.backend.empty((buf.batch, d)) for d in self.input_dims]
        return buf.dx


class Subtract(_Elementwise):
    """``keras.layers.Subtract()``: ``inputs[0] - inputs[1]`` (exactly two inputs)."""

    def _output_features(self, dims: list[int]) -> int:
        if len(dims) != 2:
            raise ValueError(f"Subtract takes exactly 2 inputs, got {len(dims)}")
        return super()._output_features(dims)

    def forward(self, xs: list[Any], buf: Buffers) -> Any:
        self.backend.xp.subtract(xs[0], xs[1], out=buf.y)
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> list[Any] | None:
        if not need_dx:
            return None
        g = self._grad_buffers(buf)
        self.backend.xp.negative(dy, out=g[1])
        return [dy, g[1]]

    def onnx_nodes(self, builder: Any, xs: list[str]) -> str:
        return builder.node("Sub", list(xs))


class Multiply(_Elementwise):
    """``keras.layers.Multiply()``: the elementwise product of inputs of equal shape."""

    def forward(self, xs: list[Any], buf: Buffers) -> Any:
        xp = self.backend.xp
        xp.multiply(xs[0], xs[1], out=buf.y)
        for x in xs[2:]:
            buf.y *= x
        self._xs = list(xs)
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> list[Any] | None:
        """d prod / d x_i = dy times the product of the other inputs."""
        if not need_dx:
            return None
        xp = self.backend.xp
        g = self._grad_buffers(buf)
        for i in range(len(self._xs)):
            g[i][...] = dy
            for j, x in enumerate(self._xs):
                if j != i:
                    xp.multiply(g[i], x, out=g[i])
        return g

    def onnx_nodes(self, builder: Any, xs: list[str]) -> str:
        y = xs[0]
        for x in xs[1:]:
            y = builder.node("Mul", [y, x])
        return y


class Average(_Elementwise):
    """``keras.layers.Average()``: the elementwise mean of inputs of equal shape."""

    def forward(self, xs: list[Any], buf: Buffers) -> Any:
        xp = self.backend.xp
        xp.add(xs[0], xs[1], out=buf.y)
        for x in xs[2:]:
            buf.y += x
        buf.y *= np.float32(1.0 / len(xs))
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> list[Any] | None:
        if not need_dx:
            return None
        g = self._grad_buffers(buf)
        self.backend.xp.multiply(dy, np.float32(1.0 / len(g)), out=g[0])
        return [g[0]] * len(g)

    def onnx_nodes(self, builder: Any, xs: list[str]) -> str:
        scale = builder.constant(f"{self.name}.scale", np.float32(1.0 / len(xs)))
        return builder.node("Mul", [builder.node("Sum", list(xs)), scale])


def concatenate(inputs: list[Any], axis: int = -1, **kwargs: Any) -> Any:
    """``keras.layers.concatenate``: ``Concatenate(axis=axis, **kwargs)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def add(inputs: list[Any], **kwargs: Any) -> Any:
    """``keras.layers.add``: ``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs: list[Any], **kwargs: Any) -> Any:
    """``keras.layers.subtract``: ``Subtract(**kwargs)(inputs)``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs: list[Any], **kwargs: Any) -> Any:
    """``keras.layers.multiply``: ``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs: list[Any], **kwargs: Any) -> Any:
    """``keras.layers.average``: ``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)
