"""Keras' ``Flatten`` and ``Reshape`` for models whose samples have a shape, e.g. 8×8 images.

fusednn's layers work on flat (batch, features) rows, so flattening happens once, at
the API boundary: a model whose first layer is a ``Flatten`` (or a ``Reshape`` to a
flat shape) accepts inputs of shape ``(samples, *sample_shape)`` and reads them as
``(samples, prod(sample_shape))`` rows in C order, exactly as Keras' Flatten orders
them. Inside the model both layers are the identity (no kernel, nothing in the fused
trainer). A ``Reshape`` to a shape of more than one axis would change what the next
Dense layer acts on, which flat rows cannot represent: it is refused.
"""
from __future__ import annotations

import math
from typing import Any

from .base import Buffers, Layer


def _sample_shape(input_shape: Any, where: str) -> tuple[int, ...] | None:
    if input_shape is None:
        return None
    shape = (int(input_shape),) if isinstance(input_shape, int) else tuple(input_shape)
    if not shape or any(d is None or int(d) < 1 for d in shape):
        raise ValueError(f"{where}: input_shape must be a tuple of positive sizes, got {input_shape!r}")
    return tuple(int(d) for d in shape)


class _FlatIdentity(Layer):
    """A layer that is the identity on flat rows and takes shaped samples at the API boundary."""

    #: the model flattens (samples, *shape) inputs to rows when this layer comes first
    flattens_input = True

    def __init__(self, input_shape: Any, input_dim: int | None, name: str | None) -> None:
        self.sample_shape = _sample_shape(input_shape, type(self).__name__)
        flat = None if self.sample_shape is None else math.prod(self.sample_shape)
        super().__init__(name, None, input_dim if input_dim is not None else flat)

    def forward(self, x: Any, buf: Buffers) -> Any:
        return x

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        return dy if need_dx else None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.sample_shape is not None:
            config["input_shape"] = list(self.sample_shape)
        return config

    def onnx_nodes(self, builder: Any, x: str) -> str:
        return x


class Flatten(_FlatIdentity):
    """``keras.layers.Flatten()``: (samples, d1, d2, ...) -> (samples, d1*d2*...), C order."""

    def __init__(self, data_format: str | None = None, input_shape: Any = None, input_dim: int | None = None,
                 name: str | None = None) -> None:
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten data_format must be None or 'channels_last', got {data_format!r}")
        self.data_format = data_format
        super().__init__(input_shape, input_dim, name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(_FlatIdentity):
    """``keras.layers.Reshape(target_shape)`` to a flat shape ``(features,)`` (or ``(-1,)``):
    the identity on flat rows, after checking the number of features."""

    def __init__(self, target_shape: Any, input_shape: Any = None, input_dim: int | None = None,
                 name: str | None = None) -> None:
        target = (int(target_shape),) if isinstance(target_shape, int) else tuple(int(d) for d in target_shape)
        if len(target) != 1 or (target[0] != -1 and target[0] < 1):
            raise ValueError(f"Reshape supports a flat target_shape (features,) or (-1,) only (layers work on "
                             f"flat rows), got {target_shape!r}")
        self.target_shape = target
        super().__init__(input_shape, input_dim, name)

    def build(self, input_dim: int) -> None:
        if self.target_shape[0] not in (-1, input_dim):
            raise ValueError(f"Reshape {self.name!r}: cannot reshape {input_dim} features to {self.target_shape}")
        super().build(input_dim)

    def weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        """No weights: Reshape has none (what saving checks before building)."""
        return []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}
