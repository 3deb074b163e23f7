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
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(f"FUSEDNN_NUM_THREADS must be between 1 and {MAX_THREADS}, got {n}")
        return n
    return _usable_cores()


def _native():
    from .backends import cpu

    return cpu._cpu


_threads = None


def get_num_threads() -> int:
    """Threads the native CPU kernels use."""
    if _threads is None:
        set_num_threads(_default())
    return _threads


#: the most threads the pool accepts: far above any core count, far below what would
#: exhaust the process (each pool thread has its own stack)
MAX_THREADS = 4096


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 to :data:`MAX_THREADS`) in the native CPU kernels from now on.
    A refused ``n`` raises ValueError and leaves the current setting unchanged."""
    global _threads
    n = int(n)
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"number of threads must be between 1 and {MAX_THREADS}, got {n}")
    k = _native()
    if k is not None:
        k.set_num_threads(n)
    _threads = n  # only once the pool took it
