"""``keras.backend``: the handful of Keras 3 backend/config functions that user scripts
call — :func:`clear_session` (resets automatic layer names), :func:`floatx`,
:func:`epsilon` and their setters, :func:`image_data_format` and :func:`backend`.

fusednn computes in float32 only, so ``set_floatx`` accepts only 'float32'. The fuzz
factor of :func:`epsilon` is Keras' 1e-7; fusednn's losses and constraints use their
own fixed Keras constants, so changing it affects only code that reads it.
"""
from __future__ import annotations

import gc

from .layers.base import reset_names

_EPSILON = 1e-7
_IMAGE_DATA_FORMAT = "channels_last"


def clear_session(free_memory: bool = True) -> None:
    """Reset the global state Keras resets: automatic layer and model names start
    again ('dense', 'dense_1', ...); with ``free_memory`` run the garbage collector.
    Models already built keep working (their arrays belong to them)."""
    reset_names()
    if free_memory:
        gc.collect()


def floatx() -> str:
    """The default float type: always 'float32' (fusednn's compute type)."""
    return "float32"


def set_floatx(value: str) -> None:
    """Accepts only 'float32' (the one type fusednn's kernels compute in)."""
    if value != "float32":
        raise ValueError(f"fusednn computes in float32 only; set_floatx({value!r}) is not supported")


def epsilon() -> float:
    """Keras' fuzz factor (1e-7 unless :func:`set_epsilon` changed it)."""
    return _EPSILON


def set_epsilon(value: float) -> None:
    """Set the value :func:`epsilon` returns."""
    global _EPSILON
    value = float(value)
    if not value > 0:
        raise ValueError(f"epsilon must be > 0, got {value}")
    _EPSILON = value


def image_data_format() -> str:
    """'channels_last' unless :func:`set_image_data_format` changed it."""
    return _IMAGE_DATA_FORMAT


def set_image_data_format(data_format: str) -> None:
    """'channels_last' or 'channels_first', as Keras."""
    global _IMAGE_DATA_FORMAT
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
    _IMAGE_DATA_FORMAT = data_format


def backend() -> str:
    """The name of the compute engine: 'fusednn' (Keras returns 'tensorflow', 'torch', ...)."""
    return "fusednn"


__all__ = ["backend", "clear_session", "epsilon", "floatx", "image_data_format", "set_epsilon", "set_floatx",
           "set_image_data_format"]
