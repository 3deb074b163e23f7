"""Weight initialisers with Keras' names, formulas and defaults.

They draw on the host with NumPy (from :func:`fusednn.utils.rng`, or their own
``seed``) and return float32 NumPy arrays; layers copy them to the device once.
That is what makes a seed give the same initial weights on every backend.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import registry
from .utils import rng

#: every Initializer subclass by class name, for rebuilding saved layers
REGISTRY = registry.Registry("initializer")

# Keras divides by the standard deviation of a unit normal truncated to [-2, 2],
# so that the truncated samples have exactly the requested variance.
_TRUNCATED_STD = 0.87962566103423978


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    raise ValueError(f"initialisers handle 1-D and 2-D shapes, got {shape}")


class Initializer:
    """Base class: ``init(shape)`` returns a new float32 NumPy array of that shape."""

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY.register(cls)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (none here); ``from_config`` inverts it."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Initializer":
        """A new initialiser from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Zeros(Initializer):
    """All zeros (Keras' default bias initialiser)."""

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=np.float32)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.ones(shape, dtype=np.float32)


class VarianceScaling(Initializer):
    """Keras' VarianceScaling: samples with variance ``scale / n``, where n is fan_in,
    fan_out or their mean (``mode``); ``distribution`` is 'uniform' (limit
    sqrt(3 scale / n)), 'truncated_normal' (cut at two standard deviations and
    rescaled to keep the variance) or 'untruncated_normal'. An explicit ``seed``
    makes every call return the same values, as in Keras."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: int | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got {mode!r}")
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError("distribution must be 'uniform', 'truncated_normal' or "
                             f"'untruncated_normal', got {distribution!r}")
        self.scale, self.mode, self.distribution, self.seed = float(scale), mode, distribution, seed

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, n)
        g = rng(self.seed)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            w = g.uniform(-limit, limit, size=shape)
        elif self.distribution == "untruncated_normal":
            w = g.normal(0.0, math.sqrt(var), size=shape)
        else:
            std = math.sqrt(var) / _TRUNCATED_STD
            w = g.normal(0.0, std, size=shape)
            while (bad := np.abs(w) > 2 * std).any():  # redraw the tails, as truncation does
                w[bad] = g.normal(0.0, std, size=int(bad.sum()))
        return w.astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(scale={self.scale}, mode={self.mode!r}, "
                f"distribution={self.distribution!r}, seed={self.seed})")


class GlorotUniform(VarianceScaling):
    """Uniform in [-limit, limit], limit = sqrt(6 / (fan_in + fan_out)) (Keras' default kernel init)."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_avg", "uniform", seed)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


class GlorotNormal(VarianceScaling):
    """Truncated normal with standard deviation sqrt(2 / (fan_in + fan_out))."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


class HeNormal(VarianceScaling):
    """Truncated normal with standard deviation sqrt(2 / fan_in) (for relu layers)."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(2.0, "fan_in", "truncated_normal", seed)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


class HeUniform(VarianceScaling):
    """Uniform in [-limit, limit], limit = sqrt(6 / fan_in)."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(2.0, "fan_in", "uniform", seed)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


_ALIASES = {
    "zeros": Zeros,
    "ones": Ones,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_normal": HeNormal,
    "he_uniform": HeUniform,
}


def get(identifier: str | dict | Initializer) -> Initializer:
    """An initialiser from its Keras name (e.g. 'glorot_uniform'), a :func:`serialize`
    dict or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is not None:
            return cls()
    raise ValueError(f"unknown initializer {identifier!r}; valid: {', '.join(sorted(_ALIASES))} "
                     "or an Initializer instance")


def serialize(initializer: Initializer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of an initialiser, as Keras saves it."""
    return registry.serialize(initializer, REGISTRY)


def deserialize(config: dict[str, Any]) -> Initializer:
    """The initialiser :func:`serialize` described."""
    return registry.deserialize(config, REGISTRY)
