"""The CUDA backend: fusednn._cuda's hand-written kernels on CuPy arrays.

CuPy owns device memory, its pools and streams; every kernel runs on CuPy's
current stream (``cupy.cuda.get_current_stream()``), so the backend composes
with CuPy code and with ``with cupy.cuda.Stream():`` blocks. Nothing here
waits for the GPU except :meth:`CudaBackend.synchronize`, :meth:`to_numpy`, and
:meth:`mse` and :meth:`xent` without ``out``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .base import LOSS_FNS, XENT_KINDS, Backend, activation_code, loss_params, loss_params_f32

from .compiled import import_error, native
from .optim_codes import N_PARAMS

_cuda = native("cuda")
_IMPORT_ERROR: str | None = import_error("cuda")

#: default share of free device memory that training data may take (FUSEDNN_GPU_DATA_FRACTION)
DEFAULT_DATA_FRACTION = 0.5


def unavailable_reason() -> str | None:
    """None when the backend is usable, else a sentence saying why not."""
    if _cuda is None:
        return _IMPORT_ERROR
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed (pip install cupy-cuda12x or cupy-cuda13x)"
    except Exception as e:  # a broken CuPy install raises other errors at import
        return f"CuPy failed to import ({type(e).__name__}: {e})"
    if _cuda.device_count() < 1:
        return "no CUDA device is present"
    return None


def _built_archs(spec: str) -> list[tuple[int, int]]:
    """The machine-code (SASS) targets of a CMake architecture list such as
    "75-real,80-real,90": ``-virtual`` entries carry PTX only."""
    out = []
    for token in spec.replace(",", ";").split(";"):
        token = token.strip()
        if not token or token.endswith("-virtual"):
            continue
        digits = token.split("-")[0]
        if digits.isdigit() and len(digits) >= 2:
            out.append((int(digits[:-1]), int(digits[-1])))
    return out


def _runs_natively(built: list[tuple[int, int]], major: int, minor: int) -> bool:
    """A cubin runs on its own major version at the same or a later minor one."""
    return any(b_major == major and b_minor <= minor for b_major, b_minor in built)


def device_info() -> list[dict[str, Any]]:
    """One dict per CUDA device (name, compute_capability, multiprocessors, total_memory,
    l2_bytes, and free_memory for the current device), plus whether this build carries
    machine code for it (``arch_built``). Empty when _cuda is not built or no device is
    present."""
    if _cuda is None or _cuda.device_count() < 1:
        return []
    archs = _built_archs(str(_cuda.archs))
    current = _cuda.current_device()
    out = []
    for dev in range(_cuda.device_count()):
        info = dict(_cuda.device_info(dev))
        major, minor = info["compute_capability"]
        info["device"] = dev
        info["arch_built"] = _runs_natively(archs, major, minor)
        if dev == current:
            info["free_memory"] = _cuda.memory_info()[0]
        out.append(info)
    return out


def _data_fraction() -> float:
    raw = os.environ.get("FUSEDNN_GPU_DATA_FRACTION", "").strip()
    if not raw:
        return DEFAULT_DATA_FRACTION
    try:
        f = float(raw)
    except ValueError:
        raise ValueError(f"FUSEDNN_GPU_DATA_FRACTION={raw!r} is not a number") from None
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"FUSEDNN_GPU_DATA_FRACTION={raw!r} must lie in [0, 1]")
    return f


class CudaBackend(Backend):
    """Hand-written CUDA kernels (fusednn._cuda) on CuPy float32 arrays, on CuPy's current stream.

    ``tf32`` (default False, or FUSEDNN_TF32=1) lets matmul use the TF32 tensor cores on
    compute capability >= 8.0, like ``torch.backends.cuda.matmul.allow_tf32``: faster,
    with operands rounded to 10 mantissa bits (about 1e-3 relative error)."""

    name = "cuda"

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        import cupy

        self.xp = cupy
        self._cp = cupy
        self._k = _cuda
        self.tf32 = os.environ.get("FUSEDNN_TF32", "").strip() in ("1", "true", "True")
        #: why the last make_trainer did not take an opt-in path it was asked for ('' if none)
        self.trainer_path_note = ""
        # Loss scratch space (mse, xent, the fused trainer), one per (device, stream) so
        # concurrent streams never share it.
        self._loss_ws: dict[tuple[int, int], Any] = {}

    def _stream(self) -> int:
        return self._cp.cuda.get_current_stream().ptr

    # ---- arrays -----------------------------------------------------------
    def asarray(self, x: Any) -> Any:
        x = self._cp.asarray(x, dtype=np.float32)
        return x if x.flags.c_contiguous else self._cp.ascontiguousarray(x)

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, self._cp.ndarray):
            return self._cp.asnumpy(x)
        return np.asarray(x)

    def synchronize(self) -> None:
        self._cp.cuda.get_current_stream().synchronize()

    def can_hold(self, nbytes: int) -> bool:
        """True when ``nbytes`` is at most FUSEDNN_GPU_DATA_FRACTION (default 0.5) of the
        device memory still free, counting blocks CuPy's pool holds but does not use."""
        free, _total = self._cp.cuda.runtime.memGetInfo()
        free += self._cp.get_default_memory_pool().free_bytes()
        return int(nbytes) <= _data_fraction() * free

    # ---- kernels ----------------------------------------------------------
    def matmul(self, a, b, out, transpose_a=False, transpose_b=False, bias=None, activation="linear"):
        return self._k.matmul(a, b, transpose_a, transpose_b, bias, activation_code(activation), out,
                              -1, self.tf32, self._stream())

    def act_forward(self, x, out, activation):
        return self._k.act_forward(x, activation_code(activation), out, self._stream())

    def act_backward(self, dy, y, out, activation):
        return self._k.act_backward(dy, y, activation_code(activation), out, self._stream())

    def bias_act(self, x, bias, out, activation):
        return self._k.bias_act(x, bias, activation_code(activation), out, self._stream())

    def _workspace(self, stream: int) -> Any:
        key = (self._cp.cuda.runtime.getDevice(), stream)
        ws = self._loss_ws.get(key)
        if ws is None:
            n = max(self._k.mse_workspace_len(), self._k.xent_workspace_len(), self._k.MlpTrainer.workspace_len(),
                    self._k.loss_grad_workspace_len())
            ws = self._loss_ws[key] = self._cp.empty(n, dtype=np.float64)
        return ws

    def mse(self, pred, target, out=None):
        """Without ``out``: a Python float (waits for the stream). With ``out`` (one float32
        device element): the value is written there on the stream and ``out`` is returned
        at once, so a training loop reads its losses back only when it wants them."""
        s = self._stream()
        return self._k.mse(pred, target, out, self._workspace(s), s)

    def mse_grad(self, pred, target, out, scale):
        return self._k.mse_grad(pred, target, scale, out, self._stream())

    def sum_rows(self, x, out):
        return self._k.sum_rows(x, out, self._stream())

    def softmax(self, x, out):
        return self._k.softmax(x, out, self._stream())

    def softmax_backward(self, dy, y, out):
        return self._k.softmax_backward(dy, y, out, self._stream())

    def log_softmax(self, x, out):
        return self._k.log_softmax(x, out, self._stream())

    def log_softmax_backward(self, dy, y, out):
        return self._k.log_softmax_backward(dy, y, out, self._stream())

    #: losses whose CUDA kernel has not run on a device yet: computed by the NumPy reference on
    #: host copies (per-op path only; the fused trainer refuses them) unless FUSEDNN_CUDA_FOCAL=1
    #: opts in to the kernels (the formulas are fusednn/loss_math.h, shared with the CPU)
    unverified_losses = frozenset() if os.environ.get("FUSEDNN_CUDA_FOCAL", "") == "1" else \
        frozenset({"binary_focal_crossentropy", "categorical_focal_crossentropy"})

    def loss_grad(self, fn, pred, target, grad=None, out=None, param=0.0):
        """The loss as xent returns it: a float without ``out``, else written to ``out``."""
        if fn in self.unverified_losses:
            return self._host_loss_grad(fn, pred, target, grad, out, param)
        s = self._stream()
        return self._k.loss_grad(pred, target, LOSS_FNS[fn], loss_params(param), grad, out, self._workspace(s), s)

    def _host_loss_grad(self, fn, pred, target, grad, out, param):
        from .numpy import NumpyBackend  # the reference backend (a leaf)

        g = None if grad is None else np.empty(tuple(grad.shape), np.float32)
        loss = NumpyBackend().loss_grad(fn, self.to_numpy(pred), self.to_numpy(target), g, None, param)
        if grad is not None:
            grad[...] = self._cp.asarray(g)
        if out is not None:
            out.reshape(-1)[0] = np.float32(loss)
        return loss

    def xent(self, kind, logits, target, grad=None, out=None, scale=1.0):
        """Without ``out``: the loss as a Python float (waits for the stream). With ``out``
        (one float32 device element): written there on the stream, ``out`` returned at once."""
        s = self._stream()
        return self._k.xent(logits, target, XENT_KINDS[kind], scale, grad, out, self._workspace(s), s)

    def confusion_update(self, counts, pred, target, classes, sparse, threshold=0.5):
        self._k.confusion_update(counts, pred, target, classes, sparse, threshold, self._stream())

    def error_sums_update(self, sums, pred, target):
        self._k.error_sums_update(sums, pred, target, self._stream())

    def metric_update(self, spec, acc, pred, target, weights=None):
        # The per-op path's metric objects on the host with the float64 reference (one copy
        # per batch): the CUDA kernel (csrc/cuda/metric_objects.cu) has not run on a device yet.
        from . import metric_kernels

        h = self.to_numpy(acc)
        if spec.get("thresholds") is not None:
            spec = {**spec, "thresholds": self.to_numpy(spec["thresholds"])}
        metric_kernels.metric_update(spec, h, self.to_numpy(pred), self.to_numpy(target),
                                     None if weights is None else self.to_numpy(weights))
        acc[...] = self._cp.asarray(h)

    def weighted_loss_fn(self, fn, pred, target, weights, out, param=0.0):
        from . import metric_kernels

        v = metric_kernels.weighted_loss_fn(fn, self.to_numpy(pred), self.to_numpy(target), self.to_numpy(weights),
                                            loss_params_f32(param))
        out.reshape(-1)[0] = v

    def regularize(self, param, grad, l1, l2, loss=None):
        self._k.regularize(param, grad, l1, l2, loss, self._stream())

    def sgd_update(self, param, grad, velocity, learning_rate, momentum, nesterov):
        self._k.sgd_update(param, grad, velocity, learning_rate, momentum, nesterov, self._stream())

    def adam_update(self, param, grad, m, v, learning_rate, beta_1, beta_2, epsilon, step):
        self._k.adam_update(param, grad, m, v, learning_rate, beta_1, beta_2, epsilon, step,
                            self._stream())

    def optimizer_update(self, kind, flags, step_params, param, grad, s1, s2, s3, ema, sumsq):
        self._k.optimizer_update(kind, flags, np.ascontiguousarray(step_params, dtype=np.float32), param, grad,
                                 s1, s2, s3, ema, float(sumsq), self._stream())

    def sum_squares(self, x):
        return float(self._cp.sum(self._cp.square(x.astype(self._cp.float64))))

    # ---- fused training -------------------------------------------------
    has_trainer = True
    #: Dropout/BatchNormalization/Activation steps in the CUDA fused trainer (csrc/cuda/layers.cu):
    #: opt-in with FUSEDNN_CUDA_TRAINER_STEPS=1 until they have been run on a device
    trainer_steps = os.environ.get("FUSEDNN_CUDA_TRAINER_STEPS", "") == "1"
    #: under the same opt-in: PReLU, LayerNormalization, LeakyReLU/ELU/ReLU-with-arguments, Softmax and
    #: GaussianNoise/GaussianDropout steps, a frozen BatchNormalization, layer graphs (Concatenate/Add merges)
    #: and Dense weight constraints (csrc/cuda/steps_more.cu): compiled, never run on a device yet
    trainer_steps_more = trainer_prelu = trainer_layernorm = trainer_steps
    trainer_merges = trainer_frozen_batchnorm = trainer_constraints = trainer_steps
    #: the capabilities above, which fused_reason checks the opt-in against
    trainer_opt_in_flags = ("trainer_steps", "trainer_steps_more", "trainer_prelu", "trainer_layernorm",
                            "trainer_merges", "trainer_frozen_batchnorm", "trainer_constraints")
    #: what fused_reason adds where the opt-in would fuse the model (empty once opted in)
    trainer_opt_in = "" if trainer_steps else "opt in with FUSEDNN_CUDA_TRAINER_STEPS=1 (not yet run on a device)"
    #: the metric-object kernels and weighted LossFn losses in the CUDA fused trainer
    #: (csrc/cuda/metric_objects.cu): opt-in with FUSEDNN_CUDA_TRAINER_METRICS=1 until run on a device
    trainer_metric_objects = os.environ.get("FUSEDNN_CUDA_TRAINER_METRICS", "") == "1"

    def make_trainer(self, layers, optimizer, loss, batch, loss_param=0.0):
        # The graph and persistent paths are opt-in (FUSEDNN_CUDA_GRAPH / FUSEDNN_CUDA_PERSISTENT)
        # until a device run of benchmarks/gpu_check.sh has checked them; see cuda_paths.
        from .cuda_paths import choose_mode

        mode, self.trainer_path_note = choose_mode(layers, optimizer, loss, batch, self._k.persistent_why_not,
                                                   self._k.persistent_smem_limit())
        return CudaTrainer(self, self._k.MlpTrainer(layers, optimizer, loss, batch, self.tf32, loss_params(loss_param),
                                                    mode))


class CudaTrainer:
    """The fused trainer (``_cuda.MlpTrainer``) run on the backend's current stream, with
    its TF32 setting and loss workspace: the interface of ``_cpu.MlpTrainer``.

    ``run`` queues the steps and returns without waiting for the GPU, so it cannot stop
    at a non-finite loss (``stop_on_nonfinite`` is accepted and ignored): the step
    losses are read once per epoch, where ``TerminateOnNaN`` names the bad step.
    ``order`` is the int64 device array of the epoch's sample order, which is not
    range-checked on the device (that would wait for the GPU on every call); the
    gather kernel turns a row whose index is out of range into NaN instead of reading
    it. An order given as a NumPy array is checked here, on the host, then copied."""

    def __init__(self, backend: CudaBackend, trainer: Any) -> None:
        self._be = backend
        self._t = trainer
        # Graph mode: buffers whose addresses stay fixed from epoch to epoch, so a
        # captured epoch can be replayed (a new address means a new capture).
        self._order_buf: Any = None
        self._scalars: Any = None

    @property
    def mode(self) -> str:
        """'ops', 'graph' or 'persistent': how the steps run (see backends.cuda_paths)."""
        return self._t.mode

    def graph_stats(self) -> dict[str, int]:
        """Graph mode: how many step ranges were captured, replayed and are cached."""
        return dict(self._t.graph_stats())

    def run(self, x, y, order, x_batch, y_batch, step_losses, step0, step1, iterations,
            stop_on_nonfinite=False, metrics=None, weights=None, step_params=None, step_starts=None, between=None):
        if isinstance(order, np.ndarray):
            order = np.ascontiguousarray(order, dtype=np.int64)
            n = int(x.shape[0])
            if order.size and (int(order.min()) < 0 or int(order.max()) >= n):
                raise ValueError(f"order holds indices outside [0, {n})")
            order = self._be._cp.asarray(order)
        self._t.tf32 = self._be.tf32  # the backend's setting at the time of the call, as matmul
        s = self._be._stream()
        scalars = None
        if self._t.mode != "ops":  # the device copy of the run's step_params rows
            cp = self._be._cp
            if self._t.mode == "graph":
                if self._order_buf is None or self._order_buf.shape != order.shape:
                    self._order_buf = cp.empty(order.shape, dtype=np.int64)
                self._order_buf[...] = order
                order = self._order_buf
            # sized for a whole epoch, so that the address (baked into captures) stays put
            epoch = -(-int(x.shape[0]) // int(x_batch.shape[0]))
            need = max(epoch, int(step1) - int(step0), 1) * N_PARAMS
            if self._scalars is None or self._scalars.size < need:
                self._scalars = cp.empty(need, dtype=np.float32)
            scalars = self._scalars
        return self._t.run(x, y, order, x_batch, y_batch, step_losses, step0, step1, iterations, False,
                           metrics, s, self._be._workspace(s), weights, step_params, step_starts, between,
                           scalars)
