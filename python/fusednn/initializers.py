"""Weight initialisers with Keras' names, formulas and defaults.

They draw on the host with NumPy (from :func:`fusednn.utils.rng`, or their own
``seed``) and return float32 NumPy arrays; layers copy them to the device once.
That is what makes a seed give the same initial weights on every backend.
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from . import registry
from .utils import rng

#: every Initializer subclass by class name, for rebuilding saved layers
REGISTRY = registry.Registry("initializer")

# Keras divides by the standard deviation of a unit normal truncated to [-2, 2],
# so that the truncated samples have exactly the requested variance.
_TRUNCATED_STD = 0.87962566103423978


def _fans(shape: tuple[int, ...], input_axes: list[int] | None = None,
          output_axes: list[int] | None = None) -> tuple[int, int]:
    """Keras' ``compute_fans``: (fan_in, fan_out) of a weight shape — the products over
    ``input_axes``/``output_axes`` when both are given; else for more than two axes the
    leading ones are the receptive field (conv kernels)."""
    if input_axes is not None and output_axes is not None:
        try:
            return int(np.prod([shape[a] for a in input_axes])), int(np.prod([shape[a] for a in output_axes]))
        except IndexError:
            raise ValueError(f"input_axes {input_axes} / output_axes {output_axes} do not fit shape {shape}") from None
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    field = int(np.prod(shape[:-2]))
    return shape[-2] * field, shape[-1] * field


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    except (TypeError, ValueError):
        raise ValueError(f"an initializer shape must be a tuple of non-negative ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"an initializer shape must be a tuple of non-negative ints, got {shape!r}")
    return out


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
    return int(seed)


def _truncated_normal(g: np.random.Generator, mean: float, std: float, shape: tuple[int, ...]) -> np.ndarray:
    """Normal samples cut at two standard deviations: values outside are redrawn (the
    definition of keras.random.truncated_normal)."""
    w = g.normal(0.0, std, size=shape)
    while (bad := np.abs(w) > 2 * std).any():
        w[bad] = g.normal(0.0, std, size=int(bad.sum()))
    return w + mean


class Initializer(registry.Registered):
    """Base class: ``init(shape)`` returns a new float32 NumPy array of that shape."""

    registry = REGISTRY

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

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
                 seed: int | None = None, input_axes: list[int] | None = None,
                 output_axes: list[int] | None = None) -> None:
        if not float(scale) > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        distribution = str(distribution).lower()
        if distribution == "normal":  # Keras' alias
            distribution = "truncated_normal"
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got {mode!r}")
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError("distribution must be 'uniform', 'truncated_normal' or "
                             f"'untruncated_normal', got {distribution!r}")
        self.scale, self.mode, self.distribution, self.seed = float(scale), mode, distribution, _check_seed(seed)
        self.input_axes = None if input_axes is None else [int(v) for v in input_axes]
        self.output_axes = None if output_axes is None else [int(v) for v in output_axes]

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = _shape(shape)
        fan_in, fan_out = _fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, n)
        g = rng(self.seed)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            w = g.uniform(-limit, limit, size=shape)
        elif self.distribution == "untruncated_normal":
            w = g.normal(0.0, math.sqrt(var), size=shape)
        else:
            w = _truncated_normal(g, 0.0, math.sqrt(var) / _TRUNCATED_STD, shape)
        return w.astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, "scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **self._axes_config()}

    def _axes_config(self) -> dict[str, Any]:
        # Keras 3.15's input_axes/output_axes, written only when set: files stay loadable by older Keras
        return {} if self.input_axes is None and self.output_axes is None else \
            {"input_axes": self.input_axes, "output_axes": self.output_axes}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(scale={self.scale}, mode={self.mode!r}, "
                f"distribution={self.distribution!r}, seed={self.seed})")


class GlorotUniform(VarianceScaling):
    """Uniform in [-limit, limit], limit = sqrt(6 / (fan_in + fan_out)) (Keras' default kernel init)."""

    def __init__(self, seed: int | None = None, input_axes: list[int] | None = None,
                 output_axes: list[int] | None = None) -> None:
        super().__init__(1.0, "fan_avg", "uniform", seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, **self._axes_config()}


class GlorotNormal(VarianceScaling):
    """Truncated normal with standard deviation sqrt(2 / (fan_in + fan_out))."""

    def __init__(self, seed: int | None = None, input_axes: list[int] | None = None,
                 output_axes: list[int] | None = None) -> None:
        super().__init__(1.0, "fan_avg", "truncated_normal", seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, **self._axes_config()}


class HeNormal(VarianceScaling):
    """Truncated normal with standard deviation sqrt(2 / fan_in) (for relu layers)."""

    def __init__(self, seed: int | None = None, input_axes: list[int] | None = None,
                 output_axes: list[int] | None = None) -> None:
        super().__init__(2.0, "fan_in", "truncated_normal", seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, **self._axes_config()}


class HeUniform(VarianceScaling):
    """Uniform in [-limit, limit], limit = sqrt(6 / fan_in)."""

    def __init__(self, seed: int | None = None, input_axes: list[int] | None = None,
                 output_axes: list[int] | None = None) -> None:
        super().__init__(2.0, "fan_in", "uniform", seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, **self._axes_config()}


class LecunNormal(VarianceScaling):
    """Truncated normal with standard deviation sqrt(1 / fan_in) (for selu layers)."""

    def __init__(self, seed: int | None = None, input_axes: list[int] | None = None,
                 output_axes: list[int] | None = None) -> None:
        super().__init__(1.0, "fan_in", "truncated_normal", seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, **self._axes_config()}


class LecunUniform(VarianceScaling):
    """Uniform in [-limit, limit], limit = sqrt(3 / fan_in)."""

    def __init__(self, seed: int | None = None, input_axes: list[int] | None = None,
                 output_axes: list[int] | None = None) -> None:
        super().__init__(1.0, "fan_in", "uniform", seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, **self._axes_config()}


class Constant(Initializer):
    """Every entry equal to ``value`` (a number), Keras' ``Constant(value=0.0)``."""

    def __init__(self, value: float = 0.0) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(value)):
            raise ValueError(f"Constant value must be a finite number, got {value!r}")
        self.value = float(value)

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.full(_shape(shape), self.value, dtype=np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}

    def __repr__(self) -> str:
        return f"Constant(value={self.value})"


class RandomNormal(Initializer):
    """Normal samples of the given ``mean`` and ``stddev`` (Keras' defaults 0 and 0.05)."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        if not float(stddev) >= 0:
            raise ValueError(f"stddev must be >= 0, got {stddev}")
        self.mean, self.stddev, self.seed = float(mean), float(stddev), _check_seed(seed)

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        return rng(self.seed).normal(self.mean, self.stddev, size=_shape(shape)).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, stddev={self.stddev}, seed={self.seed})"


class TruncatedNormal(RandomNormal):
    """Normal samples of ``mean`` and ``stddev`` (0, 0.05) with every value more than two
    standard deviations from the mean redrawn, as Keras' ``TruncatedNormal`` (no variance
    correction: the samples' standard deviation is about 0.88 ``stddev``)."""

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        return _truncated_normal(rng(self.seed), self.mean, self.stddev, _shape(shape)).astype(np.float32)


class RandomUniform(Initializer):
    """Uniform samples in [``minval``, ``maxval``) (Keras' defaults -0.05 and 0.05)."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> None:
        if not float(maxval) >= float(minval):
            raise ValueError(f"maxval must be >= minval, got minval={minval}, maxval={maxval}")
        self.minval, self.maxval, self.seed = float(minval), float(maxval), _check_seed(seed)

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        return rng(self.seed).uniform(self.minval, self.maxval, size=_shape(shape)).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}

    def __repr__(self) -> str:
        return f"RandomUniform(minval={self.minval}, maxval={self.maxval}, seed={self.seed})"


class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only; a non-square shape gets ones
    on the main diagonal), Keras' ``Identity(gain=1.0)``."""

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = _shape(shape)
        if len(shape) != 2:
            raise ValueError(f"the Identity initializer makes 2-D matrices only, got shape {shape}")
        return (self.gain * np.eye(*shape)).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}

    def __repr__(self) -> str:
        return f"Identity(gain={self.gain})"


class Orthogonal(Initializer):
    """``gain`` times a random orthogonal matrix, Keras' ``Orthogonal(gain=1.0, seed=None)``:
    the Q of the QR decomposition of a normal (max(r, c), min(r, c)) matrix, its columns'
    signs fixed by R's diagonal (so Q is uniformly distributed), transposed when there
    are fewer rows r = prod(shape[:-1]) than columns c = shape[-1]; orthonormal columns
    (rows, if r < c)."""

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        self.gain, self.seed = float(gain), _check_seed(seed)

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = _shape(shape)
        if len(shape) < 2:
            raise ValueError(f"the Orthogonal initializer needs a shape of at least 2 axes, got {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = rng(self.seed).normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain, "seed": self.seed}

    def __repr__(self) -> str:
        return f"Orthogonal(gain={self.gain}, seed={self.seed})"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_CLASSES = (Zeros, Ones, Constant, Identity, RandomNormal, RandomUniform, TruncatedNormal, Orthogonal,
            VarianceScaling, GlorotNormal, GlorotUniform, HeNormal, HeUniform, LecunNormal, LecunUniform)

#: Keras 3's names: the class names, their snake_case forms and Keras' aliases
_ALIASES = {**{cls.__name__: cls for cls in _CLASSES}, **{_snake(cls.__name__): cls for cls in _CLASSES},
            "normal": RandomNormal, "uniform": RandomUniform, "one": Ones, "zero": Zeros,
            "IdentityInitializer": Identity, "OrthogonalInitializer": Orthogonal}


def get(identifier: str | dict | Initializer) -> Initializer:
    """An initialiser from its Keras name (e.g. 'glorot_uniform'), a :func:`serialize`
    dict or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier) or _ALIASES.get(identifier.lower())
        if cls is not None:
            return cls()
    valid = sorted(name for name in _ALIASES if name.islower())
    raise ValueError(f"unknown initializer {identifier!r}; valid: {', '.join(valid)} "
                     "(or the class names), an Initializer instance or class")


def serialize(initializer: Initializer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of an initialiser, as Keras saves it."""
    return registry.serialize(initializer, REGISTRY)


def deserialize(config: dict[str, Any]) -> Initializer:
    """The initialiser :func:`serialize` described."""
    return registry.deserialize(config, REGISTRY)


# Keras 3 also exports the snake_case names as the classes themselves (keras.initializers.he_normal(seed=1))
zeros, ones, constant, identity, orthogonal = Zeros, Ones, Constant, Identity, Orthogonal
random_normal, random_uniform, truncated_normal, variance_scaling = (RandomNormal, RandomUniform, TruncatedNormal,
                                                                     VarianceScaling)
glorot_normal, glorot_uniform, he_normal, he_uniform, lecun_normal, lecun_uniform = (
    GlorotNormal, GlorotUniform, HeNormal, HeUniform, LecunNormal, LecunUniform)
