"""Class registries for saving: class name -> class, one registry per kind of object.

Layers, losses, optimizers and initialisers are saved as ``{"class_name": ...,
"config": obj.get_config()}`` (Keras' layout) and rebuilt with
``cls.from_config(config)``. Their base classes register every subclass when it
is defined, so a new class becomes savable by defining ``get_config`` (its
constructor arguments as JSON values); nothing else has to be edited. A user
class whose name collides with a fusednn class is registered under
``module.QualName`` instead, so it can never replace a built-in one.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class Registry:
    """Maps class names to classes for one kind of object ('layer', 'loss', ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type] = {}
        self._names: dict[type, str] = {}

    def register(self, cls: type) -> type:
        """Register ``cls`` under its name (a redefinition replaces the earlier class;
        a collision with a fusednn class falls back to the qualified name)."""
        name = cls.__name__
        old = self._classes.get(name)
        if old is not None and old.__module__.startswith("fusednn.") and not cls.__module__.startswith("fusednn."):
            name = f"{cls.__module__}.{cls.__qualname__}"
        self._classes[name] = cls
        self._names[cls] = name
        return cls

    def name_of(self, cls: type) -> str:
        """The name ``cls`` is saved under."""
        try:
            return self._names[cls]
        except KeyError:
            raise ValueError(f"{cls.__name__} is not a registered {self.kind} class") from None

    def get(self, name: str, custom_objects: Mapping[str, type] | None = None) -> type:
        """The class saved as ``name`` (``custom_objects`` first, as in Keras)."""
        if custom_objects and name in custom_objects:
            return custom_objects[name]
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes))
            raise ValueError(f"unknown {self.kind} class {name!r} (known: {known}); define or import it "
                             "before loading, or pass it in custom_objects") from None


class Registered:
    """Keras' config protocol for a family of small config-built classes (initializers,
    regularizers, constraints): the family's base sets ``registry``, every subclass is
    registered there when it is defined, ``get_config`` gives the constructor arguments
    (none for the base) and ``from_config`` calls the constructor with them."""

    registry: Registry

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "registry" not in cls.__dict__:  # the family's base itself is not saved by name
            cls.registry.register(cls)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values; ``from_config`` inverts it."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """A new object from :meth:`get_config`'s output."""
        return cls(**config)


#: model classes by name (Sequential registers itself), so that loading a model file
#: rebuilds it without the saving code importing the models
MODELS = Registry("model")


def _owner(cls: type, attr: str) -> type:
    return next(c for c in cls.__mro__ if attr in c.__dict__)


def serialize(obj: Any, registry: Registry) -> dict[str, Any]:
    """``{"class_name": ..., "config": obj.get_config()}``, checked to be JSON. Raises
    NotImplementedError when the class has its own constructor but inherits
    ``get_config``: its arguments would be silently lost."""
    cls = type(obj)
    init_owner, config_owner = _owner(cls, "__init__"), _owner(cls, "get_config")
    if init_owner is not object and init_owner is not config_owner and issubclass(init_owner, config_owner):
        raise NotImplementedError(f"{cls.__name__} defines __init__ but not get_config(), so its constructor "
                                  "arguments cannot be saved; define get_config() returning them")
    config = obj.get_config()
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{cls.__name__}.get_config() must return JSON values (and finite numbers): {e}") from None
    return {"class_name": registry.name_of(cls), "config": config}


def deserialize(spec: Any, registry: Registry, custom_objects: Mapping[str, type] | None = None) -> Any:
    """Rebuild an object from :func:`serialize`'s output; a bad spec raises ValueError."""
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str) \
            or not isinstance(spec.get("config"), dict):
        raise ValueError(f"a saved {registry.kind} must be {{'class_name': str, 'config': dict}}, got {spec!r:.200}")
    cls = registry.get(spec["class_name"], custom_objects)
    try:
        if getattr(cls.from_config, "takes_custom_objects", False):  # it looks up functions by name itself
            return cls.from_config(spec["config"], custom_objects)
        return cls.from_config(spec["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot rebuild {registry.kind} {spec['class_name']} from its saved config "
                         f"{spec['config']!r:.300}: {e}") from e
