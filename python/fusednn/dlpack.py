"""DLPack interop for :mod:`fusednn.ops`: any array that speaks DLPack (PyTorch
tensors, JAX arrays, ...) goes in without a copy and comes back as its own kind.

An argument with ``__dlpack__`` that is neither a NumPy nor a CuPy array is
wrapped zero-copy as a NumPy array when it lives on the CPU (so the cpu backend
runs on the caller's memory) or as a CuPy array when it lives on a CUDA device
(the cuda backend); the op then runs as it does for NumPy/CuPy input, including
its float32/contiguity conversion at the boundary, and an array result is handed
back through the caller's library's ``from_dlpack`` (zero-copy again). ``out=``
and in-place arguments are written through the shared memory, so the caller's
tensor itself changes. Arrays of different kinds in one call (a torch tensor and
a NumPy array, a CPU and a CUDA tensor) raise :class:`TypeError`.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, Callable

import numpy as np

# DLDeviceType codes (dlpack.h)
_CPU_DEVICES = {1, 3}  # kDLCPU, kDLCUDAHost (pinned host memory)
_CUDA_DEVICES = {2, 13}  # kDLCUDA, kDLCUDAManaged

_PLAIN = (np.ndarray, type(None), str, bool, int, float)


class ForeignArrays(Exception):
    """Raised by ops' argument check (``_pick``) when DLPack arrays need converting:
    caught by :func:`accepts_dlpack`, so NumPy calls pay nothing for the support."""


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.split(".", 1)[0] == "cupy"


def is_foreign(x: Any) -> bool:
    """True for a DLPack array that ops does not take natively (not NumPy, not CuPy)."""
    return not isinstance(x, _PLAIN) and hasattr(x, "__dlpack__") and not _is_cupy(x)


def _device(x: Any) -> str:
    try:
        dev = int(x.__dlpack_device__()[0])
    except Exception as e:  # noqa: BLE001 - any producer failure is the caller's bad input
        raise TypeError(f"cannot read the DLPack device of a {type(x).__name__}: {e}") from None
    if dev in _CPU_DEVICES:
        return "cpu"
    if dev in _CUDA_DEVICES:
        return "cuda"
    raise TypeError(f"{type(x).__name__} lives on DLPack device type {dev}; fusednn.ops takes CPU and CUDA arrays")


def _kind(x: Any) -> tuple[str, str] | None:
    """(library, device) of an array argument; None for non-arrays (lists, scalars)."""
    if isinstance(x, np.ndarray):
        return ("numpy", "cpu")
    if _is_cupy(x):
        return ("cupy", "cuda")
    if is_foreign(x):
        return (type(x).__module__.split(".", 1)[0], _device(x))
    if hasattr(x, "__cuda_array_interface__"):
        return ("cuda_array_interface", "cuda")
    return None


def _to_native(x: Any, device: str) -> Any:
    """A NumPy (CPU) or CuPy (CUDA) array sharing ``x``'s memory. An array its producer
    will not export (a torch tensor that requires grad, has the conjugate bit set or is
    sparse) or whose dtype the consumer cannot hold (bfloat16) raises TypeError naming
    the producer's reason: the caller's input is wrong, not the library."""
    if device == "cpu":
        from_dlpack = np.from_dlpack
    else:
        try:
            import cupy
        except ImportError:
            raise TypeError(f"a CUDA {type(x).__name__} needs CuPy for fusednn's cuda backend "
                            "(pip install cupy-cuda12x or cupy-cuda13x)") from None
        from_dlpack = cupy.from_dlpack
    try:
        return from_dlpack(x)
    except (BufferError, RuntimeError, ValueError, TypeError) as e:
        dtype = getattr(x, "dtype", None)
        raise TypeError(f"cannot read a {type(x).__name__}"
                        f"{f' of dtype {dtype}' if dtype is not None else ''} through DLPack: {e}") from None


def _from_dlpack_of(x: Any) -> Callable[[Any], Any]:
    """The ``from_dlpack`` of the library ``x`` comes from (its array-API namespace
    first, else the top-level module's, e.g. ``torch.from_dlpack``)."""
    ns = getattr(x, "__array_namespace__", None)
    if ns is not None:
        return ns().from_dlpack
    module = importlib.import_module(type(x).__module__.split(".", 1)[0])
    fn = getattr(module, "from_dlpack", None)
    if fn is None and hasattr(module, "numpy"):  # e.g. jax.numpy.from_dlpack
        fn = getattr(module.numpy, "from_dlpack", None)
    if fn is None:
        raise TypeError(f"cannot return a {type(x).__name__}: {module.__name__} has no from_dlpack")
    return fn


def accepts_dlpack(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an ops function so that DLPack arrays go in and come back as their kind.
    The function's argument check raises :class:`ForeignArrays` on meeting one (before
    any work); the call is then repeated on NumPy/CuPy views of the arguments."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:  # NumPy/CuPy arguments: the function as it is
            return fn(*args, **kwargs)
        except ForeignArrays:
            pass
        kinds = {k for k in map(_kind, (*args, *kwargs.values())) if k is not None}
        if len(kinds) > 1:
            names = ", ".join(f"{lib} ({dev})" for lib, dev in sorted(kinds))
            raise TypeError(f"{fn.__name__}: cannot mix array kinds in one call: {names}; "
                            "convert them to one library and device first")
        (lib, device), = kinds
        like = next(a for a in (*args, *kwargs.values()) if is_foreign(a))
        back = _from_dlpack_of(like)  # resolved before any work: nothing half-done
        native = {}

        def conv(a: Any) -> Any:
            if is_foreign(a):
                native[id(a)] = (a, _to_native(a, device))
                return native[id(a)][1]
            return a

        try:
            args, kwargs = tuple(map(conv, args)), {k: conv(v) for k, v in kwargs.items()}
        except TypeError as e:
            raise TypeError(f"{fn.__name__}: {e}") from None
        result = fn(*args, **kwargs)
        for original, view in native.values():
            if result is view:  # an out= (or in-place) argument: give back the caller's own object
                return original
        if isinstance(result, np.ndarray) or _is_cupy(result):
            return back(result)
        return result

    return wrapper
