"""Optimizers with Keras' names, defaults and update rules.

An optimizer is built against a model's parameter arrays when the model is
compiled (or first trained): its state (momentum velocities, Adam moments and
the iteration counter) lives on the model's backend next to the parameters,
carries over from one ``fit`` call to the next, and is reset by recompiling.
The updates themselves are single fused kernel calls per parameter array.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import registry
from .backends import Backend

#: every Optimizer subclass by class name, for restoring a saved model's compile settings
REGISTRY = registry.Registry("optimizer")


def _check(name: str, value: float, lo: float, hi: float = math.inf, hi_open: bool = False) -> float:
    value = float(value)
    if not (lo <= value and (value < hi if hi_open else value <= hi)):
        bound = f"[{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be in {bound}, got {value}")
    return value


class Optimizer:
    """Base class: ``build(be, params)`` creates fresh state for the parameter arrays,
    ``apply(grads)`` takes one step; ``iterations`` counts the steps taken."""

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = _check("learning_rate", learning_rate, 0.0)
        self.iterations = 0
        self._be: Backend | None = None
        self._params: list[Any] = []

    def build(self, be: Backend, params: list[Any]) -> None:
        """Bind to ``params`` on backend ``be`` with zeroed state and no steps taken."""
        self._be, self._params, self.iterations = be, list(params), 0
        self._build_state()

    def is_built_for(self, be: Backend, params: list[Any]) -> bool:
        """Whether the state was built for exactly these parameter arrays on ``be``."""
        return self._be is be and len(params) == len(self._params) and \
            all(a is b for a, b in zip(params, self._params))

    def _build_state(self) -> None:
        pass

    def apply(self, grads: list[Any]) -> None:
        """Update every parameter in place from its gradient (same order as ``build``)."""
        self.iterations += 1
        for i, (p, g) in enumerate(zip(self._params, grads)):
            self._update(i, p, g)

    def _update(self, i: int, param: Any, grad: Any) -> None:
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY.register(cls)

    # ---- saving ------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (Keras' optimizer config);
        ``from_config`` inverts it. The state is saved apart (:meth:`get_state`)."""
        return {"learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Optimizer":
        """A new, unbuilt optimizer from :meth:`get_config`'s output."""
        return cls(**config)

    def state_arrays(self) -> list[Any]:
        """The state ``build`` created (backend arrays, in a fixed order); subclasses
        with state list it here so that it can be saved and restored."""
        return []

    def slots(self) -> list[list[Any]]:
        """Per parameter (in ``build`` order) its state arrays, e.g. SGD with momentum
        ``[velocity]``, Adam ``[m, v]``, none ``[]``: the same arrays as
        :meth:`state_arrays`, grouped by the parameter they belong to."""
        return [[] for _ in self._params]

    def get_state(self) -> tuple[int, list[np.ndarray]]:
        """The step count and NumPy copies of :meth:`state_arrays`."""
        return self.iterations, [np.array(self._be.to_numpy(a), dtype=np.float32) for a in self.state_arrays()]

    def set_state(self, iterations: int, arrays: Sequence[Any]) -> None:
        """Restore :meth:`get_state`'s output into the built optimizer. Arrays are
        written in place (a fused trainer may hold them); their number and shapes are
        checked before anything is written."""
        if self._be is None:
            raise RuntimeError("the optimizer is not built; compile a built model first")
        own = self.state_arrays()
        if len(arrays) != len(own):
            raise ValueError(f"{type(self).__name__} has {len(own)} state arrays, got {len(arrays)}")
        for i, (a, v) in enumerate(zip(own, arrays)):
            if tuple(np.shape(v)) != tuple(a.shape):
                raise ValueError(f"optimizer state array {i} must have shape {tuple(a.shape)}, "
                                 f"got {tuple(np.shape(v))}")
        for a, v in zip(own, arrays):
            a[...] = self._be.asarray(v)
        self.iterations = int(iterations)


class SGD(Optimizer):
    """Gradient descent, Keras' rule: ``v = momentum*v - lr*g; w += v``; with
    ``nesterov``: ``w += momentum*v - lr*g``; without momentum: ``w -= lr*g``."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(learning_rate)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)
        self._velocity: list[Any] = []

    def _build_state(self) -> None:
        self._velocity = [self._be.zeros(p.shape) for p in self._params] if self.momentum else []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def state_arrays(self) -> list[Any]:
        return list(self._velocity)

    def slots(self) -> list[list[Any]]:
        return [[v] for v in self._velocity] if self.momentum else super().slots()

    def _update(self, i: int, param: Any, grad: Any) -> None:
        v = self._velocity[i] if self.momentum else None
        self._be.sgd_update(param, grad, v, self.learning_rate, self.momentum, self.nesterov)

    def __repr__(self) -> str:
        return f"SGD(learning_rate={self.learning_rate}, momentum={self.momentum}, nesterov={self.nesterov})"


class Adam(Optimizer):
    """Adam, Keras' rule (epsilon added to the *uncorrected* sqrt(v)):
    ``m += (1-b1)(g-m); v += (1-b2)(g^2-v);
    w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + epsilon)``."""

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.beta_1 = _check("beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check("beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _check("epsilon", epsilon, 0.0)
        self._m: list[Any] = []
        self._v: list[Any] = []

    def _build_state(self) -> None:
        self._m = [self._be.zeros(p.shape) for p in self._params]
        self._v = [self._be.zeros(p.shape) for p in self._params]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

    def state_arrays(self) -> list[Any]:
        return [*self._m, *self._v]

    def slots(self) -> list[list[Any]]:
        return [[m, v] for m, v in zip(self._m, self._v)]

    def _update(self, i: int, param: Any, grad: Any) -> None:
        self._be.adam_update(param, grad, self._m[i], self._v[i], self.learning_rate, self.beta_1,
                             self.beta_2, self.epsilon, self.iterations)

    def __repr__(self) -> str:
        return (f"Adam(learning_rate={self.learning_rate}, beta_1={self.beta_1}, "
                f"beta_2={self.beta_2}, epsilon={self.epsilon})")


_ALIASES = {"sgd": SGD, "adam": Adam}


def get(identifier: str | Optimizer) -> Optimizer:
    """An optimizer from its Keras name ('adam', 'sgd', with default settings) or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is not None:
            return cls()
    raise ValueError(f"unknown optimizer {identifier!r}; valid: 'adam', 'sgd' or an Optimizer instance")


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of an optimizer's settings (not its state)."""
    return registry.serialize(optimizer, REGISTRY)


def deserialize(config: dict[str, Any]) -> Optimizer:
    """A new optimizer with the settings :func:`serialize` described."""
    return registry.deserialize(config, REGISTRY)
