"""Layers users write as in Keras: a subclass of ``keras.layers.Layer`` with ``build(input_shape)``
creating weights by ``self.add_weight(...)`` and ``call(inputs)`` written with ``keras.ops``.

:class:`~fusednn.layers.base.Layer` hands every subclass that defines ``call`` (and not the
built-in layers' ``forward``) to :func:`adapt`, which gives it what a model calls on a
layer: ``build`` from a feature count, ``output_dim`` (from ``compute_output_shape``, else
by running ``call`` once on a one-row input), and ``forward``/``backward`` on the per-op path.
In training, ``forward`` runs ``call`` on a recorded :class:`fusednn.autodiff.Tensor` and
``backward`` asks :mod:`fusednn.autodiff` for the input gradient and the gradients of the
trainable weights, which it writes into ``grads`` for the optimizer. Such a model never
runs in the fused native trainer (it cannot run Python per step): ``model.fused_reason``
names the layer. Weights made by ``add_weight`` are ordinary layer weights (in
``get_weights``/``set_weights``, saved with the model); ``self.<attr>`` holds a
:class:`~fusednn.autodiff.Variable` over the live array.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any

import numpy as np

from .. import autodiff as ad
from .. import initializers, regularizers
from ..backends import get_backend

# The base class, handed over by adapt(): base.py imports this module, so this one cannot
# import base.py back (imports run one way)
Layer: Any = None

#: Keras' layer keyword arguments a custom layer may pass on to ``super().__init__``
_KERAS_KWARGS = ("trainable", "dtype", "autocast", "input_shape", "input_dim", "batch_input_shape")


def keras_kwargs(layer: Any, kwargs: dict[str, Any]) -> None:
    """Apply the Keras layer arguments ``Layer.__init__`` does not take by name
    (``trainable``, ``dtype``, ``autocast``); anything else is a TypeError naming it."""
    for key, value in kwargs.items():
        if key == "trainable":
            layer.trainable = bool(value)
        elif key == "dtype":
            name = getattr(value, "name", value)
            if name not in (None, "float32"):
                raise NotImplementedError(f"layer {layer.name!r}: dtype {name!r} is not supported (fusednn layers "
                                          "compute in float32)")
        elif key == "autocast":
            pass  # float32 throughout: nothing to cast
        else:
            raise TypeError(f"{type(layer).__name__}.__init__() got an unexpected keyword argument {key!r} "
                            f"(Keras' layer arguments taken: name, {', '.join(_KERAS_KWARGS)})")


def is_keras_style(cls: type, base: type) -> bool:
    """Whether ``cls`` (a subclass of the layer base class ``base``) is a layer written as
    in Keras: it defines ``call`` and not ``forward``."""
    return getattr(cls, "call", None) is not None and cls.forward in (base.forward, _Methods.forward)


def adapt(cls: type, base: type) -> None:
    """Give a Keras-style layer class the model-facing methods (see the module docstring);
    ``base`` is the layer base class."""
    global Layer
    Layer = base
    build = cls.build
    if not getattr(build, "_fusednn_keras_build", False):
        cls.build = _wrap_build(build)
    for name in ("forward", "backward", "output_dim", "add_penalties", "penalty"):
        if name not in cls.__dict__:
            setattr(cls, name, getattr(_Methods, name))
    cls.uses_training = True
    if "variable_names" not in cls.__dict__:
        cls.variable_names = property(lambda self: [v.name for v in _all_variables(self) if v.trainable])
    if "not_fused_reason" not in cls.__dict__:
        cls.not_fused_reason = property(lambda self: (
            f"custom layer {self.name!r} ({type(self).__name__}) runs its call() in Python, differentiated by "
            "fusednn.autodiff each step, which the fused trainer cannot do"))


def _wrap_build(user_build: Any) -> Any:
    @functools.wraps(user_build)
    def build(self: Any, input_shape: Any) -> None:
        if self.__dict__.get("_in_build"):  # super().build(input_shape) from inside the user's build
            if user_build is not Layer.build:
                user_build(self, input_shape)
            return
        dim = int(input_shape) if isinstance(input_shape, (int, np.integer)) else input_shape[-1]
        if dim is None:
            raise ValueError(f"layer {self.name!r}: the input's feature count must be known to build it")
        Layer.build(self, int(dim))
        self._in_build = True
        try:
            if user_build is not Layer.build:
                user_build(self, (None, int(dim)))
        finally:
            self._in_build = False
        self.built = True
        _check_sublayers(self)
        if _held_layers(self):  # run call once so that the layers it holds build (as Keras does on first call)
            self.output_dim(int(dim))
        _sync_weights(self)
    build._fusednn_keras_build = True
    return build


def _held_layers(layer: Any) -> list[tuple[str, Any]]:
    """(attribute, layer) for the layers held in the layer's attributes (or lists of them)."""
    out, seen = [], set()
    for key, value in vars(layer).items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, Layer) and id(item) not in seen:
                seen.add(id(item))
                out.append((key, item))
    return out


def _check_sublayers(layer: Any) -> None:
    for key, item in _held_layers(layer):
        if not is_keras_style(type(item), Layer):
            raise NotImplementedError(
                f"custom layer {layer.name!r} ({type(layer).__name__}) holds the built-in layer {item.name!r} "
                f"({type(item).__name__}) in self.{key}: only layers written with build/call and keras.ops can be "
                "used inside a custom layer; create the weights with self.add_weight, or put the layer in the model")


def _variables(layer: Any) -> list[ad.Variable]:
    return layer.__dict__.setdefault("_keras_variables", [])


def _all_variables(layer: Any) -> list[ad.Variable]:
    """The layer's own variables, then those of the custom layers it holds (recursively)."""
    out = list(_variables(layer))
    for _, item in _held_layers(layer):
        out.extend(_all_variables(item))
    return out


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a recorded keras.ops tensor (what a custom layer's call receives)."""
    return isinstance(x, ad.Tensor)


def call_on_tensor(layer: Any, x: Any, training: Any = None) -> Any:
    """A layer called on a tensor inside a custom layer's ``call``: a custom layer runs its
    ``call`` (recorded into the outer layer's graph; built on first use); a built-in layer
    is refused by name."""
    if not is_keras_style(type(layer), Layer):
        raise NotImplementedError(f"the built-in layer {layer.name!r} ({type(layer).__name__}) cannot be called "
                                  "inside a custom layer's call(); write that part with keras.ops and add_weight")
    if x.ndim != 2:
        raise ValueError(f"layer {layer.name!r} takes (batch, features) tensors, got shape {x.shape}")
    if not layer.built:
        layer.build(int(x.shape[-1]))
    return _run_call(layer, x, bool(training))


def add_weight(layer: Any, shape: Any = None, initializer: Any = None, dtype: Any = None, trainable: bool = True,
               autocast: bool = True, regularizer: Any = None, constraint: Any = None, aggregation: str = "none",
               overwrite_with_gradient: bool = False, name: str | None = None) -> ad.Variable:
    """Keras' ``Layer.add_weight``: a float32 weight of ``shape`` filled by ``initializer``
    (a Keras name, an initializer object or a callable ``fn(shape, dtype)``; Keras' default
    is glorot_uniform), trained unless ``trainable=False``, with an optional
    ``regularizer`` (its penalty joins the loss); returns its :class:`Variable`."""
    dname = getattr(dtype, "name", dtype)
    if dname not in (None, "float32"):
        raise NotImplementedError(f"add_weight(dtype={dname!r}) is not supported: layer weights are float32")
    if constraint is not None:
        raise NotImplementedError(f"add_weight(constraint=...) is not supported on custom layers "
                                  f"(layer {layer.name!r})")
    if aggregation not in ("none", "mean", "sum", "only_first_replica") or overwrite_with_gradient:
        raise NotImplementedError("add_weight: aggregation/overwrite_with_gradient are not supported")
    shape = () if shape is None else tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"add_weight: shape must have non-negative sizes, got {shape}")
    if initializer is None:
        initializer = "glorot_uniform"
    if isinstance(initializer, (str, dict, initializers.Initializer)):
        value = initializers.get(initializer)(shape)
    elif callable(initializer):
        value = initializer(shape, dtype="float32")
    else:
        raise TypeError(f"add_weight: initializer must be a name, an initializer or a callable, "
                        f"got {type(initializer).__name__}")
    value = ad.value_of(value)
    if hasattr(value, "get") and not isinstance(value, np.ndarray):  # a CuPy array
        value = value.get()
    value = np.asarray(value, dtype=np.float32)
    if value.shape != shape:
        value = np.broadcast_to(value, shape)
    be = layer.backend or get_backend()
    arr = be.xp.array(value, dtype=np.float32)  # always its own array: the optimizer updates it in place
    vars_ = _variables(layer)
    if name is None:
        name = f"variable_{len(vars_)}"
    var = ad.Variable(arr, trainable=trainable, name=name, path=f"{layer.name}/{name}")
    var.regularizer = regularizers.get(regularizer) if isinstance(regularizer, (str, dict)) else regularizer
    vars_.append(var)
    _sync_weights(layer)
    return var


def _sync_weights(layer: Any) -> None:
    """The layer's weight lists from its variables: trainable ones (with gradient arrays)
    in ``weights``/``grads``, the others in ``non_trainable_weights``; Keras' order."""
    be = layer.backend or get_backend()
    old = {id(w): g for w, g in zip(layer.weights, layer.grads)}
    variables = _all_variables(layer)
    train = [v for v in variables if v.trainable]
    layer.weights = [v.value for v in train]
    layer.grads = [old.get(id(v.value)) if id(v.value) in old else be.xp.zeros_like(v.value) for v in train]
    layer.non_trainable_weights = [v.value for v in variables if not v.trainable]


def _takes(fn: Any, arg: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return arg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _run_call(layer: Any, x: Any, training: bool) -> Any:
    kwargs = {"training": training} if _takes(layer.call, "training") else {}
    try:
        return layer.call(x, **kwargs)
    except TypeError as e:
        if "ufunc" in str(e) or "Tensor" in str(e):
            raise TypeError(f"custom layer {layer.name!r} ({type(layer).__name__}).call: {e}; write call() with "
                            "keras.ops (NumPy functions cannot differentiate it)") from e
        raise


def _check_out(layer: Any, out: Any, batch: int) -> Any:
    v = ad.value_of(out)
    shape = tuple(np.shape(v))
    if len(shape) != 2 or shape[0] != batch:
        raise ValueError(f"custom layer {layer.name!r} ({type(layer).__name__}).call returned shape {shape} for an "
                         f"input of {batch} rows: layers in fusednn map (batch, features) to (batch, features)")
    return v


class _Methods:
    """The methods :func:`adapt` installs (unless the class defines its own)."""

    def output_dim(self: Any, input_dim: int) -> int:
        cache = self.__dict__.setdefault("_out_dims", {})
        if input_dim in cache:
            return cache[input_dim]
        own = getattr(type(self), "compute_output_shape", None)
        if own is not None and own is not getattr(Layer, "compute_output_shape", None):
            shape = tuple(self.compute_output_shape((None, int(input_dim))))
            if len(shape) != 2 or shape[-1] is None:
                raise ValueError(f"custom layer {self.name!r}: compute_output_shape must give (batch, features), "
                                 f"got {shape}")
            dim = int(shape[-1])
        else:  # run call once on one row of zeros
            if not self.built:
                self.build(int(input_dim))
            x = (self.backend or get_backend()).zeros((1, int(input_dim)))
            with ad.no_grad(), np.errstate(all="ignore"):  # only the shape matters: no warnings from zeros
                out = _run_call(self, ad.Tensor(x), False)
            dim = int(_check_out(self, out, 1).shape[1])
        cache[input_dim] = dim
        return dim

    def forward(self: Any, x: Any, buf: Any, training: bool = False) -> Any:
        record = bool(training) and ad.grad_enabled()
        xt = ad.Tensor(x, requires_grad=record)
        with (contextlib.nullcontext() if record else ad.no_grad()):
            out = _run_call(self, xt, bool(training))
        y = _check_out(self, out, x.shape[0])
        if tuple(y.shape) != tuple(buf.y.shape):
            raise ValueError(f"custom layer {self.name!r} returned shape {tuple(y.shape)}, expected "
                             f"{tuple(buf.y.shape)} (from its output_dim)")
        buf.y[...] = y
        self._tape = (xt, out) if record and isinstance(out, ad.Tensor) else None
        return buf.y

    def backward(self: Any, dy: Any, buf: Any, need_dx: bool) -> Any:
        tape = self.__dict__.get("_tape")
        train = [v for v in _all_variables(self) if v.trainable]
        if tape is None:  # the output did not depend on anything recorded
            for g in self.grads:
                g[...] = 0
            xg = None
        else:
            xt, out = tape
            grads = ad.gradients(out, [xt, *train], dy)
            for dst, g in zip(self.grads, grads[1:]):
                dst[...] = g
            xg = grads[0]
        self._tape = None
        if not need_dx:
            return None
        if buf.dx is None:
            buf.dx = self.backend.empty((buf.batch, self.input_dim))
        buf.dx[...] = 0 if xg is None else xg
        return buf.dx

    def penalty(self: Any) -> float:
        total = 0.0
        for v in _all_variables(self):
            reg = getattr(v, "regularizer", None)
            if reg is not None:
                with ad.no_grad():
                    total += float(ad.value_of(reg(ad.Tensor(v.value))))
        return total

    def add_penalties(self: Any, loss_out: Any) -> None:
        train = [v for v in _all_variables(self) if v.trainable]
        for v, g in zip(train, self.grads):
            reg = getattr(v, "regularizer", None)
            if reg is None:
                continue
            if isinstance(reg, regularizers.Regularizer) and type(reg).__call__ is regularizers.Regularizer.__call__:
                xp = self.backend.xp
                w = v.value
                loss_out[0] += np.float32(reg.l1) * xp.abs(w).sum() + np.float32(reg.l2) * (w * w).sum()
                g += np.float32(reg.l1) * xp.sign(w) + np.float32(2 * reg.l2) * w
                continue
            leaf = ad.Tensor(v.value, requires_grad=True)
            p = reg(leaf)
            if not isinstance(p, ad.Tensor):
                raise TypeError(f"the regularizer of {v.path!r} must be written with keras.ops (it returned "
                                f"{type(p).__name__}, which cannot be differentiated)")
            loss_out[0] += p.value
            g += ad.gradients(p, [leaf])[0]
