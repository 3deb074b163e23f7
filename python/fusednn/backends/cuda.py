"""The CUDA backend: fusednn._cuda's hand-written kernels on CuPy arrays.

CuPy owns device memory, its pools and streams; every kernel runs on CuPy's
current stream (``cupy.cuda.get_current_stream()``), so the backend composes
with CuPy code and with ``with cupy.cuda.Stream():`` blocks. Nothing here
waits for the GPU except :meth:`CudaBackend.synchronize`, :meth:`to_numpy` and
:meth:`mse` without ``out``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .base import Backend, activation_code

try:
    from .. import _cuda
except ImportError as e:  # not compiled (no CUDA compiler at build time), or built for another Python
    _cuda = None
    _IMPORT_ERROR: str | None = f"fusednn._cuda is not built ({e})"
else:
    _IMPORT_ERROR = None

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


def device_info() -> list[dict[str, Any]]:
    """One dict per CUDA device (name, compute_capability, multiprocessors, total_memory,
    l2_bytes, and free_memory for the current device), plus whether this build carries
    machine code for it (``arch_built``). Empty when _cuda is not built or no device is
    present."""
    if _cuda is None or _cuda.device_count() < 1:
        return []
    archs = {a.strip() for a in str(_cuda.archs).replace(",", ";").split(";") if a.strip()}
    current = _cuda.current_device()
    out = []
    for dev in range(_cuda.device_count()):
        info = dict(_cuda.device_info(dev))
        major, minor = info["compute_capability"]
        info["device"] = dev
        info["arch_built"] = f"{major}{minor}" in archs
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
        # MSE scratch space, one per (device, stream) so concurrent streams never share it.
        self._mse_ws: dict[tuple[int, int], Any] = {}

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
        ws = self._mse_ws.get(key)
        if ws is None:
            ws = self._mse_ws[key] = self._cp.empty(self._k.mse_workspace_len(), dtype=np.float64)
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

    def sgd_update(self, param, grad, velocity, learning_rate, momentum, nesterov):
        self._k.sgd_update(param, grad, velocity, learning_rate, momentum, nesterov, self._stream())

    def adam_update(self, param, grad, m, v, learning_rate, beta_1, beta_2, epsilon, step):
        self._k.adam_update(param, grad, m, v, learning_rate, beta_1, beta_2, epsilon, step,
                            self._stream())
