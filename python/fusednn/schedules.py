"""Learning-rate schedules with Keras 3's names, arguments and formulas
(``keras.optimizers.schedules``; here also ``fusednn.optimizers.schedules``).

A schedule maps the optimizer's step count (the number of updates already
taken, 0 for the first) to a learning rate. Pass one as any optimizer's
``learning_rate``. Training never calls it per step from native code: for each
run of steps the optimizer evaluates :meth:`LearningRateSchedule.at_steps` once
over the run's step numbers (vectorised NumPy, float64, in Keras' order of
operations) and hands the native trainer the resulting float32 rates. Your own
subclass only needs ``__call__(step)`` (called once per step of a run, on the
host); add ``get_config`` to save it with a model.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import registry

#: every LearningRateSchedule subclass by class name (for saved optimizer configs)
REGISTRY = registry.Registry("learning rate schedule")


class LearningRateSchedule:
    """Base class: ``schedule(step)`` is the learning rate at step ``step`` (0-based
    count of updates taken). Subclasses implement ``__call__``; the built-in ones
    implement the vectorised :meth:`at_steps` and derive ``__call__`` from it."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override `__call__(self, step)`.")

    def at_steps(self, steps: np.ndarray) -> np.ndarray:
        """The learning rates (float64) at each of ``steps`` (an int64 array)."""
        return np.array([float(self(int(s))) for s in np.asarray(steps)], dtype=np.float64)

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override `get_config()` "
                                  "in order to be serializable.")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LearningRateSchedule":
        return cls(**config)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY.register(cls)

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except NotImplementedError:
            args = ""
        return f"{type(self).__name__}({args})"


class _Builtin(LearningRateSchedule):
    def __call__(self, step: int) -> float:
        return float(self.at_steps(np.array([int(step)], dtype=np.int64))[0])


def _positive_steps(name: str, value: Any) -> Any:
    if not value > 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")
    return value


def _f(steps: np.ndarray) -> np.ndarray:
    return np.asarray(steps, dtype=np.float64)


class _RateDecay(_Builtin):
    """The shared shape of ExponentialDecay and InverseTimeDecay: a function of
    ``step / decay_steps`` (floored with ``staircase``) and ``decay_rate``."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float, staircase: bool = False,
                 name: str | None = None) -> None:
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _positive_steps("decay_steps", decay_steps)
        self.decay_rate = decay_rate
        self.staircase = bool(staircase)
        self.name = type(self).__name__ if name is None else name  # Keras' default names are the class names

    def _decay(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def at_steps(self, steps: np.ndarray) -> np.ndarray:
        p = _f(steps) / float(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return self._decay(p)

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_RateDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent
    floored with ``staircase``)."""

    def _decay(self, p: np.ndarray) -> np.ndarray:
        return float(self.initial_learning_rate) * np.power(float(self.decay_rate), p)


class PiecewiseConstantDecay(_Builtin):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries: Sequence[float], values: Sequence[float], name: str = "PiecewiseConstant") -> None:
        if len(boundaries) != len(values) - 1:
            raise ValueError("The length of boundaries should be 1 less than the length of values. Received: "
                             f"boundaries={list(boundaries)} of length {len(boundaries)}, and values={list(values)} "
                             f"of length {len(values)}.")
        self.boundaries = list(boundaries)
        self.values = list(values)
        self.name = name

    def at_steps(self, steps: np.ndarray) -> np.ndarray:
        s = np.asarray(steps)
        b = self.boundaries
        out = np.where(s <= b[0], float(self.values[0]), 0.0) if b else np.full(s.shape, float(self.values[0]))
        if b:
            out = out + np.where(s > b[-1], float(self.values[-1]), 0.0)
            for low, high, v in zip(b[:-1], b[1:], self.values[1:-1]):
                out = out + np.where((s > low) & (s <= high), float(v), 0.0)
        return out.astype(np.float64)

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(_Builtin):
    """``(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end``;
    with ``cycle``, ``decay_steps`` grows to the first multiple above ``step``."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, end_learning_rate: float = 0.0001,
                 power: float = 1.0, cycle: bool = False, name: str = "PolynomialDecay") -> None:
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _positive_steps("decay_steps", decay_steps)
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = bool(cycle)
        self.name = name

    def at_steps(self, steps: np.ndarray) -> np.ndarray:
        step = _f(steps)
        decay = np.full(step.shape, float(self.decay_steps))
        if self.cycle:
            decay = decay * np.where(step == 0, 1.0, np.ceil(step / float(self.decay_steps)))
        else:
            step = np.minimum(step, decay)
        p = step / decay
        init, end = float(self.initial_learning_rate), float(self.end_learning_rate)
        return (init - end) * np.power(1.0 - p, float(self.power)) + end

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class InverseTimeDecay(_RateDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (the ratio
    floored with ``staircase``)."""

    def _decay(self, p: np.ndarray) -> np.ndarray:
        return float(self.initial_learning_rate) / (1.0 + float(self.decay_rate) * p)


def _cosine(step: np.ndarray, decay_steps: float, decay_from: float, alpha: float) -> np.ndarray:
    completed = step / decay_steps
    cosine = 0.5 * (1.0 + np.cos(math.pi * completed))
    return decay_from * ((1.0 - alpha) * cosine + alpha)


class CosineDecay(_Builtin):
    """Optional linear warmup from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps``, then cosine decay over ``decay_steps`` to ``alpha`` times the
    rate it started from (Loshchilov & Hutter's SGDR without restarts)."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, alpha: float = 0.0,
                 name: str = "CosineDecay", warmup_target: float | None = None, warmup_steps: float = 0) -> None:
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _positive_steps("decay_steps", decay_steps)
        self.alpha = alpha
        self.name = name
        self.warmup_steps = warmup_steps
        self.warmup_target = warmup_target

    def at_steps(self, steps: np.ndarray) -> np.ndarray:
        step = _f(steps)
        init, decay, alpha = float(self.initial_learning_rate), float(self.decay_steps), float(self.alpha)
        if self.warmup_target is None:
            return _cosine(np.minimum(step, decay), decay, init, alpha)
        target, warm = float(self.warmup_target), float(self.warmup_steps)
        step = np.minimum(step, decay + warm)
        with np.errstate(divide="ignore", invalid="ignore"):
            warmup = (target - init) * (step / warm) + init
        return np.where(step < warm, warmup, _cosine(step - warm, decay, target, alpha))

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(_Builtin):
    """Cosine decay from 1 to ``alpha`` (times ``initial_learning_rate``) over
    ``first_decay_steps``, then warm restarts, each ``t_mul`` times longer and
    ``m_mul`` times lower (SGDR)."""

    def __init__(self, initial_learning_rate: float, first_decay_steps: float, t_mul: float = 2.0,
                 m_mul: float = 1.0, alpha: float = 0.0, name: str = "SGDRDecay") -> None:
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = _positive_steps("first_decay_steps", first_decay_steps)
        self._t_mul = t_mul
        self._m_mul = m_mul
        self.alpha = alpha
        self.name = name

    def at_steps(self, steps: np.ndarray) -> np.ndarray:
        t_mul, m_mul, alpha = float(self._t_mul), float(self._m_mul), float(self.alpha)
        completed = _f(steps) / float(self.first_decay_steps)
        if t_mul == 1.0:
            i_restart = np.floor(completed)
            completed = completed - i_restart
        else:
            i_restart = np.floor(np.log(1.0 - completed * (1.0 - t_mul)) / math.log(t_mul))
            sum_r = (1.0 - np.power(t_mul, i_restart)) / (1.0 - t_mul)
            completed = (completed - sum_r) / np.power(t_mul, i_restart)
        m_fac = np.power(m_mul, i_restart)
        cosine = 0.5 * m_fac * (1.0 + np.cos(math.pi * completed))
        return float(self.initial_learning_rate) * ((1.0 - alpha) * cosine + alpha)

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "first_decay_steps": self.first_decay_steps,
                "t_mul": self._t_mul, "m_mul": self._m_mul, "alpha": self.alpha, "name": self.name}


def serialize(learning_rate_schedule: LearningRateSchedule) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}``, Keras' serialized form of a schedule."""
    return registry.serialize(learning_rate_schedule, REGISTRY)


def deserialize(config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> LearningRateSchedule:
    """A schedule from :func:`serialize`'s output (your own classes by name, once
    defined, or through ``custom_objects``)."""
    return registry.deserialize(config, REGISTRY, custom_objects)
