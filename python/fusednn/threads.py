"""Thread count of the native CPU kernels.

Default: the cores this process may run on (``os.sched_getaffinity``), or
``FUSEDNN_NUM_THREADS`` when set. Our kernels run one at a time from the
calling thread, so they never compete with NumPy's BLAS threads for cores.
"""
from __future__ import annotations

import os


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _default() -> int:
    env = os.environ.get("FUSEDNN_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"FUSEDNN_NUM_THREADS={env!r} is not an integer") from None
        if n < 1:
            raise ValueError(f"FUSEDNN_NUM_THREADS must be >= 1, got {n}")
        return n
    return _usable_cores()


def _native():
    from .backends import native

    return native("cpu")


_threads = None


def get_num_threads() -> int:
    """Threads the native CPU kernels use."""
    if _threads is None:
        set_num_threads(_default())
    return _threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (>= 1) in the native CPU kernels from now on."""
    global _threads
    n = int(n)
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    _threads = n
    k = _native()
    if k is not None:
        k.set_num_threads(n)
