"""Which distribution is active, and which process this is: a leaf module that the
model, the callbacks and saving consult without importing MPI.

One process is rank 0 of a world of size 1 until :func:`fusednn.distribution.initialize`
reads the MPI world; only rank 0 ("the chief", as Keras calls it) writes files and
prints progress.
"""
from __future__ import annotations

from typing import Any

_rank = 0
_size = 1
_current: Any = None  # the DataParallel set by set_distribution, or None
_session: Any = None  # the FitSession of the fit under way, or None


def set_world(rank: int, size: int) -> None:
    """Record this process's rank in a world of ``size`` processes (initialize() does)."""
    global _rank, _size
    _rank, _size = int(rank), int(size)


def rank() -> int:
    """This process's rank (0 in a single process)."""
    return _rank


def size() -> int:
    """The number of processes (1 in a single process)."""
    return _size


def is_chief() -> bool:
    """Whether this process writes files and prints: rank 0, or the only process."""
    return _rank == 0


def current() -> Any:
    """The active distribution (a :class:`~fusednn.distribution.DataParallel`), or None."""
    return _current


def set_current(distribution: Any) -> None:
    global _current
    _current = distribution


def session_for(model: Any, x: Any) -> Any:
    """The per-fit data-parallel session for ``model`` (training on ``x``, as placed by
    fit) when a distribution over more than one process is active, else None (fit then
    runs as in one process)."""
    global _session
    _session = None  # a fit that raised never closed its session: it must not outlive that fit
    d = _current
    if d is None or d.num_processes == 1:
        return None
    return d.begin_fit(model, x)


def begin_session(session: Any) -> None:
    global _session
    _session = session


def end_session(session: Any) -> None:
    global _session
    if _session is session:
        _session = None


def fit_session(model: Any) -> Any:
    """The data-parallel session of ``model``'s fit under way, or None."""
    s = _session
    return s if s is not None and s.model is model else None
