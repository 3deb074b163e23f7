"""Drop-in compute functions with NumPy-style signatures.

NumPy arrays in, NumPy arrays out (on the cpu backend, or numpy where the
extension is absent); CuPy arrays in, CuPy arrays out (on the cuda backend);
mixing the two raises :class:`TypeError`. Everything computes in float32:
other real dtypes (float64, float16, ints, bools) and non-contiguous layouts
are converted once here, at the boundary; complex, object and string inputs
raise :class:`TypeError`; shapes that do not agree raise :class:`ValueError`
naming both shapes. Arrays with a zero-length axis give empty (or, for a
zero inner dimension of ``matmul``, zero) results, as NumPy does.

Any other array with ``__dlpack__`` (a PyTorch tensor, a JAX array) is taken
zero-copy on the device where it lives (CPU -> the cpu backend, CUDA -> cuda) and
results come back as the caller's kind (see :mod:`fusednn.dlpack`); arrays of
different kinds in one call raise :class:`TypeError`.

Functions that take ``out=`` write into that array (float32, C-contiguous, the
result's shape) and return it, so a loop can avoid allocating.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import backends as _backends
from .backends import NEEDS_INPUT, Backend, activation_code, backend, host_backend
from .backends.base import LOSS_CLASS_BALANCING, LOSS_FNS, LOSS_FROM_LOGITS
from .dlpack import ForeignArrays as _ForeignArrays
from .dlpack import accepts_dlpack as _accepts_dlpack
from .dlpack import is_foreign as _is_foreign

__all__ = [
    "matmul",
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "activation",
    "relu_grad",
    "sigmoid_grad",
    "tanh_grad",
    "activation_grad",
    "elu",
    "selu",
    "leaky_relu",
    "gelu",
    "swish",
    "silu",
    "softplus",
    "softsign",
    "hard_sigmoid",
    "hard_swish",
    "hard_silu",
    "relu6",
    "mish",
    "exponential",
    "softmax",
    "softmax_grad",
    "log_softmax",
    "log_softmax_grad",
    "loss",
    "loss_grad",
    "crossentropy",
    "crossentropy_grad",
    "mse",
    "mse_grad",
    "sum_rows",
    "bias_grad",
    "sgd_update",
    "adam_update",
]

_REAL_KINDS = "fiub"


def _is_device_array(x: Any) -> bool:
    return hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray)


def _pick(*arrays: Any) -> tuple[Backend, bool]:
    """The backend for these inputs and whether they are device arrays."""
    if all(type(a) is np.ndarray or a is None for a in arrays):  # the common case, fast
        return host_backend(), False
    if any(_is_foreign(a) for a in arrays):  # torch/JAX/...: converted by the accepts_dlpack wrapper
        raise _ForeignArrays
    kinds = {_is_device_array(a) for a in arrays if a is not None}
    if len(kinds) > 1:
        raise TypeError(
            "cannot mix NumPy (host) and CUDA (device) arrays in one call; "
            "move them to one device first (cupy.asarray / cupy.asnumpy)"
        )
    if kinds == {True}:
        return backend("cuda"), True
    return host_backend(), False


def _f32(x: Any, name: str, be: Backend) -> Any:
    """``x`` as a float32 C-contiguous array of ``be``'s kind, converted at most once."""
    xp = be.xp
    if not isinstance(x, xp.ndarray):
        if _is_device_array(x):  # e.g. a torch CUDA tensor: wrap without copying
            x = xp.asarray(x)
        else:
            try:
                x = np.asarray(x)
            except (ValueError, TypeError) as e:
                raise TypeError(f"{name}: cannot be read as a numeric array ({e})") from None
    if x.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name}: dtype {x.dtype} is not a real number type (float32 expected)")
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        # asarray(order="C"), not ascontiguousarray: the latter turns a 0-d scalar into
        # shape (1,), and NumPy's ufuncs keep scalars 0-d
        x = xp.asarray(x, dtype=np.float32, order="C")
    return x


def _out(out: Any, shape: tuple[int, ...], be: Backend, name: str = "out") -> Any:
    """Check a caller-provided output array, or allocate one."""
    if out is None:
        return be.empty(shape)
    if not isinstance(out, be.xp.ndarray):
        raise TypeError(f"{name} must be a {be.xp.__name__}.ndarray, got {type(out).__name__}")
    if out.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    return out


def _inplace(x: Any, name: str, be: Backend) -> Any:
    """An array updated in place must already be float32, C-contiguous and writeable."""
    if not isinstance(x, be.xp.ndarray):
        raise TypeError(f"{name} must be a {be.xp.__name__}.ndarray (it is updated in place)")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32 to be updated in place, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous to be updated in place")
    if not x.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return x


def _same_shape(a: Any, an: str, b: Any, bn: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{an} and {bn} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _mat(x: Any, name: str, be: Backend, transposed: bool) -> tuple[Any, bool]:
    """A 2-D float32 operand; an F-contiguous float32 view is passed as its C-contiguous
    transpose with the flag flipped instead of being copied."""
    if isinstance(x, be.xp.ndarray) and x.ndim == 2 and x.dtype == np.float32:
        flags = x.flags
        if flags.c_contiguous:
            return x, transposed
        if flags.f_contiguous:
            return x.T, not transposed
    x = _f32(x, name, be)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(x.shape)}")
    return x, transposed


def _shares(be: Backend, a: Any, b: Any) -> bool:
    return bool(be.xp.may_share_memory(a, b))


def _address(a: Any) -> int:
    return a.data.ptr if hasattr(a.data, "ptr") else a.ctypes.data  # CuPy / NumPy


def _check_aliasing(be: Backend, op: str, out: Any, *inputs: tuple[str, Any], in_place: bool) -> None:
    """Refuse an ``out`` that partly overlaps an input: the kernels stream through memory
    and would read values they already overwrote. With ``in_place`` (elementwise and
    row-wise ops, whose kernels read each element before writing it) ``out`` may be the
    input itself, element for element; otherwise it must not share memory with any."""
    if out.size == 0:
        return
    for name, a in inputs:
        if a is None or a.size == 0 or not _shares(be, out, a):
            continue
        if in_place and a.shape == out.shape and _address(a) == _address(out):
            continue
        raise ValueError(
            f"{op}: out must be {name} itself or not share memory with it (it partly overlaps {name})"
            if in_place else f"{op}: out must not share memory with {name}"
        )


def _native(*arrays: Any) -> Any:
    """The _cpu module when these are plain NumPy arrays bound for the cpu backend, else None.

    Small products are dominated by call overhead (a 32x10 @ 10x64 product is ~0.2 us
    of arithmetic), so the ops below first hand float32 C-contiguous NumPy inputs
    straight to the binding, which checks them in C++; anything it rejects takes
    the converting path, which also produces the error message."""
    b = _backends.active()
    if b is None or b.name != "cpu":
        return None
    for a in arrays:
        if type(a) is not np.ndarray and a is not None:
            return None
    return _backends.native("cpu")


# ----------------------------------------------------------------- products
def matmul(a: Any, b: Any, *, transpose_a: bool = False, transpose_b: bool = False, out: Any = None) -> Any:
    """``op(a) @ op(b)`` for 2-D arrays, where op transposes when the flag is set
    (as in ``tf.linalg.matmul``): ``a`` is (M, K) or, with ``transpose_a``, (K, M)."""
    if (k := _native(a, b, out)) is not None:
        try:
            return k.matmul(a, b, transpose_a, transpose_b, None, 0, out)
        except (TypeError, ValueError):
            pass
    be, _ = _pick(a, b, out)
    a, ta = _mat(a, "a", be, transpose_a)
    b, tb = _mat(b, "b", be, transpose_b)
    return _matmul(be, a, b, ta, tb, None, "linear", out)


def _matmul(be, a, b, ta, tb, bias, act, out):
    M, K = (a.shape[1], a.shape[0]) if ta else a.shape
    Kb, N = (b.shape[1], b.shape[0]) if tb else b.shape
    if K != Kb:
        raise ValueError(
            f"matmul: inner dimensions differ: a{'.T' if ta else ''} has shape {tuple(a.shape)}, "
            f"b{'.T' if tb else ''} has shape {tuple(b.shape)}"
        )
    if out is None:
        out = be.empty((M, N))
    else:
        out = _out(out, (M, N), be)
        if out.size and (_shares(be, out, a) or _shares(be, out, b) or (bias is not None and _shares(be, out, bias))):
            raise ValueError("out must not share memory with the inputs of matmul")
    if out.size == 0:
        return out
    if K == 0:  # an empty sum: the epilogue of zero
        out.fill(0)
        if bias is not None:
            out += bias
        return be.act_forward(out, out, act)
    return be.matmul(a, b, out, ta, tb, bias, act)


def linear(x: Any, w: Any, b: Any = None, *, activation: str | None = None, out: Any = None) -> Any:
    """``activation(x @ w + b)``, the Dense layer's forward, fused into one kernel call
    on the native backends. ``x`` is (N, in), ``w`` (in, units), ``b`` (units,) or None."""
    if (k := _native(x, w, b, out)) is not None:
        try:
            return k.matmul(x, w, False, False, b, _backends.ACTIVATIONS[activation or "linear"], out)
        except (TypeError, ValueError, KeyError):
            pass
    be, _ = _pick(x, w, b, out)
    act = _act_name(activation)
    x, tx = _mat(x, "x", be, False)
    w, tw = _mat(w, "w", be, False)
    units = w.shape[0] if tw else w.shape[1]
    if b is not None:
        b = _f32(b, "b", be)
        if b.shape != (units,):
            raise ValueError(f"b has shape {tuple(b.shape)}, expected ({units},) to match w")
    return _matmul(be, x, w, tx, tw, b, act, out)


# -------------------------------------------------------------- activations
def _act_name(name: str | None) -> str:
    name = "linear" if name is None else name
    activation_code(name)  # raises ValueError listing the valid names
    return name


def activation(x: Any, name: str | None, *, out: Any = None) -> Any:
    """Apply the elementwise activation ``name`` (any key of
    ``fusednn.backends.ACTIVATIONS``: linear, relu, sigmoid, tanh, elu, selu, leaky_relu,
    gelu, gelu_tanh, swish/silu, softplus, softsign, hard_sigmoid, hard_swish/hard_silu,
    relu6, mish, exponential; Keras 3's formulas and default constants)."""
    if (k := _native(x, out)) is not None:
        try:
            return k.act_forward(x, _backends.ACTIVATIONS[name or "linear"], out)
        except (TypeError, ValueError, KeyError):
            pass
    name = _act_name(name)
    be, _ = _pick(x, out)
    x = _f32(x, "x", be)
    out = _out(out, x.shape, be)
    _check_aliasing(be, name, out, ("x", x), in_place=True)
    if x.size == 0:
        return out
    return be.act_forward(x, out, name)


def activation_grad(dy: Any, y: Any, name: str | None, *, x: Any = None, out: Any = None) -> Any:
    """Gradient through an activation given the upstream gradient ``dy`` and the
    forward *output* ``y``: relu -> dy*(y>0), sigmoid -> dy*y*(1-y), tanh -> dy*(1-y^2).
    The activations whose derivative the output does not determine (gelu, gelu_tanh,
    swish/silu, mish, hard_swish/hard_silu, softsign) need the forward *input* ``x``
    instead (``y`` may then be None)."""
    needs_x = (name or "linear") in NEEDS_INPUT
    if needs_x and x is None:
        raise ValueError(f"the gradient of {name!r} needs the forward input: pass x=")
    saved, saved_name = (x, "x") if needs_x else (y, "y")
    if (k := _native(dy, saved, out)) is not None:
        try:
            return k.act_backward(dy, saved, _backends.ACTIVATIONS[name or "linear"], out)
        except (TypeError, ValueError, KeyError):
            pass
    name = _act_name(name)
    be, _ = _pick(dy, saved, out)
    dy = _f32(dy, "dy", be)
    saved = _f32(saved, saved_name, be)
    _same_shape(dy, "dy", saved, saved_name)
    out = _out(out, dy.shape, be)
    _check_aliasing(be, f"{name}_grad", out, ("dy", dy), (saved_name, saved), in_place=True)
    if dy.size == 0:
        return out
    return be.act_backward(dy, saved, out, name)


def elu(x: Any, *, out: Any = None) -> Any:
    """Keras' elu with alpha = 1: x for x > 0, else exp(x) - 1 (computed as expm1)."""
    return activation(x, "elu", out=out)


def selu(x: Any, *, out: Any = None) -> Any:
    """Keras' selu: scale * elu(x, alpha) with scale = 1.0507..., alpha = 1.6732..."""
    return activation(x, "selu", out=out)


def leaky_relu(x: Any, *, out: Any = None) -> Any:
    """Keras' leaky_relu with its default negative_slope = 0.2."""
    return activation(x, "leaky_relu", out=out)


def gelu(x: Any, approximate: bool = False, *, out: Any = None) -> Any:
    """GELU, x * Phi(x): exact (erf) by default, as ``keras.activations.gelu``; with
    ``approximate`` the tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return activation(x, "gelu_tanh" if approximate else "gelu", out=out)


def swish(x: Any, *, out: Any = None) -> Any:
    """x * sigmoid(x) (Keras' swish / silu)."""
    return activation(x, "swish", out=out)


silu = swish


def softplus(x: Any, *, out: Any = None) -> Any:
    """log(1 + exp(x)) without overflow."""
    return activation(x, "softplus", out=out)


def softsign(x: Any, *, out: Any = None) -> Any:
    """x / (1 + |x|)."""
    return activation(x, "softsign", out=out)


def hard_sigmoid(x: Any, *, out: Any = None) -> Any:
    """Keras 3's hard_sigmoid: relu6(x + 3) / 6 (0 below -3, 1 above 3)."""
    return activation(x, "hard_sigmoid", out=out)


def hard_swish(x: Any, *, out: Any = None) -> Any:
    """x * hard_sigmoid(x) (Keras' hard_silu / hard_swish)."""
    return activation(x, "hard_swish", out=out)


hard_silu = hard_swish


def relu6(x: Any, *, out: Any = None) -> Any:
    """min(max(x, 0), 6)."""
    return activation(x, "relu6", out=out)


def mish(x: Any, *, out: Any = None) -> Any:
    """x * tanh(softplus(x))."""
    return activation(x, "mish", out=out)


def exponential(x: Any, *, out: Any = None) -> Any:
    """exp(x)."""
    return activation(x, "exponential", out=out)


def relu(x: Any, *, out: Any = None) -> Any:
    """max(x, 0) elementwise (NaN propagates)."""
    return activation(x, "relu", out=out)


def sigmoid(x: Any, *, out: Any = None) -> Any:
    """1 / (1 + exp(-x)) elementwise, without overflow for large |x|."""
    return activation(x, "sigmoid", out=out)


def tanh(x: Any, *, out: Any = None) -> Any:
    """tanh(x) elementwise."""
    return activation(x, "tanh", out=out)


def relu_grad(dy: Any, y: Any, *, out: Any = None) -> Any:
    """dy where y > 0, else 0 (y is relu's output, or its input: same sign)."""
    return activation_grad(dy, y, "relu", out=out)


def sigmoid_grad(dy: Any, y: Any, *, out: Any = None) -> Any:
    """dy * y * (1 - y), with y = sigmoid(x)."""
    return activation_grad(dy, y, "sigmoid", out=out)


def tanh_grad(dy: Any, y: Any, *, out: Any = None) -> Any:
    """dy * (1 - y**2), with y = tanh(x)."""
    return activation_grad(dy, y, "tanh", out=out)


def softmax(x: Any, *, out: Any = None) -> Any:
    """Softmax over each row of a 2-D array, shifted by the row's max (no overflow)."""
    be, _ = _pick(x, out)
    x = _f32(x, "x", be)
    if x.ndim != 2:
        raise ValueError(f"softmax expects a 2-D array (rows, classes), got shape {tuple(x.shape)}")
    out = _out(out, x.shape, be)
    _check_aliasing(be, "softmax", out, ("x", x), in_place=True)
    if x.size == 0:
        return out
    return be.softmax(x, out)


def softmax_grad(dy: Any, y: Any, *, out: Any = None) -> Any:
    """Gradient through a row softmax from its output ``y``: ``y * (dy - sum(dy * y, axis=1))``."""
    be, _ = _pick(dy, y, out)
    dy = _f32(dy, "dy", be)
    y = _f32(y, "y", be)
    _same_shape(dy, "dy", y, "y")
    if dy.ndim != 2:
        raise ValueError(f"softmax_grad expects 2-D arrays, got shape {tuple(dy.shape)}")
    out = _out(out, dy.shape, be)
    _check_aliasing(be, "softmax_grad", out, ("dy", dy), ("y", y), in_place=True)
    if dy.size == 0:
        return out
    return be.softmax_backward(dy, y, out)


def log_softmax(x: Any, *, out: Any = None) -> Any:
    """Log-softmax over each row of a 2-D array: x - max - log(sum(exp(x - max)))."""
    be, _ = _pick(x, out)
    x = _f32(x, "x", be)
    if x.ndim != 2:
        raise ValueError(f"log_softmax expects a 2-D array (rows, classes), got shape {tuple(x.shape)}")
    out = _out(out, x.shape, be)
    _check_aliasing(be, "log_softmax", out, ("x", x), in_place=False)
    if x.size == 0:
        return out
    return be.log_softmax(x, out)


def log_softmax_grad(dy: Any, y: Any, *, out: Any = None) -> Any:
    """Gradient through a row log-softmax from its output ``y``: ``dy - exp(y) * sum(dy, axis=1)``."""
    be, _ = _pick(dy, y, out)
    dy = _f32(dy, "dy", be)
    y = _f32(y, "y", be)
    _same_shape(dy, "dy", y, "y")
    if dy.ndim != 2:
        raise ValueError(f"log_softmax_grad expects 2-D arrays, got shape {tuple(dy.shape)}")
    out = _out(out, dy.shape, be)
    _check_aliasing(be, "log_softmax_grad", out, ("dy", dy), ("y", y), in_place=False)
    if dy.size == 0:
        return out
    return be.log_softmax_backward(dy, y, out)


def _loss_args(pred, target, name, *extra):
    if name not in LOSS_FNS:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSS_FNS))}")
    be, _ = _pick(pred, target, *extra)
    p = _f32(pred, "pred", be)
    t = _f32(target, "target", be)
    if p.ndim == 1:
        p = p.reshape(-1, 1)
    if t.ndim == 1 and p.shape[1] == 1:
        t = t.reshape(-1, 1)
    if p.ndim != 2:
        raise ValueError(f"pred must be 1-D or 2-D (samples, outputs), got shape {tuple(p.shape)}")
    _same_shape(p, "pred", t, "target")
    if p.size == 0:
        raise ValueError(f"{name} of empty arrays is undefined")
    return be, p, t


def _loss_param(name: str, delta: float, gamma: float, alpha: float, from_logits: bool, label_smoothing: float,
                apply_class_balancing: bool) -> Any:
    """The kernel constants of loss ``name`` (backends.base.loss_params): Huber's delta,
    or the focal losses' Keras arguments."""
    if not name.endswith("focal_crossentropy"):
        return float(delta)
    if not (np.isfinite(gamma) and gamma >= 0) or not np.isfinite(alpha) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"{name}: gamma must be >= 0, alpha finite and label_smoothing in [0, 1]; got "
                         f"gamma={gamma}, alpha={alpha}, label_smoothing={label_smoothing}")
    if apply_class_balancing and name == "categorical_focal_crossentropy":
        raise ValueError("categorical_focal_crossentropy has no apply_class_balancing (alpha always weighs it)")
    flags = (LOSS_FROM_LOGITS if from_logits else 0) | (LOSS_CLASS_BALANCING if apply_class_balancing else 0)
    return (float(gamma), float(alpha), float(label_smoothing), flags)


def loss(pred: Any, target: Any, name: str, *, delta: float = 1.0, gamma: float = 2.0, alpha: float = 0.25,
         from_logits: bool = False, label_smoothing: float = 0.0, apply_class_balancing: bool = False) -> float:
    """The mean Keras loss ``name`` of ``pred`` against ``target`` as a float (float64
    accumulation): mae, mape, msle, huber (with ``delta``), log_cosh, hinge, squared_hinge,
    poisson, binary_focal_crossentropy (means over all elements), categorical_hinge,
    kl_divergence, cosine_similarity, categorical_focal_crossentropy (means over rows).
    Keras' formulas and clipping constants; ``gamma``, ``alpha``, ``from_logits``,
    ``label_smoothing`` and ``apply_class_balancing`` (Keras' defaults) are the focal
    losses' arguments, unused by the others."""
    param = _loss_param(name, delta, gamma, alpha, from_logits, label_smoothing, apply_class_balancing)
    be, p, t = _loss_args(pred, target, name)
    return float(be.loss_grad(name, p, t, None, None, param))


def loss_grad(pred: Any, target: Any, name: str, *, delta: float = 1.0, out: Any = None, gamma: float = 2.0,
              alpha: float = 0.25, from_logits: bool = False, label_smoothing: float = 0.0,
              apply_class_balancing: bool = False) -> Any:
    """d loss(pred, target, name) / d pred, computed in the same pass as the value."""
    param = _loss_param(name, delta, gamma, alpha, from_logits, label_smoothing, apply_class_balancing)
    be, p, t = _loss_args(pred, target, name, out)
    g = _out(out, tuple(np.shape(pred)) if np.ndim(pred) == 1 else p.shape, be)
    be.loss_grad(name, p, t, g.reshape(p.shape), None, param)
    return g


_XENT = ("binary", "categorical", "sparse")


def _xent_args(logits, target, kind, *extra):
    if kind not in _XENT:
        raise ValueError(f"unknown cross-entropy kind {kind!r}; valid: {', '.join(_XENT)}")
    be, _ = _pick(logits, target, *extra)
    z = _f32(logits, "logits", be)
    t = _f32(target, "target", be)
    if z.ndim != 2:
        raise ValueError(f"logits must be 2-D (rows, classes), got shape {tuple(z.shape)}")
    if kind == "sparse":
        if t.size != z.shape[0]:
            raise ValueError(f"sparse targets need one class index per row: logits {tuple(z.shape)}, "
                             f"target {tuple(t.shape)}")
        t = t.reshape(-1, 1)
    else:
        _same_shape(z, "logits", t, "target")
    if z.size == 0:
        raise ValueError("cross-entropy of empty arrays is undefined")
    return be, z, t


def crossentropy(logits: Any, target: Any, kind: str = "categorical") -> float:
    """Mean cross-entropy computed stably from logits: 'binary' (sigmoid; targets like
    the logits; mean over elements), 'categorical' (softmax; one-hot or probability
    rows; mean over rows) or 'sparse' (softmax; one class index per row). A class
    index outside [0, classes) gives NaN."""
    be, z, t = _xent_args(logits, target, kind)
    return float(be.xent(kind, z, t))


def crossentropy_grad(logits: Any, target: Any, kind: str = "categorical", *, out: Any = None) -> Any:
    """d crossentropy / d logits: ``(act(logits) - target) / N``, N the number of
    elements ('binary') or rows ('categorical', 'sparse')."""
    be, z, t = _xent_args(logits, target, kind, out)
    out = _out(out, z.shape, be)
    _check_aliasing(be, "crossentropy_grad", out, ("logits", z), ("target", t), in_place=False)
    be.xent(kind, z, t, out, None, 1.0 / (z.size if kind == "binary" else z.shape[0]))
    return out


# -------------------------------------------------------------------- loss
def mse(pred: Any, target: Any) -> float:
    """Mean squared error over all elements (Keras' value for 2-D targets), as a
    Python float accumulated in float64. Shapes must match exactly (no broadcasting)."""
    be, _ = _pick(pred, target)
    pred = _f32(pred, "pred", be)
    target = _f32(target, "target", be)
    _same_shape(pred, "pred", target, "target")
    if pred.size == 0:
        raise ValueError("mse of empty arrays is undefined")
    return float(be.mse(pred, target))


def mse_grad(pred: Any, target: Any, *, out: Any = None) -> Any:
    """d mse / d pred = 2 (pred - target) / pred.size."""
    be, _ = _pick(pred, target, out)
    pred = _f32(pred, "pred", be)
    target = _f32(target, "target", be)
    _same_shape(pred, "pred", target, "target")
    out = _out(out, pred.shape, be)
    _check_aliasing(be, "mse_grad", out, ("pred", pred), ("target", target), in_place=True)
    if pred.size == 0:
        return out
    return be.mse_grad(pred, target, out, 2.0 / pred.size)


# ------------------------------------------------------------------ reduce
def sum_rows(x: Any, *, out: Any = None) -> Any:
    """``x.sum(axis=0)`` of a 2-D array (accumulated in float64): the bias gradient."""
    be, _ = _pick(x, out)
    x = _f32(x, "x", be)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D, got shape {tuple(x.shape)}")
    out = _out(out, (x.shape[1],), be)
    if out.size and _shares(be, out, x):
        raise ValueError("out must not share memory with x")
    if x.shape[0] == 0:
        out.fill(0)
        return out
    if out.size == 0:
        return out
    return be.sum_rows(x, out)


bias_grad = sum_rows


# --------------------------------------------------------------- optimizers
def _update_args(param, grad, be, *state):
    param = _inplace(param, "param", be)
    grad = _f32(grad, "grad", be)
    _same_shape(param, "param", grad, "grad")
    for name, s in state:
        _inplace(s, name, be)
        _same_shape(param, "param", s, name)
    # Every array of an update is read and written element by element in one pass, so
    # two names for one buffer (m is v, param is grad) would silently give another
    # update on each backend; refuse any sharing, as the native bindings do.
    named = [("param", param), ("grad", grad), *state]
    for i, (an, a) in enumerate(named):
        for bn, b in named[i + 1:]:
            if a.size and b.size and _shares(be, a, b):
                raise ValueError(f"{an} and {bn} must not share memory (got the same or overlapping arrays)")
    return param, grad


def sgd_update(param: Any, grad: Any, velocity: Any = None, *, learning_rate: float = 0.01,
               momentum: float = 0.0, nesterov: bool = False) -> None:
    """In-place SGD step with Keras semantics. With ``momentum`` > 0 ``velocity`` (same
    shape, float32, initially zero) is required and updated:
    ``v = momentum*v - lr*g``; ``param += v`` (Nesterov: ``param += momentum*v - lr*g``)."""
    be, _ = _pick(param, grad, velocity)
    if not 0.0 <= momentum:
        raise ValueError(f"momentum must be >= 0, got {momentum}")
    if momentum != 0.0 and velocity is None:
        raise ValueError("sgd_update with momentum needs a velocity array")
    state = [("velocity", velocity)] if velocity is not None else []
    param, grad = _update_args(param, grad, be, *state)
    if param.size:
        be.sgd_update(param, grad, velocity, float(learning_rate), float(momentum), bool(nesterov))


def adam_update(param: Any, grad: Any, m: Any, v: Any, *, step: int, learning_rate: float = 1e-3,
                beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7) -> None:
    """In-place Adam step with Keras semantics; ``step`` counts updates from 1
    (this one included). ``m`` and ``v`` are the moment arrays (float32, start at zero)."""
    be, _ = _pick(param, grad, m, v)
    if isinstance(step, bool) or int(step) != step or not 1 <= int(step) < 2**63:
        raise ValueError(f"step must be an integer in [1, 2**63) (it counts this update), got {step!r}")
    step = int(step)
    param, grad = _update_args(param, grad, be, ("m", m), ("v", v))
    if param.size:
        be.adam_update(param, grad, m, v, float(learning_rate), float(beta_1), float(beta_2),
                       float(epsilon), step)


# ------------------------------------------------- every Keras optimizer (optim_update.h)
__all__ += ["optimizer_update", "sum_squares"]


def optimizer_update(param: Any, grad: Any, *, kind: str | int, step_params: Any, flags: int = 0, s1: Any = None,
                     s2: Any = None, s3: Any = None, ema: Any = None, sumsq: float = 0.0) -> None:
    """One in-place step of a Keras optimizer's rule on ``param`` and its state arrays:
    ``kind`` is a name of ``fusednn.optimizers.KINDS`` ('sgd', 'adam', 'rmsprop',
    'adagrad', 'adadelta', 'adamax', 'nadam', 'lion'), ``flags`` the bits of
    ``Optimizer.kernel_flags()``, ``step_params`` one row of ``Optimizer.step_params``
    (the step's learning rate, bias corrections...), ``s1..s3``/``ema`` the state arrays
    the rule uses (float32, param's shape; see fusednn/optim_update.h) and ``sumsq`` the
    sum of squares gradient clipping derives from (:func:`sum_squares`). An
    ``Optimizer`` object does all of this for a list of parameters (``build``/``apply``)."""
    from .backends import optim_codes as O

    code = O.KINDS.get(kind) if isinstance(kind, str) else int(kind)
    if code is None or not 0 <= code < len(O.KINDS):
        raise ValueError(f"unknown optimizer kind {kind!r}; valid: {', '.join(O.KINDS)}")
    flags = int(flags)
    if flags & ~O.ALL_FLAGS:
        raise ValueError(f"unknown optimizer flags {flags}")
    p = np.ascontiguousarray(step_params, dtype=np.float32).reshape(-1)
    if p.shape != (O.N_PARAMS,):
        raise ValueError(f"step_params must hold {O.N_PARAMS} values, got shape {np.shape(step_params)}")
    use = (*O.state_use(code, flags), bool(flags & O.EMA))
    given = (s1, s2, s3, ema)
    for name, needed, a in zip(("s1", "s2", "s3", "ema"), use, given):
        if needed and a is None:
            raise ValueError(f"optimizer_update: kind {kind!r} with flags {flags} needs state array {name}")
    be, _ = _pick(param, grad, *given)
    state = [(name, a) for name, needed, a in zip(("s1", "s2", "s3", "ema"), use, given) if needed]
    param, grad = _update_args(param, grad, be, *state)
    arrays = [a if needed else None for needed, a in zip(use, given)]
    if param.size:
        be.optimizer_update(code, flags, p, param, grad, *arrays, float(sumsq))


def sum_squares(x: Any) -> float:
    """``sum(x**2)`` accumulated in float64 (the norm gradient clipping uses)."""
    be, _ = _pick(x)
    return float(be.sum_squares(_f32(x, "x", be)))


# Every public op also takes DLPack arrays (torch, JAX, ...) and returns the caller's kind.
for _name in __all__:
    if _name != "bias_grad":
        globals()[_name] = _accepts_dlpack(globals()[_name])
bias_grad = sum_rows  # noqa: F811 - the same (wrapped) function under its second name
