"""Backend registry: which backends exist, which can run here, which is active.

Default choice: cuda when usable, else cpu when the extension is built, else
numpy. ``FUSEDNN_BACKEND`` (read at first use) and :func:`set_backend` override
it; asking for a backend that cannot run raises :class:`BackendUnavailableError`
with the reason.
"""
from __future__ import annotations

import os

import numpy as _np

from .base import ACTIVATIONS, LOSS_FNS, NEEDS_INPUT, XENT_KINDS, Backend, activation_code, canonical_activation
from .compiled import native

NAMES = ("cuda", "cpu", "numpy")


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on this machine or build."""


def _reason(name: str) -> str | None:
    if name == "numpy":
        return None
    if name == "cpu":
        from . import cpu

        return cpu.unavailable_reason()
    if name == "cuda":
        from . import cuda

        return cuda.unavailable_reason()
    raise ValueError(f"unknown backend {name!r}; valid: {', '.join(NAMES)}")


def unavailable() -> dict[str, str]:
    """Map each backend that cannot run here to the reason why."""
    return {n: r for n in NAMES if (r := _reason(n)) is not None}


def available() -> list[str]:
    """Names of the backends that can run here, fastest first."""
    return [n for n in NAMES if _reason(n) is None]


_instances: dict[str, Backend] = {}
_active: Backend | None = None


def backend(name: str) -> Backend:
    """The (shared) instance of backend ``name``; raises if it cannot run here."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(NAMES)}")
    if name in _instances:
        return _instances[name]
    reason = _reason(name)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
    if name == "numpy":
        from .numpy import NumpyBackend as cls
    elif name == "cpu":
        from .cpu import CpuBackend as cls
    else:
        from .cuda import CudaBackend as cls
    _instances[name] = inst = cls()
    return inst


def set_backend(name: str) -> Backend:
    """Make ``name`` the active backend and return it."""
    global _active
    _active = backend(name)
    return _active


def get_backend() -> Backend:
    """The active backend, chosen on first use from FUSEDNN_BACKEND or the default order."""
    global _active
    if _active is None:
        env = os.environ.get("FUSEDNN_BACKEND", "").strip().lower()
        if env:
            if env not in NAMES:
                raise ValueError(f"FUSEDNN_BACKEND={env!r} is not a backend; valid: {', '.join(NAMES)}")
            _active = backend(env)
        else:
            _active = backend(available()[0])
    return _active


def active() -> Backend | None:
    """The active backend, or None while none has been chosen yet (never chooses one)."""
    return _active


def host_backend() -> Backend:
    """The backend for NumPy inputs: the active one if it runs on the host, else
    the best host backend (cpu when built, else numpy)."""
    b = _active if _active is not None else get_backend()
    if b.xp is _np:
        return b
    return backend("cpu" if _reason("cpu") is None else "numpy")


__all__ = [
    "ACTIVATIONS",
    "XENT_KINDS",
    "LOSS_FNS",
    "NEEDS_INPUT",
    "canonical_activation",
    "Backend",
    "BackendUnavailableError",
    "activation_code",
    "active",
    "available",
    "backend",
    "get_backend",
    "host_backend",
    "native",
    "set_backend",
    "unavailable",
]
