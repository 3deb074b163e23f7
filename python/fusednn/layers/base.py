"""The layer base class: what every layer is and owns, and the buffers a model gives it.

A layer maps (batch, input_dim) to (batch, output_dim), is built on the backend
active at that moment, implements its own forward and backward pass there, and
never allocates while running: the caller owns one :class:`Buffers` per layer and
batch size. Every subclass registers itself in :data:`REGISTRY` so that saved models
can rebuild it by class name.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from ..registry import Registry

_name_counts: defaultdict[str, int] = defaultdict(int)

#: every Layer subclass by class name, for rebuilding saved models (see fusednn.registry)
REGISTRY = Registry("layer")


def unique_name(prefix: str) -> str:
    """Keras-style automatic names: 'dense', then 'dense_1', 'dense_2', ..."""
    n = _name_counts[prefix]
    _name_counts[prefix] += 1
    return prefix if n == 0 else f"{prefix}_{n}"


def reset_names() -> None:
    """Forget every automatic name handed out, so the next layer is 'dense' again
    (``keras.backend.clear_session`` does this, as in Keras)."""
    _name_counts.clear()


def _snake(name: str) -> str:
    """Keras' to_snake_case: 'Dense' -> 'dense', 'PReLU' -> 'p_re_lu', 'LeakyReLU' -> 'leaky_re_lu'."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def feature_dim(input_shape: Any, input_dim: Any, where: str) -> int | None:
    """The per-sample feature count given by Keras' ``input_shape`` / ``input_dim`` / ``shape``."""
    if input_shape is None and input_dim is None:
        return None
    if input_dim is not None:
        shape = (input_dim,)
    elif isinstance(input_shape, (int, np.integer)):
        shape = (input_shape,)
    else:
        shape = tuple(input_shape)
    if len(shape) != 1 or shape[0] is None or int(shape[0]) < 1:
        raise ValueError(f"{where}: input shape must be (features,) with features >= 1 "
                         f"(dense layers take 2-D input (batch, features)), got {shape}")
    return int(shape[0])


class Buffers:
    """Per-layer arrays for one batch size: the output ``y`` and, allocated on the
    first backward pass, the activation gradient ``dz`` and input gradient ``dx``; ``z``
    holds the pre-activation of a layer whose activation's backward needs it (gelu, swish...)."""

    __slots__ = ("batch", "y", "dz", "dx", "z")

    def __init__(self, batch: int, y: Any) -> None:
        self.batch, self.y, self.dz, self.dx, self.z = batch, y, None, None, None


class Layer:
    """Base class. A layer maps (batch, input_dim) to (batch, output_dim), is built
    for a given ``input_dim`` on the backend active at that moment, and owns its
    ``weights`` and matching ``grads`` (backend arrays, Keras order)."""

    def __init__(self, name: str | None = None, input_shape: Any = None, input_dim: int | None = None) -> None:
        self.name = name or unique_name(_snake(type(self).__name__))
        self.input_dim = feature_dim(input_shape, input_dim, self.name)
        self.backend: Backend | None = None
        self.built = False
        self.weights: list[Any] = []
        self.grads: list[Any] = []
        #: weights that are saved but never trained (BatchNormalization's moving statistics)
        self.non_trainable_weights = []
        #: Keras' ``layer.trainable``: False freezes the weights (the optimizer leaves them
        #: alone from the next ``compile``; a BatchNormalization runs in inference mode)
        self.trainable = True

    # ---- shape and construction --------------------------------------------
    def output_dim(self, input_dim: int) -> int:
        """Features per sample of the output for ``input_dim`` input features."""
        return input_dim

    def build(self, input_dim: int) -> None:
        """Create the weights for ``input_dim`` input features on the active backend."""
        if self.input_dim is not None and self.input_dim != input_dim:
            raise ValueError(f"layer {self.name!r} expects {self.input_dim} input features, got {input_dim}")
        self.input_dim = int(input_dim)
        self.backend = get_backend()
        self.built = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY.register(cls)

    # ---- saving and export ---------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (Keras' layer config); subclasses
        with their own arguments extend it. The input size is the model's to save."""
        config: dict[str, Any] = {"name": self.name}
        if not self.trainable:  # written only when set, so earlier files stay identical
            config["trainable"] = False
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        """A new, unbuilt layer from :meth:`get_config`'s output (``trainable`` is set
        after construction, so subclasses need not take it)."""
        config = dict(config)
        trainable = config.pop("trainable", True)
        layer = cls(**config)
        layer.trainable = bool(trainable)
        return layer

    def onnx_nodes(self, builder: Any, x: str) -> str:
        """Add this layer's ONNX nodes computing from the tensor named ``x`` to
        ``builder`` (a :class:`fusednn.saving.onnx.GraphBuilder`); returns the name of
        the output tensor."""
        raise NotImplementedError(f"layer {self.name!r} ({type(self).__name__}) has no ONNX export; "
                                  "define its onnx_nodes()")

    #: whether forward takes ``training=`` (layers that act only in training: Dropout, BatchNormalization)
    uses_training = False

    @property
    def all_weights(self) -> list[Any]:
        """The trainable-kind weights, then the state ones (Keras' get_weights order)."""
        return [*self.weights, *self._state_weights]

    @property
    def non_trainable_weights(self) -> list[Any]:
        """Keras' ``non_trainable_weights``: the state weights (BatchNormalization's moving
        statistics), and all of :attr:`weights` too while ``trainable`` is False."""
        return [*self._state_weights, *([] if self.trainable else self.weights)]

    @non_trainable_weights.setter
    def non_trainable_weights(self, value: list[Any]) -> None:
        self._state_weights = list(value)

    @property
    def trainable_weights(self) -> list[Any]:
        """Keras' ``trainable_weights``: :attr:`weights` while ``trainable``, else none."""
        return list(self.weights) if self.trainable else []

    def count_params(self) -> int:
        """Number of weights, trainable and not."""
        return sum(int(w.size) for w in self.all_weights)

    def get_weights(self) -> list[np.ndarray]:
        """NumPy copies of the weights, in Keras order (trainable, then non-trainable)."""
        return [np.array(self.backend.to_numpy(w), dtype=np.float32) for w in self.all_weights]

    def set_weights(self, weights: list[Any]) -> None:
        """Copy values into the weights, checking their number and shapes."""
        targets = self.all_weights
        if len(weights) != len(targets):
            raise ValueError(f"layer {self.name!r} has {len(targets)} weight arrays, got {len(weights)}")
        values = [np.asarray(v, dtype=np.float32) for v in weights]
        for w, v in zip(targets, values):
            if tuple(v.shape) != tuple(w.shape):
                raise ValueError(f"layer {self.name!r}: weight of shape {tuple(w.shape)} cannot take "
                                 f"a value of shape {tuple(v.shape)}")
        for w, v in zip(targets, values):
            w[...] = self.backend.asarray(v)

    # ---- compute -------------------------------------------------------------
    def make_buffers(self, batch: int) -> Buffers:
        """Output buffer for ``batch`` samples (training buffers come on first use)."""
        return Buffers(batch, self.backend.empty((batch, self.output_dim(self.input_dim))))

    def forward(self, x: Any, buf: Buffers) -> Any:
        """Compute the output of ``x`` into ``buf.y``, keep what backward needs, return it."""
        raise NotImplementedError

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        """Given the loss gradient ``dy`` w.r.t. the last forward output, write the
        weight gradients into ``grads`` and return the input gradient (None unless
        ``need_dx``: the first layer's is never used)."""
        raise NotImplementedError

    def add_penalties(self, loss_out: Any) -> None:
        """Add the weight penalties (regularizers) to ``loss_out[0]`` and their gradients
        to ``grads``, after :meth:`backward`; layers without regularizers do nothing."""

    def penalty(self) -> float:
        """The current value of the layer's weight penalties (0 without regularizers)."""
        return 0.0

    def apply_constraints(self) -> None:
        """Project the weights onto their constraints in place, after an optimizer update
        (as Keras' optimizer does); layers without constraints do nothing."""

    def __call__(self, x: Any, training: bool = False) -> Any:
        """Apply the layer to a 2-D array (building it on first use); returns a new
        array of the layer's backend (NumPy, or CuPy on the GPU). ``training`` runs
        the training behaviour of layers that have one (Dropout, BatchNormalization).
        On a symbolic tensor (``keras.Input``, or a layer's output) it records the call
        in the graph instead (:meth:`symbolic_call`), as in Keras' functional API."""
        from .symbolic import is_symbolic

        if is_symbolic(x):
            return self.symbolic_call(x, training=training)
        if not self.built:
            self.build(int(np.shape(x)[1]))
        x = self.backend.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"layer {self.name!r} expects input of shape (batch, {self.input_dim}), "
                             f"got {tuple(x.shape)}")
        if self.uses_training:
            return self.forward(x, self.make_buffers(x.shape[0]), training=bool(training))
        return self.forward(x, self.make_buffers(x.shape[0]))

    def symbolic_call(self, inputs: Any, training: Any = None) -> Any:
        """The call on symbolic tensors (functional API): builds the layer for the input's
        features and returns the output :class:`~fusednn.layers.symbolic.KerasTensor`,
        which remembers this layer and its input. Layers with several inputs or another
        output shape override it."""
        from .symbolic import KerasTensor, check_single

        x = check_single(self, inputs)
        dim = x.features
        if not self.built:
            self.build(dim)
        elif self.input_dim != dim:
            raise ValueError(f"layer {self.name!r} takes {self.input_dim} input features, got a tensor of shape "
                             f"{x.shape}")
        return KerasTensor((None, self.output_dim(dim)), layer=self, inbound=(x,))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"
