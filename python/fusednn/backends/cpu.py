"""The native CPU backend: fusednn._cpu's hand-written C++ kernels, and their thread count.

Thread count default: the cores this process may run on (``os.sched_getaffinity``),
or ``FUSEDNN_NUM_THREADS`` when set, else ``OMP_NUM_THREADS`` (at most the cores) when set (the limit
joblib's process workers get, e.g. under ``GridSearchCV(n_jobs=2)``, so that their
fits do not oversubscribe the cores). Our kernels run one at a time from the
calling thread, so they never compete with NumPy's BLAS threads for cores.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .base import LOSS_FNS, XENT_KINDS, Backend, activation_code, loss_params

from .compiled import import_error, native

_cpu = native("cpu")
IMPORT_ERROR: str | None = import_error("cpu")


def unavailable_reason() -> str | None:
    """None when the backend is usable, else a sentence saying why not."""
    return IMPORT_ERROR


# ------------------------------------------------------------------ thread count
def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _default_threads() -> int:
    env = os.environ.get("FUSEDNN_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"FUSEDNN_NUM_THREADS={env!r} is not an integer") from None
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(f"FUSEDNN_NUM_THREADS must be between 1 and {MAX_THREADS}, got {n}")
        return n
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()  # OpenMP's "outer,inner" lists
    if omp.isdigit() and 1 <= int(omp) <= MAX_THREADS:
        return min(int(omp), _usable_cores())
    return _usable_cores()


_threads: int | None = None
#: the most threads the pool accepts: far above any core count, far below what would
#: exhaust the process (each pool thread has its own stack)
MAX_THREADS = 4096


def get_num_threads() -> int:
    """Threads the native CPU kernels use."""
    if _threads is None:
        set_num_threads(_default_threads())
    return _threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 to :data:`MAX_THREADS`) in the native CPU kernels from now on.
    A refused ``n`` raises ValueError and leaves the current setting unchanged."""
    global _threads
    n = int(n)
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"number of threads must be between 1 and {MAX_THREADS}, got {n}")
    if _cpu is not None:
        _cpu.set_num_threads(n)
    _threads = n  # only once the pool took it


#: the alignment of the arrays the backend allocates: one cache line, so that vector
#: loads never straddle two lines and the two update halves of a replicated fused step
#: (csrc/cpu/train_replicas.cpp) never share one. NumPy's allocator gives 16 bytes; with
#: that, digits' replicated update took 5x its aligned time in some processes.
ALIGN_BYTES = 64


def _aligned_empty(shape: tuple[int, ...] | int) -> np.ndarray:
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimensions are not allowed, got shape {shape}")
    n = math.prod(shape)  # (np.prod cost half of this function's time)
    pad = ALIGN_BYTES // 4
    buf = np.empty(n + pad, dtype=np.float32)
    at = (-buf.ctypes.data % ALIGN_BYTES) // 4
    return buf[at:at + n].reshape(shape)


class CpuBackend(Backend):
    """C++ kernels (AVX2+FMA where the CPU has it, portable otherwise) on fusednn's thread pool."""

    name = "cpu"
    xp = np

    def __init__(self) -> None:
        if _cpu is None:
            raise RuntimeError(IMPORT_ERROR)
        self._k = _cpu
        get_num_threads()  # applies FUSEDNN_NUM_THREADS / the CPU affinity to the pool

    def empty(self, shape):
        return _aligned_empty(shape)

    def zeros(self, shape):
        out = _aligned_empty(shape)
        out.fill(0.0)
        return out

    def matmul(self, a, b, out, transpose_a=False, transpose_b=False, bias=None, activation="linear"):
        return self._k.matmul(a, b, transpose_a, transpose_b, bias, activation_code(activation), out)

    def act_forward(self, x, out, activation):
        return self._k.act_forward(x, activation_code(activation), out)

    def act_backward(self, dy, y, out, activation):
        return self._k.act_backward(dy, y, activation_code(activation), out)

    def bias_act(self, x, bias, out, activation):
        return self._k.bias_act(x, bias, activation_code(activation), out)

    def mse(self, pred, target, out=None):
        return self._k.mse(pred, target, out)

    def mse_grad(self, pred, target, out, scale):
        return self._k.mse_grad(pred, target, scale, out)

    def sum_rows(self, x, out):
        return self._k.sum_rows(x, out)

    def softmax(self, x, out):
        return self._k.softmax(x, out)

    def softmax_backward(self, dy, y, out):
        return self._k.softmax_backward(dy, y, out)

    def log_softmax(self, x, out):
        return self._k.log_softmax(x, out)

    def log_softmax_backward(self, dy, y, out):
        return self._k.log_softmax_backward(dy, y, out)

    def loss_grad(self, fn, pred, target, grad=None, out=None, param=0.0):
        return self._k.loss_grad(pred, target, LOSS_FNS[fn], loss_params(param), grad, out)

    def xent(self, kind, logits, target, grad=None, out=None, scale=1.0):
        return self._k.xent(logits, target, XENT_KINDS[kind], scale, grad, out)

    def confusion_update(self, counts, pred, target, classes, sparse, threshold=0.5):
        self._k.confusion_update(counts, pred, target, classes, sparse, threshold)

    def error_sums_update(self, sums, pred, target):
        self._k.error_sums_update(sums, pred, target)

    def metric_update(self, spec, acc, pred, target, weights=None):
        self._k.metric_update({**spec, "acc": acc}, pred, target, weights)

    def weighted_loss_fn(self, fn, pred, target, weights, out, param=0.0):
        out.reshape(-1)[0] = self._k.weighted_loss_fn(pred, target, weights, LOSS_FNS[fn], loss_params(param))

    def regularize(self, param, grad, l1, l2, loss=None):
        self._k.regularize(param, grad, l1, l2, loss)

    def constrain(self, param, spec):
        self._k.constrain(param, spec["kind"], spec["axis"], spec["min_value"], spec["max_value"], spec["rate"])

    #: the fused trainer applies Dense kernel/bias constraints (csrc/cpu/constrain.cpp)
    trainer_constraints = True

    def sgd_update(self, param, grad, velocity, learning_rate, momentum, nesterov):
        self._k.sgd_update(param, grad, velocity, learning_rate, momentum, nesterov)

    def adam_update(self, param, grad, m, v, learning_rate, beta_1, beta_2, epsilon, step):
        self._k.adam_update(param, grad, m, v, learning_rate, beta_1, beta_2, epsilon, step)

    def dropout_mask(self, mask, rate, seed, step, row_b=False, col_b=False):
        self._k.dropout_mask(mask, rate, seed, step, row_b, col_b)

    def mul(self, a, b, out):
        self._k.mul(a, b, out)

    def batchnorm_train(self, x, gamma, beta, epsilon, moving_mean, moving_variance, momentum, y, xhat, invstd):
        self._k.batchnorm_train(x, gamma, beta, epsilon, moving_mean, moving_variance, momentum, y, xhat, invstd)

    def batchnorm_backward(self, dy, xhat, invstd, gamma, dx, dgamma, dbeta):
        self._k.batchnorm_backward(dy, xhat, invstd, gamma, dx, dgamma, dbeta)

    def prelu_forward(self, x, alpha, y):
        self._k.prelu_forward(x, alpha, y)

    def prelu_backward(self, dy, x, alpha, dx, dalpha):
        self._k.prelu_backward(dy, x, alpha, dx, dalpha)

    #: PReLU steps in the fused trainer (csrc/cpu/prelu.cpp)
    trainer_prelu = True

    def layernorm_forward(self, x, gamma, beta, epsilon, y, xhat, invstd):
        self._k.layernorm_forward(x, gamma, beta, epsilon, y, xhat, invstd)

    def layernorm_backward(self, dy, xhat, invstd, gamma, dx, dgamma, dbeta):
        self._k.layernorm_backward(dy, xhat, invstd, gamma, dx, dgamma, dbeta)

    #: LayerNormalization steps in the fused trainer (csrc/cpu/layernorm.cpp)
    trainer_layernorm = True

    def act_param_forward(self, x, y, act_kind, slope=0.0, alpha=1.0, max_value=None, threshold=0.0):
        """The parameterised activation (LeakyReLU/ELU/ReLU with arguments) of
        fusednn/cpu_steps_more.h, the fused trainer's act_param step's kernel."""
        self._k.act_param_forward(x, y, act_kind, slope, alpha, max_value, threshold)

    def act_param_backward(self, dy, x, y, dx, act_kind, slope=0.0, alpha=1.0, max_value=None, threshold=0.0):
        """dx = dy * f'(x) of act_param_forward, from its input x and output y."""
        self._k.act_param_backward(dy, x, y, dx, act_kind, slope, alpha, max_value, threshold)

    def gaussian_factor(self, m, seed, step, scale, add_one):
        self._k.gaussian_factor(m, seed, step, scale, add_one)
        return m

    #: act_param, softmax and Gaussian noise steps in the fused trainer (csrc/cpu/steps_more.cpp)
    trainer_steps_more = True

    def batchnorm_infer(self, x, gamma, beta, mean, variance, epsilon, y):
        self._k.batchnorm_infer(x, gamma, beta, mean, variance, epsilon, y)

    def optimizer_update(self, kind, flags, step_params, param, grad, s1, s2, s3, ema, sumsq):
        self._k.optimizer_update(kind, flags, step_params, param, grad, s1, s2, s3, ema, sumsq)

    def sum_squares(self, x):
        return self._k.sum_squares(x)

    has_trainer = True
    trainer_steps = True
    #: the fused trainer runs layer graphs (Dense blocks with Concatenate/Add merges)
    trainer_merges = True
    #: and functional models with several inputs (the batch's column slices)
    trainer_multi_input = True
    #: and Dense activity regularizers (the regularize kernel on the block's output)
    trainer_activity_regularizer = True
    trainer_heads = True
    #: the fused trainer runs a frozen BatchNormalization (inference mode) as a step
    trainer_frozen_batchnorm = True
    #: log_softmax steps (csrc/cpu/activations.cpp's kernels, as the per-op path's)
    trainer_log_softmax = True
    #: gamma/beta and alpha regularizers and constraints of the steps (csrc/cpu/regularize.cpp, constrain.cpp)
    trainer_step_penalties = True
    #: the metric-object kernels (fusednn/metric_math.h) and weighted LossFn losses run in the fused trainer
    trainer_metric_objects = True

    def make_trainer(self, layers, optimizer, loss, batch, loss_param=0.0, heads=None):
        if heads is not None:  # several outputs (fusednn/heads.h): each head's constants as the kernels take them
            heads = [{**h, "param": loss_params(h["param"])} for h in heads]
        return self._k.MlpTrainer(layers, optimizer, loss, batch, loss_params(loss_param), heads)
