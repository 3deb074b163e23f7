"""Weight constraints with Keras 3's names, arguments, formulas and configs
(``keras.constraints``): projections applied to a weight after every optimizer update,
as Keras' optimizer does once it has applied the gradients.

``MaxNorm``, ``UnitNorm`` and ``MinMaxNorm`` rescale the weight vectors along ``axis``
(for a Dense kernel of shape (inputs, units), ``axis=0`` constrains each unit's
incoming weights): with ``norms = sqrt(sum(w**2, axis))`` and Keras' epsilon 1e-7,
``w * desired / (1e-7 + norms)``, where ``desired`` is ``clip(norms, 0, max_value)``
(MaxNorm), 1 (UnitNorm) or ``rate * clip(norms, min_value, max_value) + (1 - rate) *
norms`` (MinMaxNorm); ``NonNeg`` is ``max(w, 0)``. The built-in constraints run as a
native kernel (``Backend.constrain``; the same one inside the fused trainer), computing
the norms and factors in float64. A user subclass that overrides ``__call__`` runs on
the per-op path only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import registry

#: every Constraint subclass by class name, for rebuilding saved layers
REGISTRY = registry.Registry("constraint")

#: Keras' ``backend.epsilon()`` in the norm constraints' denominators
EPSILON = 1e-7

#: kernel codes (csrc/include/fusednn/constraint.h, fusednn::ConstraintKind)
KINDS = {"max_norm": 1, "non_neg": 2, "unit_norm": 3, "min_max_norm": 4}
#: the reduction codes: norms over the rows (one per column), over the columns (one per row), over all
AXIS_ROWS, AXIS_COLS, AXIS_ALL = 0, 1, 2


def _axis_code(axis: Any, ndim: int, where: str) -> int:
    """The kernel's reduction code for Keras' ``axis`` on a 1-D or 2-D weight."""
    if ndim not in (1, 2):
        raise ValueError(f"{where}: constraints apply to 1-D and 2-D weights, got {ndim}-D")
    if axis is None:
        return AXIS_ALL
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    try:
        norm = sorted({int(a) + ndim if int(a) < 0 else int(a) for a in axes})
    except (TypeError, ValueError):
        raise ValueError(f"{where}: axis must be an int, a tuple of ints or None, got {axis!r}") from None
    if not norm or any(a < 0 or a >= ndim for a in norm) or any(isinstance(a, bool) for a in axes):
        raise ValueError(f"{where}: axis {axis!r} is out of range for a {ndim}-D weight")
    if ndim == 1 or norm == [0, 1]:
        return AXIS_ALL
    return AXIS_ROWS if norm == [0] else AXIS_COLS


class Constraint(registry.Registered):
    """Base class: ``constraint(w)`` returns the projected weight (a new array; NumPy or
    CuPy in, the same kind out). The base projection is the identity, as in Keras."""

    registry = REGISTRY

    def __call__(self, w: Any) -> Any:
        return w

    def kernel_spec(self, ndim: int, where: str = "constraint") -> dict[str, Any] | None:
        """The native kernel's description of this projection of a ``ndim``-D weight
        (``{"kind", "axis", "min_value", "max_value", "rate"}``), or None for a user
        projection that only Python can run."""
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _Builtin(Constraint):
    """The built-in constraints: their ``__call__`` is the float64 reference of the kernel."""

    kind = ""

    def _spec(self) -> tuple[float, float, float]:
        return 0.0, 0.0, 0.0  # (min_value, max_value, rate)

    def kernel_spec(self, ndim: int, where: str = "constraint") -> dict[str, Any] | None:
        if type(self).__call__ is not _Builtin.__call__:  # a subclass with its own projection
            return None
        lo, hi, rate = self._spec()
        axis = _axis_code(getattr(self, "axis", 0), ndim, where)
        return {"kind": KINDS[self.kind], "axis": axis, "min_value": lo, "max_value": hi, "rate": rate}

    def __call__(self, w: Any) -> Any:
        xp = _xp(w)
        w = xp.asarray(w)
        spec = self.kernel_spec(w.ndim, type(self).__name__)
        out = w.astype(np.float32, copy=True)
        project(xp, out, spec)
        return out


def _xp(w: Any) -> Any:
    mod = type(w).__module__
    if mod.startswith("cupy"):
        import cupy

        return cupy
    return np


def project(xp: Any, w: Any, spec: dict[str, Any]) -> None:
    """Apply a built-in constraint (its :meth:`Constraint.kernel_spec`) to the float32
    array ``w`` in place: the reference the native kernel is held to (norms and factors
    in float64, the factor rounded to float32 and multiplied in float32)."""
    kind = spec["kind"]
    if kind == KINDS["non_neg"]:
        xp.maximum(w, np.float32(0), out=w)
        return
    w2 = w.reshape(-1, 1) if w.ndim == 1 else w
    axis = {AXIS_ROWS: 0, AXIS_COLS: 1, AXIS_ALL: None}[spec["axis"]]
    w64 = w2.astype(np.float64)
    norms = xp.sqrt((w64 * w64).sum(axis=axis, keepdims=True))
    if kind == KINDS["max_norm"]:
        desired = xp.clip(norms, 0.0, spec["max_value"])
    elif kind == KINDS["unit_norm"]:
        desired = xp.ones_like(norms)
    elif kind == KINDS["min_max_norm"]:
        rate = spec["rate"]
        desired = rate * xp.clip(norms, spec["min_value"], spec["max_value"]) + (1.0 - rate) * norms
    else:
        raise ValueError(f"unknown constraint kind {kind}")
    w2 *= (desired / (EPSILON + norms)).astype(np.float32)


def _number(value: Any, name: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value.item() if isinstance(value, np.generic) else value


class MaxNorm(_Builtin):
    """Rescales each weight vector along ``axis`` whose norm exceeds ``max_value`` to that
    norm, Keras' ``MaxNorm(max_value=2, axis=0)``."""

    kind = "max_norm"

    def __init__(self, max_value: float = 2, axis: int | tuple[int, ...] | None = 0) -> None:
        self.max_value = _number(max_value, "max_value")
        if self.max_value < 0:
            raise ValueError(f"max_value must be >= 0, got {max_value}")
        self.axis = list(axis) if isinstance(axis, tuple) else axis

    def _spec(self) -> tuple[float, float, float]:
        return 0.0, float(self.max_value), 1.0

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(_Builtin):
    """Negative weights set to zero, Keras' ``NonNeg()``."""

    kind = "non_neg"


class UnitNorm(_Builtin):
    """Each weight vector along ``axis`` divided by its norm (plus 1e-7), Keras'
    ``UnitNorm(axis=0)``."""

    kind = "unit_norm"

    def __init__(self, axis: int | tuple[int, ...] | None = 0) -> None:
        self.axis = list(axis) if isinstance(axis, tuple) else axis

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


class MinMaxNorm(_Builtin):
    """Moves each weight vector's norm towards [``min_value``, ``max_value``] by the
    fraction ``rate`` (1: onto it), Keras' ``MinMaxNorm(min_value=0.0, max_value=1.0,
    rate=1.0, axis=0)``."""

    kind = "min_max_norm"

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis: int | tuple[int, ...] | None = 0) -> None:
        self.min_value = _number(min_value, "min_value")
        self.max_value = _number(max_value, "max_value")
        self.rate = _number(rate, "rate")
        if not 0 <= self.min_value <= self.max_value:
            raise ValueError(f"need 0 <= min_value <= max_value, got {min_value} and {max_value}")
        self.axis = list(axis) if isinstance(axis, tuple) else axis

    def _spec(self) -> tuple[float, float, float]:
        return float(self.min_value), float(self.max_value), float(self.rate)

    def get_config(self) -> dict[str, Any]:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


# Keras 3 exports the snake_case names as aliases of the classes
max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm

_NAMES = {"MaxNorm": MaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm, "MinMaxNorm": MinMaxNorm,
          "max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm, "min_max_norm": MinMaxNorm,
          "Constraint": Constraint, "constraint": Constraint}


def get(identifier: Any) -> Constraint | None:
    """A constraint from None, its Keras name ('max_norm', 'NonNeg', ...), a
    :func:`serialize` dict, a Constraint class or instance."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Constraint):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier in _NAMES:
        return _NAMES[identifier]()
    if callable(identifier):
        raise TypeError("a plain function cannot be a fusednn constraint (it could not be saved); subclass "
                        "keras.constraints.Constraint and define __call__ and get_config")
    valid = ", ".join(k for k in _NAMES if "_" in k)
    raise ValueError(f"unknown constraint {identifier!r}; valid: {valid}, the class names, or a Constraint")


def serialize(constraint: Constraint) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of a constraint, as Keras saves it."""
    return registry.serialize(constraint, REGISTRY)


def deserialize(config: dict[str, Any]) -> Constraint:
    """The constraint :func:`serialize` described."""
    return registry.deserialize(config, REGISTRY)


__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "deserialize", "get", "max_norm",
           "min_max_norm", "non_neg", "serialize", "unit_norm"]
