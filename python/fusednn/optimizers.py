"""Optimizers with Keras' names, defaults and update rules.

An optimizer is built against a model's parameter arrays when the model is
compiled (or first trained): its state (momentum velocities, Adam moments and
the iteration counter) lives on the model's backend next to the parameters,
carries over from one ``fit`` call to the next, and is reset by recompiling.
The updates themselves are single fused kernel calls per parameter array.
"""
from __future__ import annotations

import math
from typing import Any

from .backends import Backend


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
