"""Weight regularizers with Keras' names, formulas and defaults.

``L1(l1)`` adds ``l1 * sum(|w|)`` to the loss, ``L2(l2)`` adds ``l2 * sum(w**2)``
and ``L1L2(l1, l2)`` both (the aliases ``l1``, ``l2``, ``l1_l2`` are the same
classes, as in Keras). Given to a Dense layer as ``kernel_regularizer`` or
``bias_regularizer``, the penalty is added to every training step's loss (so
``fit``'s reported loss includes it, as in Keras, and so does ``evaluate``) and
its gradient ``l1 * sign(w) + 2 * l2 * w`` to the weight's gradient before the
optimizer update — on the per-op path through ``Backend.regularize`` and inside
the fused trainer's step, on every backend with the same kernel.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import registry

#: every Regularizer subclass by class name, for rebuilding saved layers
REGISTRY = registry.Registry("regularizer")


def _factor(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


class Regularizer(registry.Registered):
    """Base class: ``reg(w)`` is the penalty of the weight array ``w`` (a float).
    fusednn computes the penalties it fuses from :attr:`l1` and :attr:`l2`."""

    registry = REGISTRY

    l1: float = 0.0
    l2: float = 0.0

    def __call__(self, x: Any) -> float:
        w = np.asarray(x, dtype=np.float64)
        return float(self.l1 * np.abs(w).sum() + self.l2 * np.square(w).sum())


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)`` (Keras' L1L2; both factors default to 0)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self) -> str:
        return f"L1L2(l1={self.l1}, l2={self.l2})"


class L1(Regularizer):
    """``l1 * sum(|w|)`` (Keras' L1, default l1=0.01); its gradient uses sign(0) = 0."""

    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = _factor(l1, "l1")

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}

    def __repr__(self) -> str:
        return f"L1(l1={self.l1})"


class L2(Regularizer):
    """``l2 * sum(w**2)`` (Keras' L2, default l2=0.01); gradient ``2 * l2 * w``."""

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = _factor(l2, "l2")

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}

    def __repr__(self) -> str:
        return f"L2(l2={self.l2})"


# Keras' lower-case aliases are the classes themselves
l1 = L1
l2 = L2
l1_l2 = L1L2

_ALIASES = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def get(identifier: str | dict | Regularizer | None) -> Regularizer | None:
    """A regularizer from a Keras name ('l1', 'l2', 'l1_l2': default factors), a
    :func:`serialize` dict, an instance, or None (no regularization)."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is not None:
            return cls()
    raise ValueError(f"unknown regularizer {identifier!r}; valid: {', '.join(sorted(_ALIASES))}, "
                     "a Regularizer instance or None")


def serialize(reg: Regularizer | None) -> dict[str, Any] | None:
    """``{"class_name": ..., "config": ...}`` of a regularizer (None for none), as Keras saves it."""
    return None if reg is None else registry.serialize(reg, REGISTRY)


def deserialize(config: dict[str, Any]) -> Regularizer:
    """The regularizer :func:`serialize` described."""
    return registry.deserialize(config, REGISTRY)


def check_fusable(reg: Regularizer, where: str) -> None:
    """Raise TypeError unless ``reg``'s penalty is the L1/L2 form the kernels compute
    (a subclass overriding ``__call__`` would be silently ignored by them)."""
    if type(reg).__call__ is not Regularizer.__call__:
        raise TypeError(f"{where}: only L1/L2 regularizers (fusednn.regularizers.L1, L2, L1L2) are "
                        f"supported; {type(reg).__name__} defines its own penalty")
