"""Keras' ``BatchNormalization`` over the features of 2-D inputs.

In training it normalises each feature with the batch's mean and biased variance,
then scales by ``gamma`` and shifts by ``beta`` (trainable), and moves the
non-trainable moving statistics towards the batch's
(``moving = moving * momentum + batch * (1 - momentum)``, Keras' rule); in
inference it uses the moving statistics. ``get_weights`` gives Keras' order
``[gamma, beta, moving_mean, moving_variance]`` (without gamma/beta when
``scale``/``center`` is off), and saved models keep all four.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import constraints, initializers, regularizers
from .base import Buffers, Layer


class _ConstrainedScaleShift:
    """Keras' ``beta_constraint``/``gamma_constraint`` and ``beta_regularizer``/
    ``gamma_regularizer`` of the normalisation layers: projections of beta and gamma
    after each optimizer update, and their penalties in the loss (the per-op path; on cpu
    the fused trainer runs them as step penalties and projections, fusednn/layer_steps.h)."""

    def _set_constraints(self, beta_constraint: Any, gamma_constraint: Any, beta_regularizer: Any = None,
                         gamma_regularizer: Any = None) -> None:
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def _build_scale_shift(self) -> None:
        # gamma (if scale) and beta (if center) of input_dim features, and their gradients
        be, n = self.backend, self.input_dim
        self.weights = []
        if self.scale:
            self.gamma = be.asarray(self.gamma_initializer((n,)))
            self.weights.append(self.gamma)
        if self.center:
            self.beta = be.asarray(self.beta_initializer((n,)))
            self.weights.append(self.beta)
        self.grads = [be.zeros(w.shape) for w in self.weights]

    @property
    def has_regularizers(self) -> bool:
        """Whether beta or gamma has a regularizer."""
        return self.beta_regularizer is not None or self.gamma_regularizer is not None

    def _penalized(self) -> list[tuple[Any, Any, Any]]:
        # (weight, its gradient, regularizer) for each weight that exists and has one
        out = []
        if self.scale and self.gamma_regularizer is not None:
            out.append((self.gamma, self.grads[0], self.gamma_regularizer))
        if self.center and self.beta_regularizer is not None:
            out.append((self.beta, self.grads[-1], self.beta_regularizer))
        return out

    def add_penalties(self, loss_out: Any) -> None:
        for w, g, reg in self._penalized():
            self.backend.regularize(w, g, reg.l1, reg.l2, loss_out)

    def penalty(self) -> float:
        return float(sum(reg(self.backend.to_numpy(w)) for w, _, reg in self._penalized()))

    @property
    def has_constraints(self) -> bool:
        """Whether beta or gamma has a constraint."""
        return self.beta_constraint is not None or self.gamma_constraint is not None

    def apply_constraints(self) -> None:
        for w, con in ((self.gamma, self.gamma_constraint), (self.beta, self.beta_constraint)):
            if w is None or con is None:
                continue
            spec = con.kernel_spec(w.ndim, f"{type(self).__name__} {self.name!r}")
            if spec is not None:
                self.backend.constrain(w, spec)
            else:
                w[...] = self.backend.asarray(con(w))

    def _constraints_config(self) -> dict[str, Any]:
        # written only when set, so files saved before constraints existed stay identical
        out = {}
        if self.beta_regularizer is not None:
            out["beta_regularizer"] = regularizers.serialize(self.beta_regularizer)
        if self.gamma_regularizer is not None:
            out["gamma_regularizer"] = regularizers.serialize(self.gamma_regularizer)
        if self.beta_constraint is not None:
            out["beta_constraint"] = constraints.serialize(self.beta_constraint)
        if self.gamma_constraint is not None:
            out["gamma_constraint"] = constraints.serialize(self.gamma_constraint)
        return out


class BatchNormalization(_ConstrainedScaleShift, Layer):
    """``keras.layers.BatchNormalization(axis=-1, momentum=0.99, epsilon=1e-3, center=True,
    scale=True, beta_initializer='zeros', gamma_initializer='ones',
    moving_mean_initializer='zeros', moving_variance_initializer='ones')`` for inputs
    (batch, features): statistics per feature (axis -1 or 1)."""

    uses_training = True

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer: Any = "zeros", gamma_initializer: Any = "ones",
                 moving_mean_initializer: Any = "zeros", moving_variance_initializer: Any = "ones",
                 input_shape: Any = None, input_dim: int | None = None, name: str | None = None,
                 beta_constraint: Any = None, gamma_constraint: Any = None, beta_regularizer: Any = None,
                 gamma_regularizer: Any = None) -> None:
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if axis not in (-1, 1):
            raise ValueError(f"BatchNormalization axis must be -1 (or 1: the features of 2-D input), got {axis!r}")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"BatchNormalization momentum must be in [0, 1], got {momentum!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"BatchNormalization epsilon must be > 0, got {epsilon!r}")
        self.axis, self.momentum, self.epsilon = int(axis), float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self._set_constraints(beta_constraint, gamma_constraint, beta_regularizer, gamma_regularizer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        super().__init__(name, input_shape, input_dim)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None
        self._invstd = None
        self._xhat = None

    def build(self, input_dim: int) -> None:
        super().build(input_dim)
        be, n = self.backend, self.input_dim
        self._build_scale_shift()
        self.moving_mean = be.asarray(self.moving_mean_initializer((n,)))
        self.moving_variance = be.asarray(self.moving_variance_initializer((n,)))
        self.non_trainable_weights = [self.moving_mean, self.moving_variance]
        self._invstd = be.empty((n,))
        self._zeros = be.zeros((n,))  # the zero mean of the frozen backward (see _frozen_backward)

    def weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        """The shapes :meth:`build` creates for ``input_dim`` features (saving checks them first)."""
        return [(input_dim,)] * (int(self.scale) + int(self.center) + 2)

    def _grad(self, which: str) -> Any:
        if which == "gamma":
            return self.grads[0] if self.scale else None
        return self.grads[-1] if self.center else None

    def forward(self, x: Any, buf: Buffers, training: bool = False) -> Any:
        """Batch statistics in training, moving ones in inference; a frozen layer
        (``trainable=False``) runs in inference mode even in training, as in Keras 3."""
        be = self.backend
        if not (training and self.trainable):
            self._xhat = None
            self._frozen_pass = bool(training)  # training through a frozen layer: backward is the affine map
            be.batchnorm_infer(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.epsilon, buf.y)
            return buf.y
        if buf.dz is None:  # xhat of this batch size
            buf.dz = be.empty(buf.y.shape)
        be.batchnorm_train(x, self.gamma, self.beta, self.epsilon, self.moving_mean, self.moving_variance,
                           self.momentum, buf.y, buf.dz, self._invstd)
        self._xhat = buf.dz
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        be = self.backend
        if self._xhat is None and getattr(self, "_frozen_pass", False):
            return self._frozen_backward(dy, buf, need_dx)
        if self._xhat is None:
            raise RuntimeError(f"BatchNormalization {self.name!r}: backward needs a training forward pass")
        if buf.dx is None:
            buf.dx = be.empty(buf.y.shape)
        be.batchnorm_backward(dy, self._xhat, self._invstd, self.gamma, buf.dx, self._grad("gamma"),
                              self._grad("beta"))
        return buf.dx if need_dx else None

    def _frozen_backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        """Backward through the inference-mode map ``gamma (x - mean) / sqrt(var + eps) + beta``
        with the moving statistics (constants): dx = dy * gamma / sqrt(var + eps), computed as
        that map with a zero mean and no beta (the same kernel the fused trainer calls);
        gamma and beta get no gradient (the layer is frozen)."""
        for g in self.grads:  # frozen after compile (not recompiled): nothing for the optimizer to apply
            g.fill(0)
        if not need_dx:
            return None
        if buf.dx is None:
            buf.dx = self.backend.empty(buf.y.shape)
        self.backend.batchnorm_infer(dy, self.gamma, None, self._zeros, self.moving_variance, self.epsilon, buf.dx)
        return buf.dx

    def fused_step(self, be: Any, batch: int) -> dict:
        """The fused trainer's step (fusednn/layer_steps.h); the caller adds the optimizer state."""
        n = self.input_dim
        if not self.trainable:  # inference mode, as the per-op path (frozen: Keras 3)
            return {"kind": "batchnorm", "frozen": True, "gamma": self.gamma, "beta": self.beta,
                    "dgamma": None, "dbeta": None, "moving_mean": self.moving_mean,
                    "moving_var": self.moving_variance, "zeros": self._zeros, "xhat": be.empty((batch, n)),
                    "invstd": be.empty((n,)), "scratch": be.empty((3 * n,)), "eps": self.epsilon,
                    "momentum": self.momentum}
        return {"kind": "batchnorm", "gamma": self.gamma, "beta": self.beta, "dgamma": self._grad("gamma"),
                "dbeta": self._grad("beta"), "moving_mean": self.moving_mean,
                "moving_var": self.moving_variance, "xhat": be.empty((batch, n)), "invstd": be.empty((n,)),
                "scratch": be.empty((3 * n,)),
                "eps": self.epsilon, "momentum": self.momentum}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
                **self._constraints_config()}

    def onnx_nodes(self, builder: Any, x: str) -> str:
        be = self.backend
        var = be.to_numpy(self.moving_variance).astype(np.float64)
        inv = (1.0 / np.sqrt(var + self.epsilon)).astype(np.float32)
        scale = inv * be.to_numpy(self.gamma) if self.scale else inv
        shift = -be.to_numpy(self.moving_mean) * scale
        if self.center:
            shift = be.to_numpy(self.beta) + shift
        y = builder.node("Mul", [x, builder.constant(f"{self.name}.scale", scale.astype(np.float32))])
        return builder.node("Add", [y, builder.constant(f"{self.name}.shift", shift.astype(np.float32))])

    def __repr__(self) -> str:
        return f"<BatchNormalization name={self.name!r} features={self.input_dim}>"


class LayerNormalization(_ConstrainedScaleShift, Layer):
    """``keras.layers.LayerNormalization(axis=-1, epsilon=1e-3, center=True, scale=True,
    beta_initializer='zeros', gamma_initializer='ones')``: each sample normalised over its
    features (mean and biased variance per row), then ``gamma * xhat + beta``; the same in
    training and inference. Statistics in float64 (csrc/cpu/layernorm.cpp on cpu, the
    NumPy/CuPy reference elsewhere); on cpu it is a fused trainer step (fusednn/layer_steps.h)
    calling the same kernels."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 beta_initializer: Any = "zeros", gamma_initializer: Any = "ones", input_shape: Any = None,
                 input_dim: int | None = None, name: str | None = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, beta_regularizer: Any = None, gamma_regularizer: Any = None) -> None:
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if axis not in (-1, 1):
            raise ValueError(f"LayerNormalization axis must be -1 (or 1: the features of 2-D input), got {axis!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"LayerNormalization epsilon must be > 0, got {epsilon!r}")
        self.axis, self.epsilon, self.center, self.scale = int(axis), float(epsilon), bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self._set_constraints(beta_constraint, gamma_constraint, beta_regularizer, gamma_regularizer)
        super().__init__(name, input_shape, input_dim)
        self.gamma = self.beta = None
        self._xhat = self._invstd = None

    def build(self, input_dim: int) -> None:
        super().build(input_dim)
        self._build_scale_shift()

    def weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        """The shapes :meth:`build` creates for ``input_dim`` features (saving checks them first)."""
        return [(input_dim,)] * (int(self.scale) + int(self.center))

    def forward(self, x: Any, buf: Buffers) -> Any:
        """The backend's ``layernorm_forward`` (the C++ kernel on cpu, which the fused
        trainer's step calls too); ``xhat`` is kept in ``buf.dz`` and the rows' ``invstd``
        in ``buf.z`` (this layer has no pre-activation) for the backward pass."""
        be = self.backend
        batch = x.shape[0]
        if buf.dz is None or buf.dz.shape != buf.y.shape:
            buf.dz = be.empty(buf.y.shape)
        if buf.z is None or buf.z.shape != (batch,):
            buf.z = be.empty((batch,))
        be.layernorm_forward(x, self.gamma, self.beta, self.epsilon, buf.y, buf.dz, buf.z)
        self._xhat, self._invstd = buf.dz, buf.z
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        if self._xhat is None:
            raise RuntimeError(f"LayerNormalization {self.name!r}: backward needs a forward pass")
        dx = None
        if need_dx:
            if buf.dx is None:
                buf.dx = self.backend.empty(buf.y.shape)
            dx = buf.dx
        self.backend.layernorm_backward(dy, self._xhat, self._invstd, self.gamma, dx,
                                        self.grads[0] if self.scale else None,
                                        self.grads[-1] if self.center else None)
        return dx

    def fused_step(self, be: Any, batch: int) -> dict:
        """The fused trainer's step (fusednn/layer_steps.h); the caller adds the optimizer state."""
        n = self.input_dim
        return {"kind": "layernorm", "gamma": self.gamma, "beta": self.beta,
                "dgamma": self.grads[0] if self.scale else None, "dbeta": self.grads[-1] if self.center else None,
                "xhat": be.empty((batch, n)), "invstd": be.empty((batch,)), "eps": self.epsilon}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer), **self._constraints_config()}
