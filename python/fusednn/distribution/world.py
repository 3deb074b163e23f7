"""This process's place in the MPI job: joining it (``initialize``), its rank and size,
its device, and ending the whole job when one rank fails."""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from . import state

_initialized = False

# Variables that MPI launchers (MPICH's hydra, Open MPI, Slurm's PMI) set in every rank.
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def _launched_size() -> int:
    for name in _LAUNCHER_SIZE_VARS:
        v = os.environ.get(name)
        if v and v.isdigit():
            return int(v)
    return 1


def initialize(job_addresses: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Join the MPI job this process was launched in (``mpiexec -n N python ...``) and
    record its rank and size; in a plain single process (or without mpi4py, when no
    launcher started us) it does nothing. Keras' arguments are accepted: with MPI the
    launcher decides the world, so ``num_processes``/``process_id``, when given, are
    checked against it and ``job_addresses`` is ignored. In a job of several ranks an
    uncaught exception on any rank prints its traceback with the rank and aborts the
    whole job, so the other ranks do not wait for it."""
    global _initialized
    launched = _launched_size()
    try:
        from mpi4py import MPI
    except ImportError as e:
        if launched > 1:
            raise ImportError(f"this process was started by an MPI launcher for {launched} ranks but mpi4py "
                              "is not installed: pip install 'fusednn[mpi]'") from e
        state.set_world(0, 1)
        _initialized = True
        return
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if num_processes is not None and int(num_processes) != size:
        raise ValueError(f"num_processes={num_processes} but the MPI job has {size} processes")
    if process_id is not None and int(process_id) != rank:
        raise ValueError(f"process_id={process_id} but this process is rank {rank}")
    state.set_world(rank, size)
    if size > 1 and not _initialized:
        _abort_on_uncaught(rank, size)
        _use_local_gpu(comm)
    _initialized = True


def _use_local_gpu(comm: Any) -> None:
    """One GPU per rank: make GPU (local rank mod GPUs on this node) CuPy's current device
    before any model is built, when CuPy is installed and the node has more than one."""
    import importlib.util

    if importlib.util.find_spec("cupy") is None:
        return
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no driver or no device: the cuda backend is unavailable anyway
        return
    if count > 1:
        from mpi4py import MPI

        local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        cupy.cuda.Device(local % count).use()


def _abort_on_uncaught(rank: int, size: int) -> None:
    """An exception nobody catches on one rank ends the job (MPI_Abort) after printing
    it, instead of leaving the other ranks blocked in their next collective."""
    previous = sys.excepthook

    def hook(kind: type, value: BaseException, tb: Any) -> None:
        sys.stderr.write(f"fusednn.distribution: rank {rank}/{size} failed; aborting the job\n")
        traceback.print_exception(kind, value, tb)
        sys.stderr.flush()
        # MPI_Abort has the launcher kill every process at once; give it a moment to
        # forward what this rank just printed, which a fast kill can otherwise drop
        time.sleep(1.0)
        try:
            from mpi4py import MPI

            MPI.COMM_WORLD.Abort(1)
        finally:
            previous(kind, value, tb)

    sys.excepthook = hook


def list_devices(device_type: str | None = None) -> list[str]:
    """This process's device, Keras style (``["cpu:0"]``, or ``["gpu:N"]`` on the cuda
    backend): fusednn trains on one device per process."""
    from ..backends import get_backend

    be = get_backend()
    if be.name == "cuda":
        import cupy

        devices = [f"gpu:{cupy.cuda.Device().id}"]
    else:
        devices = ["cpu:0"]
    if device_type is not None:
        devices = [d for d in devices if d.startswith(device_type.lower())]
    return devices


def process_id() -> int:
    """This process's rank (0 without MPI)."""
    return state.rank()


def num_processes() -> int:
    """The number of processes in the job (1 without MPI)."""
    return state.size()


def is_chief() -> bool:
    """Whether this process is rank 0, the one that prints and writes files."""
    return state.is_chief()
