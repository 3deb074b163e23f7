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

#: activation name -> integer code shared with the C++/CUDA kernels (fusednn/activation.h:
#: the one table of codes). Keras 3 names and formulas; 'gelu' is the exact (erf) form,
#: Keras' default for the string, 'gelu_tanh' its approximate=True form.
ACTIVATIONS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3,
               "elu": 4, "selu": 5, "leaky_relu": 6, "gelu": 7, "gelu_tanh": 8, "swish": 9,
               "softplus": 10, "softsign": 11, "hard_sigmoid": 12, "hard_swish": 13, "relu6": 14,
               "mish": 15, "exponential": 16}
#: Keras' other names for the same functions
ALIASES = {"silu": "swish", "hard_silu": "hard_swish"}
#: activations whose backward kernel takes the forward input rather than the output
#: (fusednn::act_backward_needs_input)
NEEDS_INPUT = frozenset({"gelu", "gelu_tanh", "swish", "silu", "mish", "hard_swish", "hard_silu", "softsign"})
#: row-wise activations with their own kernels (not elementwise codes)
ROW_ACTIVATIONS = ("softmax", "log_softmax")
#: cross-entropy kind -> integer code (fusednn::XentKind)
XENT_KINDS = {"binary": 0, "categorical": 1, "sparse": 2}
#: the other Keras losses -> integer code (fusednn::LossFn); the row kinds average over rows
LOSS_FNS = {"mae": 0, "mape": 1, "msle": 2, "huber": 3, "log_cosh": 4, "hinge": 5, "squared_hinge": 6,
            "categorical_hinge": 7, "kl_divergence": 8, "poisson": 9, "cosine_similarity": 10,
            "binary_focal_crossentropy": 11, "categorical_focal_crossentropy": 12}
ROW_LOSS_FNS = frozenset({"categorical_hinge", "kl_divergence", "cosine_similarity", "categorical_focal_crossentropy"})
#: fusednn::loss_flags bits of a loss's parameters (the focal losses)
LOSS_FROM_LOGITS, LOSS_CLASS_BALANCING = 1, 2


def loss_params(param: Any) -> tuple[float, float, float, int]:
    """A LossFn loss's constants as the kernels take them (fusednn::LossParams):
    ``(param, alpha, label_smoothing, flags)`` from a number (Huber's delta) or such a
    4-tuple (the focal losses: gamma, alpha, label_smoothing, LOSS_* flag bits)."""
    if isinstance(param, (tuple, list)):
        if len(param) != 4:
            raise ValueError(f"loss parameters must be (param, alpha, label_smoothing, flags), got {param!r}")
        return float(param[0]), float(param[1]), float(param[2]), int(param[3])
    return float(param), 0.0, 0.0, 0


def loss_params_f32(param: Any) -> tuple[float, float, float, int]:
    """:func:`loss_params` with the constants rounded to float32, as the kernels receive
    them (the NumPy reference computes with these values)."""
    a, alpha, smoothing, flags = loss_params(param)
    return float(np.float32(a)), float(np.float32(alpha)), float(np.float32(smoothing)), flags


def canonical_activation(name: str) -> str:
    """The kernel's name for an activation name or Keras alias ('silu' -> 'swish')."""
    return ALIASES.get(name, name)


def activation_code(name: str | None) -> int:
    """Map an activation name (None means linear) to its kernel code."""
    if name is None:
        return 0
    try:
        return ACTIVATIONS[ALIASES.get(name, name)]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; valid: {', '.join(sorted([*ACTIVATIONS, *ALIASES]))}"
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

    def log_softmax(self, x, out):
        """Row-wise log-softmax of a 2-D array (max-shifted, sum in float64)."""
        raise NotImplementedError

    def log_softmax_backward(self, dy, y, out):
        """Gradient through a row log-softmax from its output ``y``: dy - exp(y) * sum(dy)."""
        raise NotImplementedError

    def loss_grad(self, fn, pred, target, grad=None, out=None, param=0.0):
        """The mean Keras loss ``fn`` (a LOSS_FNS name) of 2-D ``pred`` against ``target``,
        in one pass with its gradient w.r.t. ``pred`` (written to ``grad`` when given).
        ``param`` is Huber's delta, or the focal losses' constants (see :func:`loss_params`). The loss goes to ``out[0]`` as for ``mse``; without
        ``out`` it is returned as a float."""
        raise NotImplementedError

    def gaussian_factor(self, m, seed, step, scale, add_one):
        """``m[...] = scale * z`` (plus 1 when ``add_one``) for the Philox normals ``z`` of a
        ``m.shape`` draw at ``step`` (:func:`fusednn.layers.philox.normal`), all in float32:
        GaussianNoise's noise and GaussianDropout's factor. Drawn on the host here; the
        cpu backend draws natively (the same numbers)."""
        from ..layers import philox

        v = np.float32(scale) * philox.normal(m.shape[0], m.shape[1], seed, step)
        if add_one:
            v = np.float32(1) + v
        m[...] = self.asarray(v)
        return m

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

    def metric_update(self, spec, acc, pred, target, weights=None):
        """Add a batch to a Keras metric object's float64 accumulators ``acc`` on the device
        (``spec``: kind, pre, k, threshold, thresholds, sparse; fusednn/metric_math.h and
        :mod:`.metric_kernels`), each row weighted by ``weights`` (one per row) or 1."""
        raise NotImplementedError

    def weighted_loss_fn(self, fn, pred, target, weights, out, param=0.0):
        """``out[0] = sum_i weights[i] * l_i / rows`` for the LOSS_FNS loss ``fn`` (Keras'
        weighted 'sum_over_batch_size'): l_i is row i's loss; ``param`` as for :meth:`loss_grad`."""
        raise NotImplementedError

    def regularize(self, param, grad, l1, l2, loss=None):
        """Keras' L1/L2 penalty in place: ``grad += l1*sign(param) + 2*l2*param`` and,
        with ``loss`` (one float32 element), ``loss[0] += l1*sum|param| + l2*sum param**2``."""
        raise NotImplementedError

    def constrain(self, param, spec):
        """Project ``param`` (1-D or 2-D float32) in place onto a built-in weight constraint,
        ``spec`` from :meth:`fusednn.constraints.Constraint.kernel_spec` (runs on any array
        module; the cpu backend overrides it with its C++ kernel)."""
        from ..constraints import project

        project(self.xp, param, spec)

    def sgd_update(self, param, grad, velocity, learning_rate, momentum, nesterov):
        raise NotImplementedError

    def adam_update(self, param, grad, m, v, learning_rate, beta_1, beta_2, epsilon, step):
        raise NotImplementedError

    # ---- layer kernels (Dropout, BatchNormalization) ------------------------
    # The reference implementations below run on any array module (NumPy here,
    # CuPy on the GPU); the cpu backend overrides them with its C++ kernels.
    def dropout_mask(self, mask, rate, seed, step, row_b=False, col_b=False):
        """Inverted dropout's mask into the 2-D ``mask``: ``1/(1-rate)`` where the
        Philox4x32-10 uniform of its element (fusednn.layers.philox) is >= rate, else 0."""
        from ..layers import philox

        rows, cols = mask.shape
        mask[...] = self.asarray(philox.dropout_mask(rows, cols, rate, seed, step, row_b, col_b))

    def mul(self, a, b, out):
        """out = a * b elementwise."""
        self.xp.multiply(a, b, out=out)

    def batchnorm_train(self, x, gamma, beta, epsilon, moving_mean, moving_variance, momentum, y, xhat, invstd):
        """Batch normalisation of (rows, cols) ``x`` with its own statistics per column
        (biased variance, in float64): ``y = gamma * xhat + beta``; ``xhat`` and
        ``invstd = 1/sqrt(var + eps)`` kept for the backward pass; the moving statistics
        (when given) become ``moving * momentum + batch * (1 - momentum)`` (Keras)."""
        xp, f32 = self.xp, np.float32
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=0)
        var = ((x64 - mean) ** 2).mean(axis=0)
        invstd[...] = (1.0 / xp.sqrt(var + float(f32(epsilon)))).astype(f32)
        xp.multiply(x - mean.astype(f32), invstd, out=xhat)
        out = xhat * gamma if gamma is not None else xhat.copy()
        if beta is not None:
            out += beta
        y[...] = out
        m = f32(momentum)
        if moving_mean is not None:
            moving_mean[...] = moving_mean * m + mean.astype(f32) * (f32(1) - m)
        if moving_variance is not None:
            moving_variance[...] = moving_variance * m + var.astype(f32) * (f32(1) - m)

    def batchnorm_backward(self, dy, xhat, invstd, gamma, dx, dgamma, dbeta):
        """Gradients of :meth:`batchnorm_train`: ``dgamma = sum dy*xhat``, ``dbeta = sum dy``
        (when given) and ``dx = gamma*invstd * (dy - mean dy - xhat * mean(dy*xhat))``."""
        f32 = np.float32
        sdy = dy.astype(np.float64).sum(axis=0)
        sdyx = (dy.astype(np.float64) * xhat).sum(axis=0)
        if dgamma is not None:
            dgamma[...] = sdyx.astype(f32)
        if dbeta is not None:
            dbeta[...] = sdy.astype(f32)
        n = dy.shape[0]
        k = invstd * gamma if gamma is not None else invstd
        dx[...] = k * (dy - (sdy / n).astype(f32) - xhat * (sdyx / n).astype(f32))

    def layernorm_forward(self, x, gamma, beta, epsilon, y, xhat, invstd):
        """Layer normalisation of (rows, cols) ``x``, each row over its columns (mean and
        biased variance in float64, ``eps`` as float32): ``xhat = (x - mean) * invstd``,
        ``invstd = 1/sqrt(var + eps)`` (rows,), ``y = xhat * gamma + beta`` (None: 1/0);
        the float32 steps as csrc/cpu/layernorm.cpp does them."""
        xp, f32 = self.xp, np.float32
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=1, keepdims=True)
        var = ((x64 - mean) ** 2).mean(axis=1, keepdims=True)
        inv = (1.0 / xp.sqrt(var + float(f32(epsilon)))).astype(f32)
        h = (x - mean.astype(f32)) * inv
        out = h * gamma if gamma is not None else h.copy()
        if beta is not None:
            out += beta
        xhat[...] = h
        invstd[...] = inv[:, 0]
        y[...] = out

    def layernorm_backward(self, dy, xhat, invstd, gamma, dx, dgamma, dbeta):
        """Gradients of :meth:`layernorm_forward`: ``dgamma = sum dy*xhat``, ``dbeta = sum dy``
        over the rows (float64, when given) and, with ``g = dy*gamma``, ``dx = invstd * (g -
        mean(g) - xhat * mean(g*xhat))`` over each row's columns (``dx`` None: skipped)."""
        f32 = np.float32
        if dgamma is not None:
            dgamma[...] = (dy.astype(np.float64) * xhat).sum(axis=0).astype(f32)
        if dbeta is not None:
            dbeta[...] = dy.astype(np.float64).sum(axis=0).astype(f32)
        if dx is None:
            return
        g = dy * gamma if gamma is not None else dy
        g64 = g.astype(np.float64)
        a = g64.mean(axis=1, keepdims=True).astype(f32)
        b = (g64 * xhat).mean(axis=1, keepdims=True).astype(f32)
        dx[...] = invstd[:, None] * ((g - a) - xhat * b)

    def prelu_forward(self, x, alpha, y):
        """PReLU into ``y``: ``x`` where ``x > 0``, else ``alpha * x`` (alpha per column, or one)."""
        self.xp.copyto(y, self.xp.where(x > 0, x, alpha * x))

    def prelu_backward(self, dy, x, alpha, dx, dalpha):
        """PReLU's gradients: ``dx = dy * (1, alpha or 0 where x >, < or == 0)`` and
        ``dalpha = sum over rows of dy * min(x, 0)`` (float64; one shared alpha sums the columns)."""
        xp, f32 = self.xp, np.float32
        d = (dy.astype(np.float64) * xp.minimum(x, f32(0))).sum(axis=0)
        dalpha[...] = (d.sum(keepdims=True) if dalpha.shape[0] == 1 else d).astype(f32)
        dx[...] = dy * xp.where(x > 0, f32(1), xp.where(x < 0, alpha, f32(0)))

    def batchnorm_infer(self, x, gamma, beta, mean, variance, epsilon, y):
        """Batch normalisation with fixed statistics: ``(x - mean)/sqrt(var + eps)*gamma + beta``."""
        f32 = np.float32
        inv = (1.0 / self.xp.sqrt(variance.astype(np.float64) + float(f32(epsilon)))).astype(f32)
        scale = inv * gamma if gamma is not None else inv
        shift = -mean * scale
        if beta is not None:
            shift = beta + shift
        y[...] = x * scale + shift

    def optimizer_update(self, kind, flags, step_params, param, grad, s1, s2, s3, ema, sumsq):
        """One Keras optimizer step on one parameter, in place (fusednn/optim_update.h):
        ``kind``/``flags`` from ``Optimizer.kernel_spec()``, ``step_params`` the step's
        float32 row of ``Optimizer.step_params``, ``s1..s3``/``ema`` the state arrays
        the kind uses (others None), ``sumsq`` the sum of squares the clipping factor
        derives from (a Python float)."""
        raise NotImplementedError

    def sum_squares(self, x) -> float:
        """sum(x**2) as a Python float, accumulated in float64."""
        raise NotImplementedError

    # ---- fused training -------------------------------------------------
    #: whether the fused trainer runs layer steps (Dropout, BatchNormalization,
    #: Activation after a Dense): fusednn/layer_steps.h
    trainer_steps = False
    #: whether the fused trainer applies Dense kernel/bias constraints after each update
    trainer_constraints = False
    #: whether the fused trainer runs PReLU steps
    trainer_prelu = False
    #: the fused trainer runs LayerNormalization steps (csrc/cpu/layernorm.cpp)
    trainer_layernorm = False
    #: whether the fused trainer runs LeakyReLU/ELU/ReLU-with-arguments, Softmax and
    #: GaussianNoise/GaussianDropout steps (fusednn/cpu_steps_more.h)
    trainer_steps_more = False
    #: whether the fused trainer runs layer graphs (functional models with merges)
    trainer_merges = False
    #: whether the fused trainer runs log_softmax steps (a Dense's log_softmax activation,
    #: hidden or output, and Activation('log_softmax')): fusednn/layer_steps.h
    trainer_log_softmax = False
    #: whether the fused trainer adds BatchNormalization/LayerNormalization gamma/beta and
    #: PReLU alpha regularizers to the step and projects their constraints after the update
    trainer_step_penalties = False
    #: whether the fused trainer takes a batch of several model inputs side by side (a
    #: graph block reads its input's column slice)
    trainer_multi_input = False
    #: whether the fused trainer adds Dense activity_regularizer penalties (on the block's output)
    trainer_activity_regularizer = False
    #: whether the fused trainer runs several outputs as heads (fusednn/heads.h)
    trainer_heads = False

    #: whether make_trainer is implemented (see fusednn.fused)
    has_trainer = False

    def make_trainer(self, layers: list[dict], optimizer: dict, loss: str, batch: int,
                     loss_param: float = 0.0, heads: list[dict] | None = None) -> Any:
        """A fused trainer over the given buffers (see fusednn/trainer.h): an object
        with ``run(x, y, order, x_batch, y_batch, step_losses, step0, step1, iterations,
        stop_on_nonfinite) -> (iterations, steps_done)`` and a ``learning_rate``.
        ``heads`` (several outputs, fusednn/heads.h; backends with ``trainer_merges``
        only): each output's loss replaces ``loss``, and ``run`` takes ``head_losses``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<fusednn backend {self.name!r}>"
