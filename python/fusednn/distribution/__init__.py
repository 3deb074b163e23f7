"""Data-parallel training over MPI (NCCL between GPUs), shaped like Keras 3's
``keras.distribution``::

    import fusednn
    from fusednn import distribution

    distribution.initialize()                     # reads the MPI world (no-op in one process)
    distribution.set_distribution(distribution.DataParallel())
    model.fit(x, y, batch_size=256, epochs=5)     # unchanged: each rank trains on its share

and launch with ``mpiexec -n 4 python train.py``. Every rank loads the same data; each
global batch of ``batch_size`` rows is split over the ranks, gradients are summed with
one allreduce per step inside the fused trainer, rank 0's weights are broadcast when fit
starts, every rank's ``History`` holds the global loss and metrics, and only rank 0
prints progress or writes files (``save``, ``ModelCheckpoint``).
"""
from __future__ import annotations

from . import state
from .communicators import DistributedError, DistributedTimeoutError
from .data_parallel import DataParallel, shard_steps
from .world import initialize, is_chief, list_devices, num_processes, process_id

__all__ = ["initialize", "DataParallel", "set_distribution", "distribution", "list_devices", "process_id",
           "num_processes", "is_chief", "DistributedError", "DistributedTimeoutError", "shard_steps"]


def set_distribution(value: DataParallel | None) -> None:
    """Make ``value`` the distribution every later ``fit`` uses (None: one process)."""
    if value is not None and not isinstance(value, DataParallel):
        raise TypeError(f"set_distribution takes a DataParallel or None, got {type(value).__name__}")
    state.set_current(value)


def distribution() -> DataParallel | None:
    """The distribution set by :func:`set_distribution`, or None."""
    return state.current()
