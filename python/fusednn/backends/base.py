"""The contract every backend implements.

A backend is a thin adapter from fusednn's ops to one device's kernels. Its
methods receive arrays that fusednn.ops (or a model) already validated:
float32, C-contiguous, on the backend's device, shapes agreeing. Outputs are
allocated by the caller and passed as ``out`` so that a training loop can
reuse its buffers and no kernel ever allocates behind the array library.
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: activation name -> integer code shared with the C++/CUDA kernels (fusednn/activation.h)
ACTIVATIONS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}
#: cross-entropy kind -> integer code (fusednn::XentKind)
XENT_KINDS = {"binary": 0, "categorical": 1, "sparse": 2}


def activation_code(name: str | None) -> int:
    """Map an activation name (None means linear) to its kernel code."""
    if name is None:
        return 0
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}"
        ) from None


class Backend:
    """Base class: name, array module and the kernel entry points."""

    name: str = "?"
    #: the array module of this backend's arrays (numpy or cupy)
    xp: Any = np

    # ---- arrays -----------------------------------------------------------
    def asarray(self, x: Any) -> Any:
        """Return ``x`` as a float32 C-contiguous array on this backend's device."""
        return np.ascontiguousarray(x, dtype=np.float32)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Return a NumPy copy (or view, on the host) of a backend array."""
        return np.asarray(x)

    def empty(self, shape: tuple[int, ...]) -> Any:
        return self.xp.empty(shape, dtype=np.float32)

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return self.xp.zeros(shape, dtype=np.float32)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the host)."""

    def can_hold(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more of data may be placed on this backend's device at once
        (a model copies its whole training set there when this is true, else per batch).
        Host memory is the user's own: always true."""
        return True

    # ---- kernels ----------------------------------------------------------
    def matmul(self, a, b, out, transpose_a=False, transpose_b=False, bias=None, activation="linear"):
        raise NotImplementedError

    def act_forward(self, x, out, activation):
        raise NotImplementedError

    def act_backward(self, dy, y, out, activation):
        raise NotImplementedError

    def bias_act(self, x, bias, out, activation):
        raise NotImplementedError

    def mse(self, pred, target, out=None):
        """Mean squared error. Without ``out``: a Python float (on a device this waits
        for the result). With ``out`` (a one-element float32 array): the value is
        written to ``out[0]`` and nothing waits, so a loop can collect per-step
        losses on the device and read them back once per epoch."""
        raise NotImplementedError

    def mse_grad(self, pred, target, out, scale):
        raise NotImplementedError

    def sum_rows(self, x, out):
        raise NotImplementedError

    def softmax(self, x, out):
        """Row-wise softmax of a 2-D array (max-shifted: no overflow)."""
        raise NotImplementedError

    def softmax_backward(self, dy, y, out):
        """Gradient through a row softmax from its output ``y``: y * (dy - sum(dy*y))."""
        raise NotImplementedError

    def xent(self, kind, logits, target, grad=None, out=None, scale=1.0):
        """Cross-entropy on logits, ``kind`` in XENT_KINDS ('binary': sigmoid, mean over
        elements; 'categorical': softmax against one-hot/probability rows; 'sparse':
        softmax against one class index per row; both mean over rows). Writes
        ``scale * (act(logits) - target)`` to ``grad`` when given and the loss to
        ``out[0]`` as ``mse`` does; without ``out`` returns the loss as a float."""
        raise NotImplementedError

    def confusion_update(self, counts, pred, target, classes, sparse, threshold=0.5):
        """Add this batch to a (classes, classes) float64 confusion matrix on the device:
        rows are true classes, columns predicted (argmax, or ``pred > threshold`` for
        one column)."""
        raise NotImplementedError

    def error_sums_update(self, sums, pred, target):
        """sums[0] += sum|pred - target|, sums[1] += sum (pred - target)^2 (float64)."""
        raise NotImplementedError

    def regularize(self, param, grad, l1, l2, loss=None):
        """Keras' L1/L2 penalty in place: ``grad += l1*sign(param) + 2*l2*param`` and,
        with ``loss`` (one float32 element), ``loss[0] += l1*sum|param| + l2*sum param**2``."""
        raise NotImplementedError

    def sgd_update(self, param, grad, velocity, learning_rate, momentum, nesterov):
        raise NotImplementedError

    def adam_update(self, param, grad, m, v, learning_rate, beta_1, beta_2, epsilon, step):
        raise NotImplementedError

    # ---- fused training -------------------------------------------------
    #: whether make_trainer is implemented (see fusednn.fused)
    has_trainer = False

    def make_trainer(self, layers: list[dict], optimizer: dict, loss: str, batch: int) -> Any:
        """A fused trainer over the given buffers (see fusednn/trainer.h): an object
        with ``run(x, y, order, x_batch, y_batch, step_losses, step0, step1, iterations,
        stop_on_nonfinite) -> (iterations, steps_done)`` and a ``learning_rate``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<fusednn backend {self.name!r}>"
