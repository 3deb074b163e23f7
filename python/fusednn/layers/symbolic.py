"""Symbolic tensors for Keras' functional API: what ``keras.Input`` returns and what a
layer returns when it is called on one.

A :class:`KerasTensor` computes nothing: it holds a shape ``(None, *sample_shape)``, the
layer that produced it (an :class:`~fusednn.layers.InputLayer` for an input) and the
tensors that layer was called on. ``keras.Model(inputs, outputs)`` walks these links back
from the outputs to find the layer graph (:mod:`fusednn.functional`).
"""
from __future__ import annotations

import itertools
import math
from typing import Any

_tensor_ids = itertools.count()


class KerasTensor:
    """A symbolic tensor of shape ``(None, *sample_shape)``, produced by ``layer`` (an
    ``InputLayer`` for a model input) from the tensors ``inbound``."""

    dtype = "float32"

    def __init__(self, shape: tuple[Any, ...], layer: Any = None, inbound: tuple["KerasTensor", ...] = (),
                 name: str | None = None) -> None:
        self.shape = tuple(shape)
        self.layer = layer
        self.inbound = tuple(inbound)
        self.name = name or getattr(layer, "name", None) or f"keras_tensor_{next(_tensor_ids)}"

    @property
    def ndim(self) -> int:
        """The number of axes, the batch axis included."""
        return len(self.shape)

    @property
    def features(self) -> int:
        """Numbers per sample (the product of the sample shape): the width of the flat
        rows every fusednn layer works on."""
        return int(math.prod(self.shape[1:]))

    @property
    def is_input(self) -> bool:
        """Whether this tensor is a model input (made by ``keras.Input``)."""
        return not self.inbound and self.layer is not None and type(self.layer).__name__ == "InputLayer"

    def _unsupported(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"symbolic tensor {self.name!r} (shape {self.shape}) supports only being passed to layers: "
                        "arithmetic and NumPy functions on symbolic tensors are not supported by fusednn's "
                        "functional API (use keras.layers.Add / Concatenate, or an Activation layer)")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _unsupported
    __matmul__ = __rmatmul__ = __neg__ = __pow__ = __getitem__ = __array__ = _unsupported

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape} name={self.name!r}>"


def is_symbolic(x: Any) -> bool:
    """Whether ``x`` is a symbolic tensor, or a non-empty list/tuple/dict of them."""
    if isinstance(x, KerasTensor):
        return True
    if isinstance(x, dict):
        x = list(x.values())
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(t, KerasTensor) for t in x)


def check_single(layer: Any, inputs: Any) -> KerasTensor:
    """The one symbolic input of a single-input layer; a clear error otherwise (several
    tensors, or a shaped sample the layer does not flatten)."""
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 1:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) takes one input tensor, got "
                             f"{len(inputs)}; merge them first (keras.layers.Concatenate or Add)")
        inputs = inputs[0]
    if not isinstance(inputs, KerasTensor):
        raise TypeError(f"layer {layer.name!r} got {type(inputs).__name__}, not a symbolic tensor")
    if inputs.ndim != 2 and not getattr(layer, "flattens_input", False):
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) works on 2-D tensors (batch, features); "
                         f"got shape {inputs.shape}: put a keras.layers.Flatten() first")
    return inputs
