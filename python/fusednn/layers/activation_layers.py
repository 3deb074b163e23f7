"""Keras' activation layers: ``ReLU``, ``LeakyReLU``, ``ELU``, ``Softmax`` and ``Identity``.

``ReLU()`` with its defaults and ``Identity`` run inside the fused trainer (as a relu
step, and as nothing); on the cpu backend ``LeakyReLU``, ``ELU``, a ``ReLU`` with
``max_value``/``negative_slope``/``threshold`` (an ``act_param`` step) and ``Softmax`` (a
row-softmax step) do too, and the per-op path calls the same native kernels
(fusednn/cpu_steps_more.h); other backends compute them with their array module
(NumPy or CuPy), the float32 formulas below being the reference.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Buffers, Layer


class _Elementwise(Layer):
    """An elementwise activation computed with the backend's array module: subclasses
    give ``_f(x)`` and ``_df(x, y)`` (the derivative from input and output)."""

    def __init__(self, input_shape: Any = None, input_dim: int | None = None, name: str | None = None) -> None:
        super().__init__(name, input_shape, input_dim)
        self._x = self._y = None

    def _f(self, x: Any) -> Any:
        raise NotImplementedError

    def _df(self, x: Any, y: Any) -> Any:
        raise NotImplementedError

    def act_param(self) -> dict[str, Any]:
        """The parameters of the native parameterised activation (fusednn/cpu_steps_more.h):
        ``act_kind`` (0 relu family, 1 elu), ``slope``, ``alpha``, ``max_value`` (None: none),
        ``threshold``."""
        raise NotImplementedError

    def _native(self) -> bool:
        """Whether the backend has the native kernels (the cpu one), which the fused trainer's
        step also calls: then both paths give the same bits."""
        return hasattr(self.backend, "act_param_forward")

    def forward(self, x: Any, buf: Buffers) -> Any:
        if self._native():
            self.backend.act_param_forward(self.backend.xp.ascontiguousarray(x), buf.y, **self.act_param())
        else:
            buf.y[...] = self._f(x)
        self._x, self._y = x, buf.y
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        if not need_dx:
            return None
        if buf.dx is None:
            buf.dx = self.backend.empty(buf.y.shape)
        if self._native():
            xp = self.backend.xp
            self.backend.act_param_backward(xp.ascontiguousarray(dy), xp.ascontiguousarray(self._x), self._y, buf.dx,
                                            **self.act_param())
        else:
            buf.dx[...] = dy * self._df(self._x, self._y)
        return buf.dx

    def fused_step(self, be: Any, batch: int) -> dict:
        """The fused trainer's act_param step (fusednn/layer_steps.h)."""
        return {"kind": "act_param", **self.act_param()}


class ReLU(_Elementwise):
    """``keras.layers.ReLU(max_value=None, negative_slope=0.0, threshold=0.0)``:
    ``x`` for ``x >= threshold`` (capped at ``max_value``), else
    ``negative_slope * (x - threshold)``."""

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0,
                 input_shape: Any = None, input_dim: int | None = None, name: str | None = None) -> None:
        if max_value is not None and float(max_value) < 0:
            raise ValueError(f"ReLU max_value must be >= 0, got {max_value!r}")
        if float(negative_slope) < 0:
            raise ValueError(f"ReLU negative_slope must be >= 0, got {negative_slope!r}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope, self.threshold = float(negative_slope), float(threshold)
        super().__init__(input_shape, input_dim, name)

    @property
    def plain(self) -> bool:
        """Whether this is the plain relu (the fused trainer's relu step)."""
        return self.max_value is None and self.negative_slope == 0.0 and self.threshold == 0.0

    def act_param(self) -> dict[str, Any]:
        return {"act_kind": 0, "slope": self.negative_slope, "alpha": 1.0, "max_value": self.max_value,
                "threshold": self.threshold}

    def _f(self, x: Any) -> Any:
        xp, f32 = self.backend.xp, np.float32
        y = xp.where(x >= f32(self.threshold), x, f32(self.negative_slope) * (x - f32(self.threshold)))
        return y if self.max_value is None else xp.minimum(y, f32(self.max_value))

    def _df(self, x: Any, y: Any) -> Any:
        xp, f32 = self.backend.xp, np.float32
        d = xp.where(x >= f32(self.threshold), f32(1), f32(self.negative_slope))
        if self.max_value is not None:
            d = xp.where(x >= f32(self.max_value), f32(0), d)
        return d.astype(f32)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class LeakyReLU(_Elementwise):
    """``keras.layers.LeakyReLU(negative_slope=0.3)``: ``x`` if ``x >= 0`` else ``negative_slope * x``."""

    def __init__(self, negative_slope: float = 0.3, input_shape: Any = None, input_dim: int | None = None,
                 name: str | None = None) -> None:
        if float(negative_slope) < 0:
            raise ValueError(f"LeakyReLU negative_slope must be >= 0, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)
        super().__init__(input_shape, input_dim, name)

    def act_param(self) -> dict[str, Any]:
        return {"act_kind": 0, "slope": self.negative_slope, "alpha": 1.0, "max_value": None, "threshold": 0.0}

    def _f(self, x: Any) -> Any:
        return self.backend.xp.where(x >= 0, x, np.float32(self.negative_slope) * x)

    def _df(self, x: Any, y: Any) -> Any:
        return self.backend.xp.where(x >= 0, np.float32(1), np.float32(self.negative_slope))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_Elementwise):
    """``keras.layers.ELU(alpha=1.0)``: ``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``."""

    def __init__(self, alpha: float = 1.0, input_shape: Any = None, input_dim: int | None = None,
                 name: str | None = None) -> None:
        self.alpha = float(alpha)
        super().__init__(input_shape, input_dim, name)

    def act_param(self) -> dict[str, Any]:
        return {"act_kind": 1, "slope": 0.0, "alpha": self.alpha, "max_value": None, "threshold": 0.0}

    def _f(self, x: Any) -> Any:
        xp = self.backend.xp
        return xp.where(x > 0, x, np.float32(self.alpha) * xp.expm1(xp.minimum(x, np.float32(0))))

    def _df(self, x: Any, y: Any) -> Any:
        # alpha*(e^x - 1) + alpha = alpha*e^x for x <= 0
        return self.backend.xp.where(x > 0, np.float32(1), y + np.float32(self.alpha))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


class Softmax(Layer):
    """``keras.layers.Softmax(axis=-1)`` over each sample's features."""

    def __init__(self, axis: int = -1, input_shape: Any = None, input_dim: int | None = None,
                 name: str | None = None) -> None:
        if axis not in (-1, 1):
            raise ValueError(f"Softmax axis must be -1 (or 1: the features of 2-D input), got {axis!r}")
        self.axis = int(axis)
        super().__init__(name, input_shape, input_dim)
        self._y = None

    def forward(self, x: Any, buf: Buffers) -> Any:
        self.backend.softmax(x, buf.y)
        self._y = buf.y
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        if not need_dx:
            return None
        if buf.dx is None:
            buf.dx = self.backend.empty(buf.y.shape)
        self.backend.softmax_backward(dy, self._y, buf.dx)
        return buf.dx

    def fused_step(self, be: Any, batch: int) -> dict:
        """The fused trainer's softmax step (the same row-softmax kernels as here)."""
        return {"kind": "softmax"}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Identity(Layer):
    """``keras.layers.Identity``: returns its input."""

    def forward(self, x: Any, buf: Buffers) -> Any:
        return x

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        return dy if need_dx else None

    def onnx_nodes(self, builder: Any, x: str) -> str:
        return x
