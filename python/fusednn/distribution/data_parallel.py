"""Data parallelism for ``model.fit``: every rank holds the whole model and the same
training data, trains on its share of each global batch inside the fused native
trainer, and the ranks sum their scaled gradients with one allreduce per step.

How a step runs (see ``trainer.h``): the native loop gathers this rank's rows of the
global batch, runs forward, loss and backward into the trainer's gradient buffers, then
calls back into Python between the gradient and update phases. The gradient buffers of
all layers are views of one flat float32 array with one extra slot for the step's loss,
so the callback is one in-place scale by ``rows / global_rows`` (which makes the sum
over ranks the gradient of the global batch's mean loss, as Keras computes it, also for
a short last batch split unevenly, where a rank may hold no row and sends zeros) and one
allreduce. Every rank then applies the same update to the same weights, so the weights
stay equal without being sent again; they are broadcast from rank 0 once, when ``fit``
starts.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from . import state
from .communicators import DistributedError, MPICommunicator, NCCLCommunicator
from .world import initialize, list_devices


def shard_steps(order: np.ndarray, batch: int, rank: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split each global batch of the epoch's sample ``order`` over ``size`` ranks as
    ``numpy.array_split`` would (the first ``rows % size`` ranks get one row more).
    Returns this rank's sample indices (its rows of every step, in step order), the
    int64 offsets where each step starts in them (steps + 1 entries), and each step's
    global row count."""
    n = int(order.shape[0])
    steps = -(-n // batch)
    lo = np.arange(steps, dtype=np.int64) * batch
    rows = np.minimum(batch, n - lo)
    q, rem = np.divmod(rows, size)
    first = lo + rank * q + np.minimum(rank, rem)
    mine = q + (rank < rem)
    starts = np.zeros(steps + 1, dtype=np.int64)
    np.cumsum(mine, out=starts[1:])
    pos = np.arange(int(starts[-1]), dtype=np.int64) - np.repeat(starts[:-1], mine) + np.repeat(first, mine)
    return np.ascontiguousarray(order[pos], dtype=np.int64), starts, rows


class FitSession:
    """One ``fit`` under a :class:`DataParallel`: the communicator for the model's
    device, the ranks' agreement on the set-up, the weight broadcast, and the per-step
    hook. ``stats`` holds what the allreduces cost (for benchmarks)."""

    def __init__(self, dist: Any, model: Any, x: Any) -> None:
        reason = model.fused_reason
        if reason is None and not isinstance(x, model.backend.xp.ndarray):
            reason = "the training data does not fit in the device's memory (it would be copied batch by batch)"
        if reason is not None:
            raise DistributedError("DataParallel trains through the fused native trainer, which this model "
                                   f"cannot use: {reason}")
        self.model = model
        self.mpi: MPICommunicator = dist.mpi()
        self.rank, self.size = self.mpi.rank, self.mpi.size
        self.on_device = model.backend.name == "cuda"
        self.comm = dist.nccl() if self.on_device else self.mpi
        self.stats = {"steps": 0, "allreduce_s": 0.0, "bytes_per_step": 0, "hook_s": 0.0}
        self._agree("parameter count", [sum(int(p.size) for p in model.weights)])
        self._broadcast_state(model)

    # ------------------------------------------------------------- agreement
    def _agree(self, what: str, values: list[int]) -> None:
        """Raise on every rank (not only where they differ, which would leave the others
        waiting) unless all ranks hold the same ``values``."""
        mine = np.asarray(values, dtype=np.int64)
        root = self.mpi.bcast_(mine.copy(), 0, f"{what} check")
        bad = np.array([0 if np.array_equal(mine, root) else 1], dtype=np.int64)
        self.mpi.allreduce_(bad, f"{what} check")
        if bad[0]:
            raise DistributedError(f"the ranks disagree on the {what}: rank {self.rank} has {mine.tolist()}, "
                                   f"rank 0 has {root.tolist()} ({int(bad[0])} rank(s) differ)")

    def _broadcast_state(self, model: Any) -> None:
        """Rank 0's weights, optimizer state and step count on every rank."""
        opt = model.optimizer
        for a in [*model.weights, *opt.state_arrays()]:
            self.comm.bcast_(a, 0, "weight broadcast")
        it = np.array([opt.iterations], dtype=np.int64)
        self.mpi.bcast_(it, 0, "optimizer step broadcast")
        opt.iterations = int(it[0])

    # ------------------------------------------------------------- epoch
    def shared_order(self, order: np.ndarray) -> np.ndarray:
        """Rank 0's sample order for the epoch, on every rank (so the ranks need not
        share a seed), after checking that they hold the same number of samples."""
        order = np.ascontiguousarray(order, dtype=np.int64)
        self._agree("number of training samples", [order.shape[0]])
        return self.mpi.bcast_(order, 0, "sample order broadcast")

    def run_epoch(self, ft: Any, x: Any, y: Any, order: np.ndarray, step_losses: Any, chunk: int,
                  on_step: Callable[[int, Any], None] | None, stop_on_nonfinite: bool) -> int:
        """Run a fused trainer ``ft`` (built with a flat gradient buffer) over this rank's
        share of the epoch; the same contract as ``FusedTrainer.epoch``."""
        be, opt = self.model.backend, self.model.optimizer
        self._agree("batch size", [ft.batch])
        local, starts, rows = shard_steps(order, ft.batch, self.rank, self.size)
        steps = len(rows)
        dev_local = be.xp.asarray(local)
        between = self._hook(be.xp, ft.flat_grads, step_losses, rows)
        if on_step is None:
            chunk = steps
        s = 0
        while s < steps:
            end = min(steps, s + chunk)
            params = opt.step_params(opt.iterations, end - s)  # the chunk's learning rates etc.
            opt.iterations, done = ft.trainer.run(x, y, dev_local, ft.x_batch, ft.y_batch, step_losses, s, end,
                                                  opt.iterations, stop_on_nonfinite, ft.metrics, None, params,
                                                  step_starts=starts, between=between)
            if on_step is not None:
                for k in range(s, s + done):
                    on_step(k, step_losses)
            s += done
            if s < end:  # the global loss was not finite (the same on every rank)
                break
        if self.on_device:
            self.comm.synchronize("epoch")
        return s

    def _hook(self, xp: Any, flat: Any, step_losses: Any, rows: np.ndarray) -> Callable[[int, int], bool]:
        comm, stats = self.comm, self.stats
        stats["bytes_per_step"] = int(flat.nbytes)
        f32 = np.float32
        clock = time.perf_counter

        def between(step: int, mine: int) -> bool:
            t0 = clock()
            if mine:
                flat[-1] = step_losses[step]  # this rank's mean loss rides along with the gradients
                xp.multiply(flat, f32(mine / int(rows[step])), out=flat)
            else:  # no row of a short last batch here: contribute nothing
                flat.fill(0)
            t1 = clock()
            comm.allreduce_(flat, f"gradient allreduce of step {step}")
            t2 = clock()
            step_losses[step] = flat[-1]
            stats["steps"] += 1
            stats["allreduce_s"] += t2 - t1
            stats["hook_s"] += clock() - t0
            return True

        return between

    def reduce_metrics(self, tracker: Any) -> None:
        """Sum the compiled metrics' accumulators (confusion counts, error sums) over the
        ranks, so every rank's History holds the global values. The sample counts the
        tracker keeps already cover the global batches."""
        for acc in tracker.accumulators():  # confusion counts, error sums, metric objects' accumulators
            self.comm.allreduce_(acc, "metric allreduce")

    def close(self) -> None:
        """End of fit: the session no longer applies to the model."""
        state.end_session(self)


class DataParallel:
    """Keras 3's ``keras.distribution.DataParallel`` for fusednn: data parallelism over
    the processes of an MPI job, one device per process (the CPU, or one GPU per rank
    with NCCL between them). ``set_distribution(DataParallel())`` makes every later
    ``model.fit`` split each global batch over the ranks; ``timeout`` (seconds) bounds
    every collective, so a rank whose peer died or hung raises instead of waiting
    forever (make it longer than any rank-0-only work between two steps, such as saving
    a checkpoint). Keras' ``device_mesh`` and ``devices`` name devices within a process;
    here each process uses its backend's one device, so they must be None (or, for
    ``devices``, this process's own device list from :func:`list_devices`).
    ``auto_shard_dataset=True`` (Keras' default) is the only mode: every rank passes the
    whole data set and fit takes the rank's share of each batch."""

    def __init__(self, device_mesh: Any = None, devices: Any = None, auto_shard_dataset: bool = True,
                 *, timeout: float = 60.0) -> None:
        if device_mesh is not None:
            raise NotImplementedError("fusednn has no device meshes: each process trains on one device")
        if devices is not None and list(devices) != list_devices():
            raise ValueError(f"devices={devices!r}: each fusednn process uses its own device, {list_devices()}")
        if not auto_shard_dataset:
            raise NotImplementedError("auto_shard_dataset=False (per-rank data sets) is not supported: "
                                      "pass the same data on every rank")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        initialize()
        self.devices = list_devices()
        self.auto_shard_dataset = True
        self.timeout = float(timeout)
        self.process_id, self.num_processes = state.rank(), state.size()
        self._mpi: MPICommunicator | None = None
        self._nccl: NCCLCommunicator | None = None
        #: what the last fit's allreduces cost: steps, seconds, bytes per step
        self.last_fit_stats: dict[str, Any] | None = None

    def mpi(self) -> MPICommunicator:
        """The MPI communicator over the world (built once)."""
        if self._mpi is None:
            from mpi4py import MPI

            self._mpi = MPICommunicator(MPI.COMM_WORLD, self.timeout)
        return self._mpi

    def nccl(self) -> NCCLCommunicator:
        """The NCCL communicator between the ranks' GPUs (built once, needs CuPy with NCCL)."""
        if self._nccl is None:
            try:
                self._nccl = NCCLCommunicator(self.mpi(), self.timeout)
            except ImportError as e:
                raise DistributedError("data parallelism on the cuda backend needs CuPy with NCCL "
                                       f"(cupy.cuda.nccl): {e}") from e
        return self._nccl

    def begin_fit(self, model: Any, x: Any) -> FitSession:
        """Start a data-parallel ``fit`` of ``model`` on ``x`` (called by ``fit`` itself)."""
        session = FitSession(self, model, x)
        self.last_fit_stats = session.stats
        state.begin_session(session)
        return session

    def __repr__(self) -> str:
        return f"DataParallel(process_id={self.process_id}, num_processes={self.num_processes})"
