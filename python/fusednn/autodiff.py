"""A small reverse-mode automatic differentiation over array expressions (micrograd-style).

A :class:`Tensor` wraps a NumPy array (a CuPy array on the GPU) and, when it was made by a
differentiable operation from tensors that need gradients, remembers its parents and the
operation's vector-Jacobian product (VJP). :func:`gradients` walks that graph backwards
from an output, once, in reverse topological order. Every primitive here handles NumPy
broadcasting (gradients are summed back to each input's shape). A :class:`Variable` is a
leaf tensor over a live weight array (a custom layer's weight): the optimizer updates the
array in place, so the variable always sees the current value.

This is what lets user code written with ``keras.ops`` (a custom loss, a custom layer's
``call``) train: the trainer records the forward pass and asks for the gradient of the
output w.r.t. the inputs and weights. Nothing is recorded inside :func:`no_grad` or when
no input needs a gradient, so the same code runs eagerly on plain arrays.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

try:  # CuPy arrays on the cuda backend; optional
    import cupy as _cupy
except Exception:  # noqa: BLE001 - any import failure means no GPU arrays
    _cupy = None

_state = threading.local()


def grad_enabled() -> bool:
    """Whether operations record the graph in this thread (see :func:`no_grad`)."""
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Run the block without recording: results are plain-valued tensors (inference)."""
    old = grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = old


def xp_of(*values: Any) -> Any:
    """The array module (numpy or cupy) of the arrays among ``values``."""
    if _cupy is not None:
        for v in values:
            v = v.value if isinstance(v, Tensor) else v
            if isinstance(v, _cupy.ndarray):
                return _cupy
    return np


def value_of(x: Any) -> Any:
    """The raw array (or scalar) behind ``x``."""
    return x.value if isinstance(x, Tensor) else x


class Tensor:
    """An array with an optional place in a recorded graph. Arithmetic operators,
    comparisons, ``@``, indexing and ``.T`` build new tensors; ``numpy()`` (or
    ``np.asarray``) reads the value. ``requires_grad`` marks a node gradients flow to."""

    # NumPy defers binary operators (ndarray + Tensor) to the Tensor's reflected methods
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, value: Any, parents: tuple[Any, ...] = (), vjp: Callable[[Any], Sequence[Any]] | None = None,
                 requires_grad: bool = False) -> None:
        self.value = value
        self.parents = parents
        self.vjp = vjp
        self.requires_grad = requires_grad

    # ---- reading -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def size(self) -> int:
        return int(self.value.size)

    def numpy(self) -> np.ndarray:
        """The value as a NumPy array (copied from the GPU if needed)."""
        v = self.value
        return v.get() if _cupy is not None and isinstance(v, _cupy.ndarray) else np.asarray(v)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def __float__(self) -> float:
        return float(self.numpy())

    def __int__(self) -> int:
        return int(self.numpy())

    def __bool__(self) -> bool:
        return bool(self.numpy())

    def __len__(self) -> int:
        return len(self.value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} shape={self.shape} dtype={self.dtype}>"

    __hash__ = object.__hash__

    # ---- operators (the functions live in fusednn.keras_ops) -----------------
    def __add__(self, o: Any) -> "Tensor": return add(self, o)
    def __radd__(self, o: Any) -> "Tensor": return add(o, self)
    def __sub__(self, o: Any) -> "Tensor": return subtract(self, o)
    def __rsub__(self, o: Any) -> "Tensor": return subtract(o, self)
    def __mul__(self, o: Any) -> "Tensor": return multiply(self, o)
    def __rmul__(self, o: Any) -> "Tensor": return multiply(o, self)
    def __truediv__(self, o: Any) -> "Tensor": return divide(self, o)
    def __rtruediv__(self, o: Any) -> "Tensor": return divide(o, self)
    def __pow__(self, o: Any) -> "Tensor": return power(self, o)
    def __rpow__(self, o: Any) -> "Tensor": return power(o, self)
    def __matmul__(self, o: Any) -> "Tensor": return matmul(self, o)
    def __rmatmul__(self, o: Any) -> "Tensor": return matmul(o, self)
    def __neg__(self) -> "Tensor": return negative(self)
    def __pos__(self) -> "Tensor": return self
    def __abs__(self) -> "Tensor": return absolute(self)
    def __getitem__(self, key: Any) -> "Tensor": return getitem(self, key)
    def __gt__(self, o: Any) -> "Tensor": return compare("greater", self, o)
    def __ge__(self, o: Any) -> "Tensor": return compare("greater_equal", self, o)
    def __lt__(self, o: Any) -> "Tensor": return compare("less", self, o)
    def __le__(self, o: Any) -> "Tensor": return compare("less_equal", self, o)
    def __eq__(self, o: Any) -> "Tensor": return compare("equal", self, o)  # type: ignore[override]
    def __ne__(self, o: Any) -> "Tensor": return compare("not_equal", self, o)  # type: ignore[override]

    @property
    def T(self) -> "Tensor":  # noqa: N802 - NumPy's name
        return transpose(self)


class Variable(Tensor):
    """A named leaf over a live weight array (Keras' ``Variable``): ``value`` is the
    array itself, so an in-place update by the optimizer, ``assign`` or ``set_weights`` is
    seen by every later use. Gradients flow to it when ``trainable``."""

    def __init__(self, value: Any, trainable: bool = True, name: str = "variable", path: str | None = None) -> None:
        super().__init__(value, requires_grad=bool(trainable))
        self.trainable = bool(trainable)
        self.name = name
        self.path = path or name

    def assign(self, value: Any) -> "Variable":
        """Write ``value`` into the array in place (shape checked)."""
        v = value_of(value)
        xp = xp_of(self.value)
        v = xp.asarray(v, dtype=self.value.dtype)
        if v.shape != self.value.shape and v.size != 1:
            raise ValueError(f"variable {self.name!r} of shape {self.shape} cannot take a value of shape {v.shape}")
        self.value[...] = v
        return self

    def assign_add(self, value: Any) -> "Variable":
        """``self += value`` in place."""
        return self.assign(self.value + xp_of(self.value).asarray(value_of(value), dtype=self.value.dtype))

    def assign_sub(self, value: Any) -> "Variable":
        """``self -= value`` in place."""
        return self.assign(self.value - xp_of(self.value).asarray(value_of(value), dtype=self.value.dtype))

    def __repr__(self) -> str:
        return f"<Variable path={self.path!r} shape={self.shape} dtype={self.dtype}>"


# ---------------------------------------------------------------------------- graph
def _needs(x: Any) -> bool:
    return isinstance(x, Tensor) and x.requires_grad


def make(value: Any, parents: Sequence[Any], vjp: Callable[[Any], Sequence[Any]]) -> Tensor:
    """The result of an operation: recorded (``parents`` and ``vjp``) when recording is on
    and some parent needs a gradient, else a plain tensor. ``vjp(g)`` returns one
    gradient (or None) per parent, already summed to the parent's shape."""
    if grad_enabled() and any(_needs(p) for p in parents):
        return Tensor(value, tuple(parents), vjp, True)
    return Tensor(value)


def constant(value: Any) -> Tensor:
    """A tensor that no gradient flows through (the result of a non-differentiable op)."""
    return Tensor(value)


def _order(output: Tensor) -> list[Tensor]:
    """Nodes reachable from ``output`` that need gradients, parents before children."""
    order, seen = [], set()
    stack: list[tuple[Tensor, bool]] = [(output, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in node.parents:
            if _needs(p) and id(p) not in seen:
                stack.append((p, False))
    return order


def gradients(output: Tensor, sources: Sequence[Tensor], output_grad: Any = None) -> list[Any]:
    """d(output)/d(source) contracted with ``output_grad`` (ones by default) for each of
    ``sources``, as arrays of the sources' shapes (zeros where no path leads)."""
    if not isinstance(output, Tensor):
        raise TypeError(f"gradients: the output must be a Tensor, got {type(output).__name__}")
    xp = xp_of(output)
    out_v = output.value
    g0 = xp.ones_like(out_v) if output_grad is None else xp.asarray(value_of(output_grad), dtype=out_v.dtype)
    if g0.shape != out_v.shape:
        g0 = xp.broadcast_to(g0, out_v.shape)
    grads: dict[int, Any] = {id(output): g0}
    if output.requires_grad:
        for node in reversed(_order(output)):
            g = grads.pop(id(node), None) if not any(node is s for s in sources) else grads.get(id(node))
            if g is None or node.vjp is None:
                continue
            for p, pg in zip(node.parents, node.vjp(g)):
                if pg is None or not _needs(p):
                    continue
                k = id(p)
                grads[k] = pg if k not in grads else grads[k] + pg
    result = []
    for s in sources:
        g = grads.get(id(s))
        result.append(xp_of(s).zeros_like(s.value) if g is None else g)
    return result


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` (the gradient of a broadcast result) back to an input's ``shape``."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x)) if not isinstance(x, Tensor) else x.shape


def _val(x: Any, xp: Any) -> Any:
    """The raw value: tensors unwrapped, lists made arrays (floats as float32, Keras' floatx)."""
    if isinstance(x, Tensor):
        return x.value
    if isinstance(x, (list, tuple)):
        a = np.asarray(x)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        return xp.asarray(a)
    return x


# ---------------------------------------------------------------------------- primitives
def add(a: Any, b: Any) -> Tensor:
    xp = xp_of(a, b)
    av, bv = _val(a, xp), _val(b, xp)
    sa, sb = _shape(av), _shape(bv)
    return make(av + bv, (a, b), lambda g: (unbroadcast(g, sa), unbroadcast(g, sb)))


def subtract(a: Any, b: Any) -> Tensor:
    xp = xp_of(a, b)
    av, bv = _val(a, xp), _val(b, xp)
    sa, sb = _shape(av), _shape(bv)
    return make(av - bv, (a, b), lambda g: (unbroadcast(g, sa), unbroadcast(-g, sb)))


def multiply(a: Any, b: Any) -> Tensor:
    xp = xp_of(a, b)
    av, bv = _val(a, xp), _val(b, xp)
    sa, sb = _shape(av), _shape(bv)
    return make(av * bv, (a, b),
                lambda g: (unbroadcast(g * bv, sa) if _needs(a) else None,
                           unbroadcast(g * av, sb) if _needs(b) else None))


def divide(a: Any, b: Any) -> Tensor:
    xp = xp_of(a, b)
    av, bv = _val(a, xp), _val(b, xp)
    sa, sb = _shape(av), _shape(bv)
    out = av / bv
    return make(out, (a, b),
                lambda g: (unbroadcast(g / bv, sa) if _needs(a) else None,
                           unbroadcast(-g * out / bv, sb) if _needs(b) else None))


def negative(a: Any) -> Tensor:
    return make(-_val(a, xp_of(a)), (a,), lambda g: (-g,))


def power(a: Any, b: Any) -> Tensor:
    xp = xp_of(a, b)
    av, bv = _val(a, xp), _val(b, xp)
    sa, sb = _shape(av), _shape(bv)
    out = av ** bv

    def vjp(g: Any) -> tuple[Any, Any]:
        ga = unbroadcast(g * bv * av ** (bv - 1), sa) if _needs(a) else None
        gb = None
        if _needs(b):  # d a^b / d b = a^b log a, taken as 0 where a <= 0 (as TensorFlow)
            safe = xp.where(av > 0, av, 1)
            gb = unbroadcast(g * out * xp.log(safe), sb)
        return ga, gb
    return make(out, (a, b), vjp)


def unary(a: Any, f: Callable[[Any], Any], df: Callable[[Any, Any, Any], Any]) -> Tensor:
    """An elementwise op: ``f(x)`` and the VJP ``df(g, x, y)``."""
    av = _val(a, xp_of(a))
    y = f(av)
    return make(y, (a,), lambda g: (df(g, av, y),))


def absolute(a: Any) -> Tensor:
    xp = xp_of(a)
    return unary(a, xp.abs, lambda g, x, y: g * xp.sign(x))


def maximum(a: Any, b: Any) -> Tensor:
    xp = xp_of(a, b)
    av, bv = _val(a, xp), _val(b, xp)
    sa, sb = _shape(av), _shape(bv)
    take_a = av >= bv  # ties send the gradient to the first argument (as TensorFlow)
    return make(xp.maximum(av, bv), (a, b),
                lambda g: (unbroadcast(xp.where(take_a, g, 0), sa), unbroadcast(xp.where(take_a, 0, g), sb)))


def minimum(a: Any, b: Any) -> Tensor:
    xp = xp_of(a, b)
    av, bv = _val(a, xp), _val(b, xp)
    sa, sb = _shape(av), _shape(bv)
    take_a = av <= bv
    return make(xp.minimum(av, bv), (a, b),
                lambda g: (unbroadcast(xp.where(take_a, g, 0), sa), unbroadcast(xp.where(take_a, 0, g), sb)))


def clip(x: Any, lo: Any, hi: Any) -> Tensor:
    xp = xp_of(x)
    xv = _val(x, xp)
    lov, hiv = _val(lo, xp), _val(hi, xp)
    inside = (xv >= lov) & (xv <= hiv)  # the gradient passes where the value is not clipped
    return make(xp.clip(xv, lov, hiv), (x,), lambda g: (xp.where(inside, g, 0),))


def where(c: Any, a: Any, b: Any) -> Tensor:
    xp = xp_of(c, a, b)
    cv, av, bv = _val(c, xp), _val(a, xp), _val(b, xp)
    cv = cv.astype(bool) if hasattr(cv, "astype") else bool(cv)
    sa, sb = _shape(av), _shape(bv)
    out = xp.where(cv, av, bv)
    return make(out, (c, a, b),
                lambda g: (None, unbroadcast(xp.where(cv, g, 0), sa) if _needs(a) else None,
                           unbroadcast(xp.where(cv, 0, g), sb) if _needs(b) else None))


def compare(kind: str, a: Any, b: Any) -> Tensor:
    xp = xp_of(a, b)
    return constant(getattr(xp, kind)(_val(a, xp), _val(b, xp)))


# ---- reductions
def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of bounds for an array of {ndim} dimensions")
        out.append(a % max(ndim, 1))
    return tuple(sorted(set(out)))


def _keep(g: Any, axes: tuple[int, ...], keepdims: bool, xp: Any) -> Any:
    """A reduction's output gradient with the reduced axes back as size 1."""
    return g if keepdims else xp.expand_dims(g, axes) if axes else g


def reduce_sum(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    xp = xp_of(x)
    xv = _val(x, xp)
    axes = _axes(axis, xv.ndim)
    return make(xp.sum(xv, axis=axes, keepdims=keepdims), (x,),
                lambda g: (xp.broadcast_to(_keep(g, axes, keepdims, xp), xv.shape).astype(g.dtype, copy=True),))


def reduce_mean(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    xp = xp_of(x)
    xv = _val(x, xp)
    axes = _axes(axis, xv.ndim)
    count = int(np.prod([xv.shape[a] for a in axes])) if axes else 1
    out = xp.mean(xv, axis=axes, keepdims=keepdims)
    return make(out, (x,), lambda g: (xp.broadcast_to(_keep(g, axes, keepdims, xp) / count, xv.shape),))


def reduce_extreme(x: Any, axis: Any, keepdims: bool, kind: str) -> Tensor:
    """max or min; the gradient is shared equally among tied extremes (as TensorFlow)."""
    xp = xp_of(x)
    xv = _val(x, xp)
    axes = _axes(axis, xv.ndim)
    fn = xp.max if kind == "max" else xp.min
    kept = fn(xv, axis=axes, keepdims=True)
    out = kept if keepdims else (xp.squeeze(kept, axis=axes) if axes else kept)

    def vjp(g: Any) -> tuple[Any]:
        hit = (xv == kept).astype(g.dtype)
        return (hit * _keep(g, axes, keepdims, xp) / hit.sum(axis=axes, keepdims=True),)
    return make(out, (x,), vjp)


def reduce_prod(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    xp = xp_of(x)
    xv = _val(x, xp)
    axes = _axes(axis, xv.ndim)
    out = xp.prod(xv, axis=axes, keepdims=keepdims)

    def vjp(g: Any) -> tuple[Any]:
        # the product of the other elements, exact with zeros: move the reduced axes last,
        # then exclusive cumulative products from the left and from the right
        rest = [a for a in range(xv.ndim) if a not in axes]
        moved = xp.transpose(xv, rest + list(axes))
        flat = moved.reshape(moved.shape[:len(rest)] + (-1,))
        ones = xp.ones(flat.shape[:-1] + (1,), dtype=flat.dtype)
        left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
        right = xp.flip(xp.cumprod(xp.concatenate([ones, xp.flip(flat, -1)[..., :-1]], axis=-1), axis=-1), -1)
        others = (left * right).reshape(moved.shape)
        inverse = np.argsort(rest + list(axes))
        others = xp.transpose(others, tuple(int(i) for i in inverse))
        return (others * _keep(g, axes, keepdims, xp),)
    return make(out, (x,), vjp)


def reduce_std(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The biased standard deviation; where it is 0 (e.g. over a size-1 axis) its
    gradient is taken as 0 (the limit along the data), not 0/0."""
    xp = xp_of(x)
    xv = _val(x, xp)
    axes = _axes(axis, xv.ndim)
    count = int(np.prod([xv.shape[a] for a in axes])) if axes else 1
    d = xv - xp.mean(xv, axis=axes, keepdims=True)
    kept = xp.sqrt(xp.mean(d * d, axis=axes, keepdims=True))
    out = kept if keepdims else (xp.squeeze(kept, axis=axes) if axes else kept)

    def vjp(g: Any) -> tuple[Any]:
        safe = xp.where(kept > 0, kept, 1)
        return (xp.where(kept > 0, _keep(g, axes, keepdims, xp) * d / (count * safe), 0),)
    return make(out, (x,), vjp)


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    xp = xp_of(x)
    xv = _val(x, xp)
    axes = _axes(axis, xv.ndim)
    m = xp.max(xv, axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    kept = m + xp.log(xp.sum(xp.exp(xv - m), axis=axes, keepdims=True))
    out = kept if keepdims else (xp.squeeze(kept, axis=axes) if axes else kept)
    return make(out, (x,), lambda g: (xp.exp(xv - kept) * _keep(g, axes, keepdims, xp),))


# ---- shapes and linear algebra
def reshape(x: Any, shape: Sequence[int]) -> Tensor:
    xp = xp_of(x)
    xv = _val(x, xp)
    return make(xp.reshape(xv, tuple(int(s) for s in shape)), (x,), lambda g: (g.reshape(xv.shape),))


def transpose(x: Any, axes: Sequence[int] | None = None) -> Tensor:
    xp = xp_of(x)
    xv = _val(x, xp)
    perm = tuple(range(xv.ndim))[::-1] if axes is None else tuple(int(a) % max(xv.ndim, 1) for a in axes)
    inverse = tuple(int(i) for i in np.argsort(perm))
    return make(xp.transpose(xv, perm), (x,), lambda g: (xp.transpose(g, inverse),))


def matmul(a: Any, b: Any) -> Tensor:
    xp = xp_of(a, b)
    av, bv = _val(a, xp), _val(b, xp)
    if np.ndim(av) == 0 or np.ndim(bv) == 0:
        raise ValueError("matmul: operands must have at least one dimension (use multiply for scalars)")
    out = xp.matmul(av, bv)

    def vjp(g: Any) -> tuple[Any, Any]:
        # promote 1-D operands as NumPy does, then undo the promotion on the gradients
        a2 = av[None, :] if av.ndim == 1 else av
        b2 = bv[:, None] if bv.ndim == 1 else bv
        g2 = g.reshape(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]))
        ga = gb = None
        if _needs(a):
            ga = xp.matmul(g2, xp.swapaxes(b2, -1, -2))
            ga = unbroadcast(ga, a2.shape).reshape(av.shape)
        if _needs(b):
            gb = xp.matmul(xp.swapaxes(a2, -1, -2), g2)
            gb = unbroadcast(gb, b2.shape).reshape(bv.shape)
        return ga, gb
    return make(out, (a, b), vjp)


def getitem(x: Any, key: Any) -> Tensor:
    xp = xp_of(x)
    xv = _val(x, xp)
    key = _val(key, xp) if isinstance(key, Tensor) else key

    def vjp(g: Any) -> tuple[Any]:
        out = xp.zeros_like(xv, dtype=g.dtype)
        if xp is np:
            np.add.at(out, key, g)
        else:  # pragma: no cover - GPU only
            import cupyx
            cupyx.scatter_add(out, key, g)
        return (out,)
    return make(xv[key], (x,), vjp)


def take_along_axis(x: Any, indices: Any, axis: int) -> Tensor:
    """NumPy's ``take_along_axis``; repeated indices accumulate in the gradient."""
    xp = xp_of(x)
    xv = _val(x, xp)
    iv = xp.asarray(_val(indices, xp)).astype(np.int64)
    out = xp.take_along_axis(xv, iv, axis=axis)
    ax = int(axis) % xv.ndim

    def vjp(g: Any) -> tuple[Any]:
        full = xp.broadcast_to(iv, out.shape)
        index = tuple(full if d == ax else xp.arange(out.shape[d]).reshape([-1 if e == d else 1
                                                                             for e in range(out.ndim)])
                      for d in range(out.ndim))
        res = xp.zeros_like(xv, dtype=g.dtype)
        if xp is np:
            np.add.at(res, index, g)
        else:  # pragma: no cover - GPU only
            import cupyx
            cupyx.scatter_add(res, index, g)
        return (res,)
    return make(out, (x,), vjp)


def cumsum(x: Any, axis: int | None = None) -> Tensor:
    """The cumulative sum along ``axis`` (of the flattened array by default)."""
    xp = xp_of(x)
    xv = _val(x, xp)
    if axis is None:
        flat = reshape(x, (-1,))
        return cumsum(flat, 0)
    out = xp.cumsum(xv, axis=axis)
    return make(out, (x,), lambda g: (xp.flip(xp.cumsum(xp.flip(g, axis), axis=axis), axis),))


def concatenate(xs: Sequence[Any], axis: int = 0) -> Tensor:
    xp = xp_of(*xs)
    vals = [_val(x, xp) for x in xs]
    out = xp.concatenate(vals, axis=axis)
    ax = int(axis) % out.ndim
    bounds = np.cumsum([v.shape[ax] for v in vals])[:-1]
    return make(out, tuple(xs), lambda g: tuple(xp.split(g, [int(b) for b in bounds], axis=ax)))


def stack(xs: Sequence[Any], axis: int = 0) -> Tensor:
    xp = xp_of(*xs)
    vals = [_val(x, xp) for x in xs]
    out = xp.stack(vals, axis=axis)
    ax = int(axis) % out.ndim
    return make(out, tuple(xs), lambda g: tuple(xp.take(g, i, axis=ax) for i in range(len(vals))))


def cast(x: Any, dtype: Any) -> Tensor:
    """A cast; differentiable between floating types (the gradient is cast back)."""
    xp = xp_of(x)
    xv = xp.asarray(_val(x, xp))
    out = xv.astype(dtype)
    if not (np.issubdtype(np.dtype(out.dtype), np.floating) and np.issubdtype(np.dtype(xv.dtype), np.floating)):
        return constant(out)
    return make(out, (x,), lambda g: (g.astype(xv.dtype),))


def stop_gradient(x: Any) -> Tensor:
    """The value of ``x`` with no gradient flowing back through it."""
    return constant(_val(x, xp_of(x)))


def erf(x: Any) -> Tensor:
    """The error function (SciPy's/CuPy's where installed)."""
    xp = xp_of(x)
    if xp is np:
        try:
            from scipy.special import erf as f
        except ImportError:  # pragma: no cover - SciPy is a dependency of the test extra only
            import math
            f = np.vectorize(math.erf, otypes=[np.float64])
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.special import erf as f
    av = xp.asarray(_val(x, xp))
    y = xp.asarray(f(av)).astype(av.dtype if av.dtype.kind == "f" else np.float32)
    c = 2.0 / np.sqrt(np.pi)
    return make(y, (x,), lambda g: (g * (c * xp.exp(-av * av)).astype(y.dtype),))


def value_and_grad(fn: Callable[..., Any], *args: Any) -> tuple[Any, list[Any]]:
    """``fn(*args)`` (a scalar) and its gradient w.r.t. each argument, as arrays: the
    arguments become leaf tensors, so ``fn`` may be written with ``keras.ops``."""
    leaves = [a if isinstance(a, Tensor) and a.requires_grad else Tensor(xp_of(a).asarray(value_of(a)),
                                                                         requires_grad=True) for a in args]
    out = fn(*leaves)
    if not isinstance(out, Tensor):
        raise TypeError(f"value_and_grad: {getattr(fn, '__name__', fn)!r} must return a tensor computed from "
                        f"its arguments, got {type(out).__name__}")
    return out.value, gradients(out, leaves)
