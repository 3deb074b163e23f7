"""The collectives data parallelism needs, over existing engines: MPI (mpi4py) between
processes on CPUs, NCCL (CuPy's bindings) between GPUs.

Every collective is bounded in time: MPI ones are started non-blocking and polled
against a deadline, so a rank whose peer died or hung raises
:class:`DistributedTimeoutError` naming the operation instead of waiting forever.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


class DistributedError(RuntimeError):
    """A collective operation failed, or the ranks disagree about the training setup."""


class DistributedTimeoutError(DistributedError):
    """A collective did not complete in time: another rank died, hung or raised."""


_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("data-parallel training needs mpi4py and an MPI library: "
                          "pip install 'fusednn[mpi]'") from e
    return MPI


class MPICommunicator:
    """Sum-allreduce and broadcast of host (NumPy) arrays in place over an mpi4py
    communicator, each bounded by ``timeout`` seconds."""

    def __init__(self, comm: Any, timeout: float) -> None:
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = float(timeout)
        self.MPI = _mpi()

    def _wait(self, request: Any, what: str) -> None:
        # Test() in a loop rather than Wait(): a blocking wait on a dead peer never returns.
        # MPI progresses a non-blocking operation only inside MPI calls, so keep calling
        # Test() (a large message moves in pieces, one per call; sleeping between calls
        # made a 1 MB allreduce 10-100x slower) as a blocking MPICH wait polls too, and
        # after ~20 ms, when the peer is evidently busy, offer the core to others between
        # calls.
        if request.Test():
            return
        start = time.monotonic()
        deadline = start + self.timeout
        spins = 0
        while not request.Test():
            spins += 1
            if spins & 255 == 0:
                now = time.monotonic()
                if now > deadline:
                    raise DistributedTimeoutError(
                        f"rank {self.rank}/{self.size}: {what} did not complete within {self.timeout:g} s; "
                        "another rank died, hung or raised (see its output)")
                if now - start > 0.02:
                    _yield()

    def allreduce_(self, buf: np.ndarray, what: str = "allreduce") -> np.ndarray:
        """Sum ``buf`` over all ranks, in place."""
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), what)
        return buf

    def bcast_(self, buf: np.ndarray, root: int = 0, what: str = "broadcast") -> np.ndarray:
        """Overwrite ``buf`` with root's, in place."""
        self._wait(self.comm.Ibcast(buf, root=root), what)
        return buf

    def barrier(self, what: str = "barrier") -> None:
        self._wait(self.comm.Ibarrier(), what)

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (the launcher kills them)."""
        self.comm.Abort(code)


class NCCLCommunicator:
    """Sum-allreduce and broadcast of CuPy arrays on the device through NCCL, queued on
    the current CUDA stream (the one the fused trainer runs on), with no host copy. The
    NCCL id travels from rank 0 over ``mpi`` (an :class:`MPICommunicator`), which also
    bounds the set-up in time; a failed NCCL peer is detected when the host next waits
    for the stream (:meth:`synchronize`, once an epoch), which aborts the communicator
    after ``timeout`` seconds.

    Not run in this project's CI (it has no GPU); see the README."""

    def __init__(self, mpi: MPICommunicator, timeout: float) -> None:
        import cupy
        from cupy.cuda import nccl

        self.cp, self.nccl, self.mpi = cupy, nccl, mpi
        self.rank, self.size, self.timeout = mpi.rank, mpi.size, float(timeout)
        uid = np.zeros(128, dtype=np.int8)  # NCCL_UNIQUE_ID_BYTES
        if mpi.rank == 0:
            uid = np.array(nccl.get_unique_id(), dtype=np.int8)
        mpi.bcast_(uid, 0, "NCCL id broadcast")
        self.comm = nccl.NcclCommunicator(self.size, tuple(int(v) for v in uid), self.rank)

    def _dtype(self, buf: Any) -> int:
        if buf.dtype == np.float32:
            return self.nccl.NCCL_FLOAT32
        if buf.dtype == np.float64:
            return self.nccl.NCCL_FLOAT64
        if buf.dtype == np.int64:
            return self.nccl.NCCL_INT64
        raise TypeError(f"NCCL collectives here take float32, float64 or int64 arrays, got {buf.dtype}")

    def allreduce_(self, buf: Any, what: str = "allreduce") -> Any:
        stream = self.cp.cuda.get_current_stream().ptr
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._dtype(buf), self.nccl.NCCL_SUM, stream)
        return buf

    def bcast_(self, buf: Any, root: int = 0, what: str = "broadcast") -> Any:
        stream = self.cp.cuda.get_current_stream().ptr
        self.comm.bcast(buf.data.ptr, buf.size, self._dtype(buf), root, stream)
        return buf

    def synchronize(self, what: str = "epoch") -> None:
        """Wait for the stream, bounded: abort NCCL and raise if a peer stopped answering."""
        stream = self.cp.cuda.get_current_stream()
        deadline = time.monotonic() + self.timeout
        while not stream.done:
            self.comm.check_async_error()
            if time.monotonic() > deadline:
                self.comm.abort()
                raise DistributedTimeoutError(
                    f"rank {self.rank}/{self.size}: NCCL work of the {what} did not complete within "
                    f"{self.timeout:g} s; another rank died, hung or raised")
            time.sleep(0.001)
