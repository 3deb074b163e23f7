"""Keras' ``PReLU``: a leaky relu whose negative slope ``alpha`` is learned.

``y = x`` for ``x > 0`` and ``alpha * x`` otherwise (Keras computes
``relu(x) - alpha * relu(-x)``), with one alpha per feature, or one shared by all
features with ``shared_axes=[1]``. Its kernels are the backend's ``prelu_forward`` /
``prelu_backward`` (C++ on cpu, where it also runs as a step of the fused trainer;
NumPy/CuPy expressions elsewhere). alpha takes Keras' ``alpha_initializer`` ('zeros'),
``alpha_regularizer`` (L1/L2, added to the loss and gradient) and ``alpha_constraint``
(applied after each update); on cpu the fused trainer runs those too (step penalties and
projections, fusednn/layer_steps.h).
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
        self.backend.prelu_forward(x, self.alpha, buf.y)
        self._x = x
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        # dx is computed either way (the kernel writes both); the first layer's is unused
        if buf.dx is None:
            buf.dx = self.backend.empty(buf.y.shape)
        self.backend.prelu_backward(dy, self._x, self.alpha, buf.dx, self.grads[0])
        return buf.dx if need_dx else None

    def fused_step(self, be: Any, batch: int) -> dict[str, Any]:
        """The fused trainer's prelu step (fusednn/layer_steps.h): alpha and its gradient;
        the trainer adds the optimizer state and the output/gradient buffers."""
        return {"kind": "prelu", "alpha": self.alpha, "dalpha": self.grads[0]}

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
