"""Keras' ``PReLU``: a leaky relu whose negative slope ``alpha`` is learned.

``y = x`` for ``x > 0`` and ``alpha * x`` otherwise (Keras computes
``relu(x) - alpha * relu(-x)``), with one alpha per feature, or one shared by all
features with ``shared_axes=[1]``. It runs on the per-op path (NumPy/CuPy
expressions on the backend), so ``model.fused_reason`` names it; alpha takes Keras'
``alpha_initializer`` ('zeros'), ``alpha_regularizer`` (L1/L2, added to the loss and
gradient) and ``alpha_constraint`` (applied after each update).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import constraints, initializers, regularizers
from .base import Buffers, Layer


class PReLU(Layer):
    """``keras.layers.PReLU(alpha_initializer='zeros', alpha_regularizer=None,
    alpha_constraint=None, shared_axes=None)`` on inputs (batch, features): alpha has
    shape (features,), or (1,) with ``shared_axes=[1]`` (or ``-1``); the gradient of
    alpha is ``sum(dy * min(x, 0))`` over the batch (and the shared axis)."""

    def __init__(self, alpha_initializer: Any = "zeros", alpha_regularizer: Any = None, alpha_constraint: Any = None,
                 shared_axes: int | list[int] | tuple[int, ...] | None = None, input_shape: Any = None,
                 input_dim: int | None = None, name: str | None = None) -> None:
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        if self.alpha_regularizer is not None:
            regularizers.check_fusable(self.alpha_regularizer, "PReLU alpha_regularizer")
        self.alpha_constraint = constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes) or \
                    any(int(a) not in (1, -1) for a in axes):
                raise ValueError(f"PReLU shared_axes {shared_axes!r} is not supported: fusednn layers take "
                                 "(batch, features), so the only axis to share alpha along is 1 (or -1)")
            self.shared_axes = [int(a) for a in axes]
        super().__init__(name, input_shape, input_dim)
        self.alpha: Any = None
        self._x = None

    def build(self, input_dim: int) -> None:
        super().build(input_dim)
        shape = (1,) if self.shared_axes else (self.input_dim,)
        self.alpha = self.backend.asarray(self.alpha_initializer(shape))
        self.weights = [self.alpha]
        self.grads = [self.backend.zeros(shape)]

    def forward(self, x: Any, buf: Buffers) -> Any:
        xp = self.backend.xp
        buf.y[...] = xp.where(x > 0, x, self.alpha * x)
        self._x = x
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        xp, f32 = self.backend.xp, np.float32
        x = self._x
        dalpha = (dy.astype(np.float64) * xp.minimum(x, f32(0))).sum(axis=0)
        self.grads[0][...] = (dalpha.sum(keepdims=True) if self.shared_axes else dalpha).astype(f32)
        if not need_dx:
            return None
        if buf.dx is None:
            buf.dx = self.backend.empty(buf.y.shape)
        # relu's derivative is 0 at 0 (Keras' and torch's convention), on both sides of the sum
        buf.dx[...] = dy * xp.where(x > 0, f32(1), xp.where(x < 0, self.alpha, f32(0)))
        return buf.dx

    def add_penalties(self, loss_out: Any) -> None:
        reg = self.alpha_regularizer
        if reg is not None:
            self.backend.regularize(self.alpha, self.grads[0], reg.l1, reg.l2, loss_out)

    def penalty(self) -> float:
        reg = self.alpha_regularizer
        return 0.0 if reg is None else reg(self.backend.to_numpy(self.alpha))

    def apply_constraints(self) -> None:
        con = self.alpha_constraint
        if con is None:
            return
        spec = con.kernel_spec(self.alpha.ndim, f"PReLU {self.name!r}")
        if spec is not None:
            self.backend.constrain(self.alpha, spec)
        else:
            self.alpha[...] = self.backend.asarray(con(self.alpha))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": None if self.alpha_regularizer is None
                else regularizers.serialize(self.alpha_regularizer),
                "alpha_constraint": None if self.alpha_constraint is None
                else constraints.serialize(self.alpha_constraint),
                "shared_axes": self.shared_axes}

    def onnx_nodes(self, builder: Any, x: str) -> str:
        alpha = self.get_weights()[0]
        return builder.node("PRelu", [x, builder.constant(f"{self.name}.alpha", alpha)])

    def __repr__(self) -> str:
        return f"<PReLU name={self.name!r} shared_axes={self.shared_axes}>"
