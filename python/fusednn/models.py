"""The Sequential model's structure: its layers, shapes, weights, config, summary.

A model is bound to the backend that is active when it is built (when its
input size becomes known) and does all its arithmetic there. Training
(compile / fit / evaluate / predict) is the :class:`~fusednn.training.Trainer`
it inherits; saving and export delegate to :mod:`fusednn.saving`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import registry, saving
from .backends import Backend, get_backend
from .layers import REGISTRY as LAYERS, InputLayer, Layer, unique_name
from .layers.symbolic import KerasTensor, is_symbolic
from .saving import load_model, save_model  # noqa: F401 - keras.models.load_model, keras.models.save_model
from .training import Trainer


class Sequential(Trainer):
    """A linear stack of layers, Keras' ``Sequential``: ``add`` layers (an ``Input`` or
    the first layer's ``input_shape`` fixes the input size, else the first data does),
    ``compile`` with an optimizer and a loss, then ``fit``, ``evaluate``, ``predict``
    (those come from :class:`~fusednn.training.Trainer`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registry.MODELS.register(cls)

    def __init__(self, layers: Sequence[Layer | InputLayer] | None = None, name: str | None = None) -> None:
        super().__init__()
        self.name = name or unique_name("sequential")
        self.layers: list[Layer] = []
        self.built = False
        #: JSON-serialisable information that ``save`` writes with the model and ``load_model`` restores
        self.metadata: dict[str, Any] = {}
        self._input_dim: int | None = None
        self._output_dim: int | None = None
        self._backend: Backend | None = None
        self._params: list[Any] = []
        self._grads: list[Any] = []
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------ construction
    def add(self, layer: Layer | InputLayer, rebuild: bool = True) -> None:
        """Append a layer (or, first of all, an ``Input``); builds it as soon as the
        model's input size is known (``rebuild`` is Keras' argument: building here is cheap
        and always done)."""
        if isinstance(layer, KerasTensor) and layer.is_input:  # keras.Input(...)
            layer = layer.layer
        if isinstance(layer, InputLayer):
            if self.layers or self._input_dim is not None:
                raise ValueError("an Input must be the first thing added to a Sequential model")
            self._input_dim = layer.input_dim
            self._input_sample_shape = getattr(layer, "sample_shape", None)
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add takes a Layer, got {type(layer).__name__}")
        if not self.layers and self._input_dim is None:
            self._input_dim = layer.input_dim
        self.layers.append(layer)
        if self._input_dim is not None:
            self._build(self._input_dim)

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Build for inputs of ``input_shape``: (batch, features) as in Keras, batch may be None."""
        shape = tuple(input_shape)
        if len(shape) not in (1, 2) or shape[-1] is None:
            raise ValueError(f"input_shape must be (batch, features) or (features,), got {shape}")
        self._build(int(shape[-1]))

    def pop(self, rebuild: bool = True) -> Layer:
        """Remove and return the last layer, as Keras' ``Sequential.pop``; the model is
        rebuilt without it (the other layers keep their weights)."""
        if not self.layers:
            raise IndexError(f"model {self.name!r} has no layers to pop")
        layer = self.layers.pop()
        if self.layers and self._input_dim is not None:
            self.built = False
            self._build(self._input_dim)
        else:
            self.built, self._output_dim, self._params, self._grads = False, None, [], []
            self.reset_buffers()
        return layer

    def _build(self, input_dim: int) -> None:
        if self.built and input_dim != self._input_dim:
            raise ValueError(f"model {self.name!r} is built for {self._input_dim} input features, got {input_dim}")
        be = self._backend or get_backend()
        dim = input_dim
        for layer in self.layers:
            if not layer.built:
                layer.build(dim)
            elif layer.backend is not be:
                raise RuntimeError(f"layer {layer.name!r} was built on backend {layer.backend.name!r} but the "
                                   f"model is on {be.name!r}; build a new layer")
            elif layer.input_dim != dim:
                raise ValueError(f"layer {layer.name!r} takes {layer.input_dim} features but gets {dim}")
            dim = layer.output_dim(dim)
        self._backend, self._input_dim, self._output_dim = be, input_dim, dim
        self._params = [w for layer in self.layers for w in layer.weights]
        self._grads = [g for layer in self.layers for g in layer.grads]
        self.reset_buffers()
        self.built = bool(self.layers)

    # ------------------------------------------------------------ public state
    @property
    def backend(self) -> Backend | None:
        """The backend the model is built on (None until it is built)."""
        return self._backend

    @property
    def input_shape(self) -> tuple[None, int] | None:
        """``(None, features)`` as in Keras, once the input size is known (else None)."""
        return (None, self._input_dim) if self._input_dim is not None else None

    @property
    def output_shape(self) -> tuple[None, int] | None:
        """``(None, outputs)`` as in Keras, once the model is built (else None)."""
        return (None, self._output_dim) if self.built else None

    @property
    def weights(self) -> list[Any]:
        """The model's weight arrays themselves (backend arrays, Keras order; empty until
        built): writing into them changes the model. :meth:`get_weights` gives copies."""
        return list(self._params)

    @property
    def weight_names(self) -> list[str]:
        """Keras' variable names of :attr:`weights`, in that order: the attribute of the
        layer that holds each ('kernel', 'bias', ...); what an optimizer's
        ``exclude_from_weight_decay(var_names=...)`` matches."""
        return [name for layer in self.layers for name in _weight_names(layer)]

    # ------------------------------------------------------------ trainable
    @property
    def trainable(self) -> bool:
        """Keras' ``model.trainable``: setting it sets every layer's ``trainable`` (takes
        effect at the next ``compile``); False also freezes layers added later."""
        return getattr(self, "_trainable", True)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for layer in self.layers:
            layer.trainable = bool(value)

    @property
    def trainable_weights(self) -> list[Any]:
        """Keras' ``trainable_weights``: the weights of the layers whose ``trainable`` is True."""
        if not self.trainable:
            return []
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[Any]:
        """Keras' ``non_trainable_weights``: frozen layers' weights and state weights
        (BatchNormalization's moving statistics)."""
        if not self.trainable:
            return [w for layer in self.layers for w in layer.all_weights]
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    @property
    def optimized_weights(self) -> list[Any]:
        """The weights the optimizer updates: those of the layers not frozen at the last
        ``compile`` (:meth:`trained_layers`), in :attr:`weights` order."""
        return [w for layer in self.trained_layers() for w in layer.weights]

    @property
    def optimized_gradients(self) -> list[Any]:
        """The gradient arrays of :attr:`optimized_weights`, in that order."""
        return [g for layer in self.trained_layers() for g in layer.grads]

    @property
    def optimized_weight_names(self) -> list[str]:
        """Keras' variable names of :attr:`optimized_weights`."""
        return [name for layer in self.trained_layers() for name in _weight_names(layer)]

    # ------------------------------------------------------------ lookup
    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """Keras' ``get_layer``: the layer called ``name``, or at ``index`` in :attr:`layers`
        (give exactly one); ValueError naming the existing layers when there is none."""
        if name is not None and index is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: index={index}, name={name}.")
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has "
                                 f"{len(self.layers)} layers.")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in self.layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    @property
    def inputs(self) -> list[KerasTensor] | None:
        """Keras' ``model.inputs``: the symbolic input tensors (one for a Sequential
        model), None until the input shape is known."""
        if self._input_dim is None:
            return None
        if getattr(self, "_input_tensor", None) is None or self._input_tensor.features != self._input_dim:
            shape = getattr(self, "_input_sample_shape", None) or (self._input_dim,)
            self._input_tensor = InputLayer(shape=shape).output
        return [self._input_tensor]

    @property
    def outputs(self) -> list[KerasTensor] | None:
        """Keras' ``model.outputs``: the symbolic output tensors, None until built."""
        if not self.built:
            return None
        return [KerasTensor((None, self._output_dim), layer=self.layers[-1])]

    @property
    def gradients(self) -> list[Any]:
        """The gradient arrays backward passes write, one per weight array in
        :attr:`weights` order (backend arrays; the optimizer reads them)."""
        return list(self._grads)

    @property
    def output_activation(self) -> str:
        """The activation of the last layer ('linear' for a layer without one, and for a
        custom layer: its ``call`` applies any activation itself, so no loss may fold it)."""
        last = self.layers[-1]
        if getattr(last, "not_fused_reason", None):
            return "linear"
        return getattr(last, "activation", "linear")

    def __call__(self, x: Any, training: bool = False) -> Any:
        """The model's output for ``x`` in one batch, as an array of the model's backend
        (NumPy, or CuPy on the GPU), as calling a Keras model gives a tensor; ``training``
        runs the training behaviour of Dropout/BatchNormalization (the moving statistics
        of a BatchNormalization move, as in Keras). On a symbolic tensor (functional API)
        the model's layers are applied to it in turn (see :meth:`symbolic_call`)."""
        if is_symbolic(x):
            return self.symbolic_call(x, training)
        x = (self._backend or get_backend()).asarray(self.check_samples(x))
        for layer in self.layers:
            buf = layer.make_buffers(x.shape[0])
            x = layer.forward(x, buf, training=bool(training)) if layer.uses_training else layer.forward(x, buf)
        return x

    def symbolic_call(self, inputs: Any, training: Any = None) -> Any:
        """A model called on symbolic tensors inside another functional model: its layers
        are applied to them in turn, so the outer model holds (and trains) the same layer
        objects. ``training=False`` (Keras' transfer-learning idiom: run the inner model in
        inference mode) is refused for a model whose Dropout-like layers would still act
        (freeze it with ``trainable = False``, which makes BatchNormalization infer)."""
        refuse_inference_call(self, training)
        x = inputs
        for layer in self.layers:
            x = layer(x)
        return x

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list[np.ndarray]:
        """NumPy copies of all weights in Keras order: each Dense's kernel
        (inputs, units), then its bias (units,)."""
        return [w for layer in self.layers if layer.built for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set all weights from arrays in :meth:`get_weights` order; their number and
        shapes are checked before anything is written."""
        if not self.built:
            raise ValueError(f"model {self.name!r} is not built yet; call build() or fit it first")
        weights = list(weights)
        total = sum(len(layer.all_weights) for layer in self.layers)
        if len(weights) != total:
            raise ValueError(f"set_weights: the model has {total} weight arrays, got {len(weights)}")
        i = 0
        for layer in self.layers:
            for w in layer.all_weights:
                shape = tuple(np.shape(weights[i]))
                if shape != tuple(w.shape):
                    raise ValueError(f"set_weights: array {i} (layer {layer.name!r}) must have shape "
                                     f"{tuple(w.shape)}, got {shape}")
                i += 1
        i = 0
        for layer in self.layers:
            k = len(layer.all_weights)
            layer.set_weights(weights[i:i + k])
            i += k

    def count_params(self) -> int:
        """Total number of weights."""
        if not self.built:
            raise ValueError(f"model {self.name!r} is not built yet, so it has no parameters")
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn: Callable[[str], Any] | None = None) -> None:
        """Print a table of layers (name and type), output shapes and parameter counts."""
        if not self.built:
            raise ValueError(f"model {self.name!r} is not built yet: give the first layer an input_shape, "
                             "start with an Input, call build(), or fit it first")
        print_fn = print_fn or print
        widths = (33, 25, 12)

        def row(*cells: str) -> str:
            return "".join(c.ljust(w) for c, w in zip(cells[:2], widths)) + cells[2].rjust(widths[2])

        total = self.count_params()
        fixed = sum(int(w.size) for w in self.non_trainable_weights)
        lines = [f'Model: "{self.name}"', "_" * sum(widths), row("Layer (type)", "Output Shape", "Param #"),
                 "=" * sum(widths)]
        dim = self._input_dim
        for layer in self.layers:
            dim = layer.output_dim(dim)
            lines.append(row(f"{layer.name} ({type(layer).__name__})", f"(None, {dim})",
                             f"{layer.count_params():,}"))
        lines += ["=" * sum(widths), f"Total params: {total:,} ({total * 4 / 1024:.2f} KB)",
                  f"Trainable params: {total - fixed:,}", f"Non-trainable params: {fixed:,}", "_" * sum(widths)]
        for line in lines:
            print_fn(line)

    # ------------------------------------------------------------ saving and export
    def get_config(self) -> dict[str, Any]:
        """Keras' Sequential config: the name, the input shape ``[None, features]`` (None
        until known) and each layer as ``{"class_name": ..., "config": ...}``."""
        return {"name": self.name,
                "input_shape": [None, self._input_dim] if self._input_dim is not None else None,
                "layers": [registry.serialize(layer, LAYERS) for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, type] | None = None) -> "Sequential":
        """A new model from :meth:`get_config`'s output, built on the active backend when
        the config has an input shape (with fresh weights: ``load_model`` sets saved ones)."""
        model = cls(name=config.get("name"))
        shape = config.get("input_shape")
        if shape is not None:
            model.add(InputLayer(shape=tuple(shape[1:])))
        for spec in config["layers"]:
            model.add(registry.deserialize(spec, LAYERS, custom_objects))
        return model

    def save(self, filepath: str, overwrite: bool = True, include_optimizer: bool = True) -> None:
        """Save the architecture, weights, compile settings, ``metadata`` and (with
        ``include_optimizer``) the optimizer state to one ``.npz`` file that loads
        without running code; see :mod:`fusednn.saving` and :func:`load_model`."""
        saving.save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def save_weights(self, filepath: str, overwrite: bool = True) -> None:
        """Save only the weights (in the same file format; :meth:`load_weights` reads it)."""
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath: str) -> None:
        """Set the weights from a file of :meth:`save_weights` or :meth:`save`."""
        saving.load_weights(self, filepath)

    def export_onnx(self, filepath: str, opset: int = 17) -> None:
        """Write the model as an ONNX graph (float32, input "input" of shape (batch,
        features), output "output", any batch size) for ONNX runtimes; needs the
        ``onnx`` extra. See :mod:`fusednn.saving.onnx`."""
        from .saving import onnx

        onnx.export(self, filepath, opset=opset)


registry.MODELS.register(Sequential)


def refuse_inference_call(model: Any, training: Any) -> None:
    """NotImplementedError when ``model`` is called symbolically with ``training=False``
    and has a layer that acts in training other than a frozen BatchNormalization: the
    graph cannot keep a per-call inference mode."""
    if training is not False:
        return
    active = [layer.name for layer in model.layers if layer.uses_training
              and not (type(layer).__name__ == "BatchNormalization" and not layer.trainable)]
    if active:
        raise NotImplementedError(f"calling model {model.name!r} with training=False inside another model is not "
                                  f"supported while its layers {active} act in training (a frozen "
                                  "BatchNormalization already runs in inference mode)")


def _weight_names(layer: Layer) -> list[str]:
    """Keras' variable names of ``layer.weights``: the attribute of the layer that holds
    each ('kernel', 'bias', ...), or a custom layer's ``add_weight`` names."""
    own = getattr(layer, "variable_names", None)
    if own is not None:
        return list(own)
    return [next((k for k, v in vars(layer).items() if v is w and not k.startswith("_")), "weight")
            for w in layer.weights]

