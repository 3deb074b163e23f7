"""Keras' registry of user classes and functions: ``keras.saving.register_keras_serializable``,
``get_custom_objects``, ``get_registered_name`` and ``get_registered_object``.

Registering only records a name for an object the user's own code defined; loading a model
looks names up here (after ``custom_objects``) and never runs code from a file. fusednn's
layer, loss and optimizer classes register themselves by class name when defined (see
:mod:`fusednn.registry`); this registry adds what they cannot: plain functions, such as a
custom loss ``fn(y_true, y_pred)`` given to ``compile``, and Keras' ``package>name`` keys.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

_OBJECTS: dict[str, Any] = {}
_NAMES: dict[int, str] = {}


def register_keras_serializable(package: str = "Custom", name: str | None = None) -> Callable[[Any], Any]:
    """Decorator: register a class or function under ``"package>name"`` (``name`` defaults
    to its ``__name__``) and return it unchanged, as Keras does."""
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"register_keras_serializable: package must be a string without '>', got {package!r}")

    def register(obj: Any) -> Any:
        key = f"{package}>{name or getattr(obj, '__name__', None)}"
        if key.endswith(">None"):
            raise ValueError(f"cannot register {obj!r}: it has no __name__; pass name=")
        _OBJECTS[key] = obj
        _NAMES[id(obj)] = key
        return obj
    return register


def get_custom_objects() -> dict[str, Any]:
    """The live registry (``"package>name"`` -> object), as Keras' ``get_custom_objects``."""
    return _OBJECTS


def get_registered_name(obj: Any) -> str:
    """The name ``obj`` was registered under, else its ``__name__``."""
    return _NAMES.get(id(obj), getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(name: str, custom_objects: dict[str, Any] | None = None,
                          module_objects: dict[str, Any] | None = None) -> Any:
    """The object registered (or given in ``custom_objects``/``module_objects``) as ``name``,
    also found by its bare name after the ``>``; None when nothing matches."""
    for table in (custom_objects or {}, _OBJECTS, module_objects or {}):
        if name in table:
            return table[name]
    for key, obj in _OBJECTS.items():
        if key.split(">", 1)[1] == name:
            return obj
    return None


__all__ = ["get_custom_objects", "get_registered_name", "get_registered_object", "register_keras_serializable"]
