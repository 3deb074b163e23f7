"""Keras' ``Model``: the functional API and subclassed models.

``Model(inputs, outputs)`` takes symbolic tensors (``keras.Input`` and layer calls on
them, see :mod:`fusednn.layers.symbolic`) and walks back from the outputs to the
layer graph. A subclass of ``Model`` with ``call(self, inputs, training=None)`` is
traced once, on its first data (or ``build``), by calling ``call`` on a symbolic input:
the layers it calls become the graph.

A graph that is a single chain of layers (one input, one output, no merges) *is* a
Sequential model: it runs exactly the Sequential code, the fused native trainer
included, and gives the same numbers bit for bit. Any other graph (merges, several
inputs) runs as graph blocks of the fused CPU trainer where its layers allow, else the
per-op path (several outputs do), and ``model.fused_reason`` says why. Several
inputs are packed side by side into one array at the boundary (so shuffling, batching
and validation splits work as for one input) and split again inside the forward pass;
several outputs likewise, with one loss per output (:class:`OutputLosses`).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import losses as losses_module, metrics as metrics_module, registry
from .backends import Backend, get_backend
from .layers import REGISTRY as LAYERS, InputLayer, Layer, unique_name
from .layers.merging import Merge
from .layers.symbolic import KerasTensor, is_symbolic
from .models import Sequential, refuse_inference_call
from .training import inputs as checks, sample_weights
from .training.epoch_metrics import EpochMetrics


def _flatten(struct: Any, what: str) -> tuple[list[KerasTensor], Any]:
    """The tensors of a tensor / list / tuple / dict, and the structure's keys (None for
    one tensor, a list of None for a list, the keys for a dict)."""
    if isinstance(struct, KerasTensor):
        return [struct], None
    if isinstance(struct, dict):
        items = list(struct.items())
        keys: Any = [k for k, _ in items]
        tensors = [t for _, t in items]
    elif isinstance(struct, (list, tuple)):
        keys, tensors = [None] * len(struct), list(struct)
    else:
        raise TypeError(f"Model {what} must be a symbolic tensor (keras.Input or a layer's output) or a list/dict "
                        f"of them, got {type(struct).__name__}")
    if not tensors:
        raise ValueError(f"Model {what} is empty")
    for t in tensors:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"Model {what} must hold symbolic tensors, got {type(t).__name__}")
    return tensors, keys


class _Graph:
    """A layer graph in topological order: ``nodes[i]`` is layer ``layers[i]`` applied to
    the tensors numbered ``inbound[i]`` (inputs are 0..k-1, the output of node i is
    k + i); ``outputs`` numbers the model's outputs. With ``input_layers`` (functional
    models, as Keras lists them) each input's InputLayer is a node too: the identity on
    that input, which the layers reading the input read instead."""

    def __init__(self, inputs: list[KerasTensor], outputs: list[KerasTensor], input_layers: bool = True) -> None:
        order: list[KerasTensor] = []
        seen: set[int] = set()
        input_ids = {id(t): j for j, t in enumerate(inputs)}
        for t in inputs:
            if not t.is_input:
                raise ValueError(f"Model inputs must come from keras.Input, got {t!r} (the output of layer "
                                 f"{getattr(t.layer, 'name', None)!r})")

        def visit(t: KerasTensor, path: tuple[int, ...]) -> None:
            if id(t) in seen:
                return
            if id(t) in input_ids:
                if input_layers:
                    seen.add(id(t))
                    order.append(t)
                return
            if t.is_input:
                raise ValueError(f"Graph disconnected: the outputs depend on input {t.name!r}, which is not in "
                                 "the model's inputs")
            if t.layer is None:
                raise ValueError(f"tensor {t!r} was not made by a layer")
            for u in t.inbound:
                visit(u, path + (id(t),))
            seen.add(id(t))
            order.append(t)

        for t in outputs:
            visit(t, ())
        order = _keras_order(order, outputs)
        self.layers: list[Layer] = [t.layer for t in order]
        names = [layer.name for layer in self.layers]
        if len({id(layer) for layer in self.layers}) != len(self.layers):
            dup = next(layer.name for layer in self.layers if sum(x is layer for x in self.layers) > 1)
            raise NotImplementedError(f"layer {dup!r} is called more than once in the graph; shared layers are not "
                                      "supported by fusednn's functional API")
        if len(set(names)) != len(names):
            raise ValueError(f"the model's layers must have unique names, got {names}")
        number = dict(input_ids)
        for i, t in enumerate(order):
            number[id(t)] = len(inputs) + i
        self.inbound: list[list[int]] = [[input_ids[id(t)]] if id(t) in input_ids else [number[id(u)] for u in t.inbound]
                                         for t in order]
        self.outputs: list[int] = [number[id(t)] for t in outputs]
        self.n_inputs = len(inputs)
        k = len(inputs)
        #: a chain: one input, one output (the last node), each node on the previous one's output
        self.is_chain = (k == 1 and len(outputs) == 1 and bool(order) and self.outputs[0] == k + len(order) - 1
                         and all(ins == [k + i - 1 if i else 0] for i, ins in enumerate(self.inbound)))


def _keras_order(topo: list[KerasTensor], outputs: list[KerasTensor]) -> list[KerasTensor]:
    """Keras' layer order of a graph (``model.layers``, hence ``get_weights``): by depth
    (the longest path to an output), deepest first, ties by first visit in a pre-order
    walk from the outputs, as Keras' ``map_graph`` sorts them. ``topo`` is a topological
    order of the nodes."""
    index: dict[int, int] = {}

    def walk(t: KerasTensor) -> None:
        if id(t) in index:
            return
        index[id(t)] = len(index)
        for u in t.inbound:
            walk(u)

    for t in outputs:
        walk(t)
    depth = {id(t): 0 for t in topo}
    for t in reversed(topo):  # consumers before producers
        for u in t.inbound:
            if id(u) in depth:
                depth[id(u)] = max(depth[id(u)], depth[id(t)] + 1)
    return sorted(topo, key=lambda t: (-depth[id(t)], index[id(t)]))


class OutputLosses(losses_module.Loss):
    """The loss of a model with several outputs: ``sum_i loss_weights[i] * losses[i]``
    over the outputs, which the model packs side by side (``pred_cols[i]`` columns each;
    the targets ``target_cols[i]``: 1 for a sparse loss). Each output's loss sees that
    output's (activated) values, as Keras computes it."""

    def __init__(self, losses: list[losses_module.Loss], weights: list[float], pred_cols: list[int],
                 target_cols: list[int]) -> None:
        self.losses, self.loss_weights = losses, [float(w) for w in weights]
        self.pred_cols, self.target_cols = pred_cols, target_cols
        self._scratch: dict[int, Any] = {}

    def get_config(self) -> dict[str, Any]:
        return {"losses": [losses_module.serialize(loss) for loss in self.losses],
                "loss_weights": self.loss_weights, "pred_cols": self.pred_cols, "target_cols": self.target_cols}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "OutputLosses":
        return cls([losses_module.deserialize(c) for c in config["losses"]], config["loss_weights"],
                   config["pred_cols"], config["target_cols"])

    def slices(self, pred: Any, target: Any) -> list[tuple[Any, Any]]:
        """Each output's (pred, target) as contiguous arrays."""
        xp = np if isinstance(pred, np.ndarray) else get_backend().xp
        out, a, b = [], 0, 0
        for pc, tc in zip(self.pred_cols, self.target_cols):
            out.append((xp.ascontiguousarray(pred[:, a:a + pc]), xp.ascontiguousarray(target[:, b:b + tc])))
            a, b = a + pc, b + tc
        return out

    def value(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> None:
        tmp = be.zeros((1,))
        total = be.zeros((1,))
        for loss, w, (p, t) in zip(self.losses, self.loss_weights, self.slices(pred, target)):
            loss.value(be, p, t, tmp, logits=loss.from_logits)
            total += w * tmp
        out[...] = total

    def gradient(self, be: Backend, pred: Any, target: Any, out: Any, logits: bool = False) -> Any:
        a = 0
        for loss, w, (p, t) in zip(self.losses, self.loss_weights, self.slices(pred, target)):
            g = be.empty(p.shape)
            loss.gradient(be, p, t, g, logits=loss.from_logits)
            out[:, a:a + p.shape[1]] = w * g
            a += p.shape[1]
        return out

    def check_targets(self, y: Any, output_dim: int, be: Backend) -> None:
        for loss, pc, (_, t) in zip(self.losses, self.pred_cols, self.slices(y, y)):
            loss.check_targets(t, pc, be)


class _OutputTracker:
    """Per-output losses and metrics of a multi-output model over an epoch, under
    Keras' history names (``<output>_loss``, ``<output>_<metric>``)."""

    def __init__(self, model: "Model") -> None:
        self.loss: OutputLosses = model.loss
        self.names = model.output_names
        self.be = model.backend
        self.trackers = [EpochMetrics(ms, model.backend, pc, loss.sparse, loss.from_logits) if ms else None
                         for ms, pc, loss in zip(model.output_metrics, self.loss.pred_cols, self.loss.losses)]
        self.reset()

    def reset(self) -> None:
        self.sums = [0.0] * len(self.names)
        self.samples = 0
        for t in self.trackers:
            if t is not None:
                t.reset()

    def update(self, pred: Any, target: Any, weights: Any = None) -> None:
        """Add one batch (``weights``: per-sample weights of the batch, or None)."""
        tmp = self.be.zeros((1,))
        n = pred.shape[0]
        for i, (loss, (p, t)) in enumerate(zip(self.loss.losses, self.loss.slices(pred, target))):
            if weights is None:
                loss.value(self.be, p, t, tmp, logits=loss.from_logits)
            else:
                sample_weights.weighted_rows_loss(loss, self.be, p, t, weights, tmp, loss.from_logits,
                                                  self.be.empty((n,)))
            self.sums[i] += float(self.be.to_numpy(tmp)[0]) * n
            if self.trackers[i] is not None:
                self.trackers[i].update(p, t, weights)
        self.samples += n

    def result(self) -> dict[str, float]:
        out = {f"{name}_loss": s / max(self.samples, 1) for name, s in zip(self.names, self.sums)}
        for name, t in zip(self.names, self.trackers):
            if t is not None:
                out.update({f"{name}_{k}": v for k, v in t.result().items()})
        return out


class Model(Sequential):
    """Keras' ``Model``: ``Model(inputs, outputs, name=None)`` over symbolic tensors
    (the functional API: one or several inputs and outputs, as a tensor, list or dict),
    or subclassed with layers as attributes and ``call(self, inputs, training=None)``.
    Training, evaluation, saving and the rest are Sequential's (a chain model is one);
    see the module docstring for what runs fused."""

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None,
                 trainable: bool = True, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"Model() got unexpected keyword arguments {sorted(kwargs)}")
        subclassed = type(self).call is not Model.call
        default = re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower() if subclassed else "functional"
        super().__init__(name=name or unique_name(default))
        self._graph: _Graph | None = None
        self._input_tensors: list[KerasTensor] = []
        self._output_tensors: list[KerasTensor] = []
        self._input_keys: Any = None
        self._output_keys: Any = None
        self.output_metrics: list[list[Any]] = []
        if not trainable:
            self.trainable = False
        if inputs is None and outputs is None:
            if not subclassed:
                raise TypeError("Model() needs inputs= and outputs= (functional API), or subclass Model and "
                                "define call(self, inputs, training=None)")
            return
        if inputs is None or outputs is None:
            raise ValueError("Model(inputs, outputs): give both")
        self._init_graph(inputs, outputs)

    def __setattr__(self, key: str, value: Any) -> None:
        # a subclassed model's layers, in attribute order, until call() is traced
        if isinstance(value, Layer) and not key.startswith("_") and "layers" in self.__dict__ \
                and self.__dict__.get("_graph") is None and value not in self.__dict__["layers"]:
            self.__dict__["layers"].append(value)
        super().__setattr__(key, value)

    # ------------------------------------------------------------------ graph
    def _init_graph(self, inputs: Any, outputs: Any, input_layers: bool = True) -> None:
        ins, self._input_keys = _flatten(inputs, "inputs")
        outs, self._output_keys = _flatten(outputs, "outputs")
        graph = _Graph(ins, outs, input_layers)
        for t in ins:  # InputLayers are layers of the model (the identity): built like the rest
            if not t.layer.built:
                t.layer.build(t.features)
        if not [layer for layer in graph.layers if not isinstance(layer, InputLayer)]:
            raise ValueError("the model has no layers between its inputs and outputs")
        self._graph = graph
        self._input_tensors, self._output_tensors = ins, outs
        self.layers = list(graph.layers)
        if self._trainable_flag() is False:
            for layer in self.layers:
                layer.trainable = False
        first = ins[0]
        if graph.is_chain:
            if first.ndim > 2:
                self._input_sample_shape = tuple(first.shape[1:])
            self.built = False
            Sequential._build(self, first.features)
        else:
            self._build_graph()

    def _trainable_flag(self) -> bool:
        return getattr(self, "_trainable", True)

    def _build_graph(self) -> None:
        be = self.layers[0].backend or get_backend()
        for layer in self.layers:
            if layer.backend is not be:
                raise RuntimeError(f"layer {layer.name!r} was built on backend {layer.backend.name!r}, not "
                                   f"{be.name!r}; build the model's layers on one backend")
        self._backend = be
        self._input_dim = sum(t.features for t in self._input_tensors)
        self._output_dim = sum(t.features for t in self._output_tensors)
        self._params = [w for layer in self.layers for w in layer.weights]
        self._grads = [g for layer in self.layers for g in layer.grads]
        self.reset_buffers()
        self._extra: dict[int, Any] = {}
        self.built = True

    @property
    def graph_reason(self) -> str | None:
        """Why the fused trainer cannot run this model's layer graph whatever its layers
        (several outputs), else None; the fused module judges the rest (several inputs run
        as graph blocks reading their columns of the packed batch)."""
        if self._graph is None or self._graph.is_chain:
            return None
        g = self._graph
        what = []
        if len(g.outputs) > 1:
            what.append(f"{len(g.outputs)} outputs")
        if not what:
            return None
        return (f"a functional model with {' and '.join(what)} runs the per-op path (the fused trainer takes one "
                "output)")

    @property
    def graph_inbound(self) -> list[list[int]] | None:
        """For a layer graph other than a chain (None otherwise): for each layer of
        :attr:`layers`, the indices in :attr:`layers` of the layers whose outputs it takes
        (``-1 - j`` for model input ``j``), in call order."""
        if not self.is_graph:
            return None
        k = self._graph.n_inputs
        return [[j - k if j >= k else -1 - j for j in ins] for ins in self._graph.inbound]

    @property
    def is_graph(self) -> bool:
        """Whether the model is a layer graph other than a chain (per-op path)."""
        return self._graph is not None and not self._graph.is_chain

    def call(self, inputs: Any, training: Any = None) -> Any:
        """A subclass defines the forward pass here, calling its layers on ``inputs``;
        it is traced once on a symbolic input (Python branches on ``training`` are
        taken as for ``training=None``)."""
        raise NotImplementedError("subclass Model and define call(self, inputs, training=None)")

    def add(self, layer: Any) -> None:
        """Not available: a functional or subclassed model's layers are fixed by its graph."""
        raise AttributeError("Model has no add(); use keras.Sequential to stack layers")

    def pop(self) -> Layer:
        """Not available (see :meth:`add`)."""
        raise AttributeError("Model has no pop(); use keras.Sequential")

    def build(self, input_shape: Sequence[int | None]) -> None:
        """A subclassed model: trace ``call`` on a symbolic input of ``input_shape``
        ((batch, features) or (features,)); a functional model is built already."""
        if self._graph is not None:
            return
        shape = tuple(input_shape)
        sample = shape[1:] if len(shape) >= 2 else shape
        if not sample or any(d is None for d in sample):
            raise ValueError(f"input_shape must be (batch, features...) with known sizes, got {shape}")
        from .layers import Input

        x = Input(shape=tuple(int(d) for d in sample))
        try:
            y = self.call(x, training=None)
        except (TypeError, ValueError, NotImplementedError, AttributeError) as e:
            raise type(e)(f"cannot trace {type(self).__name__}.call() on a symbolic input of shape {x.shape}: {e}. "
                          "fusednn traces call() once: it may only call layers (fusednn's, or Layer subclasses) "
                          "on tensors and return their output(s); tensor arithmetic, Python branches on values "
                          "and layers called twice are not supported") from e
        self._init_graph(x, y, input_layers=False)  # Keras lists no InputLayer for a subclassed model

    def _build(self, input_dim: int) -> None:
        if self._graph is None:  # subclassed, not traced yet
            self.build((None, input_dim))
            return
        if self._graph.is_chain:
            Sequential._build(self, input_dim)
        elif input_dim != self._input_dim:
            raise ValueError(f"model {self.name!r} takes {self._input_dim} input features, got {input_dim}")

    # ------------------------------------------------------------ public state
    @property
    def input_names(self) -> list[str]:
        """The input tensors' names (dict keys when the inputs were a dict)."""
        return [k if k is not None else t.name
                for k, t in zip(self._input_keys or [None] * len(self._input_tensors), self._input_tensors)]

    @property
    def output_names(self) -> list[str]:
        """Keras' output names: the output layers' names (dict keys for a dict of outputs)."""
        return [k if k is not None else t.layer.name
                for k, t in zip(self._output_keys or [None] * len(self._output_tensors), self._output_tensors)]

    @property
    def inputs(self) -> list[KerasTensor] | None:
        if self._graph is None:
            return None
        return list(self._input_tensors)

    @property
    def outputs(self) -> list[KerasTensor] | None:
        if self._graph is None:
            return None
        return list(self._output_tensors)

    @property
    def input_shape(self) -> Any:
        """``(None, features)``; a list of them for several inputs (Keras)."""
        if self._graph is None:
            return super().input_shape
        shapes = [tuple(t.shape) for t in self._input_tensors]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self) -> Any:
        # the packed width for several outputs: the trainer works on one packed array
        return super().output_shape

    def _input_features(self) -> int | None:
        return self._input_dim

    @property
    def output_activation(self) -> str:
        if self._graph is None or len(self._output_tensors) > 1:
            return "linear"
        last = self._output_tensors[0].layer
        if getattr(last, "not_fused_reason", None):  # a custom layer applies its activation in call()
            return "linear"
        return getattr(last, "activation", "linear")

    # ------------------------------------------------------------ data at the boundary
    def _ensure_built(self, x: Any) -> None:
        if self._graph is None:
            first = x[0] if isinstance(x, (list, tuple)) else x
            first = np.asarray(first) if not hasattr(first, "shape") else first
            if len(first.shape) < 2:
                first = np.asarray(first).reshape(-1, 1)
            self.build((None, *first.shape[1:]))

    def _flat_samples(self, x: Any, name: str) -> Any:
        """Several inputs (a list in input order, or a dict by input name) packed side by
        side into one float32 array; one input as Sequential takes it."""
        self._ensure_built(x)
        if self._graph.n_inputs == 1:
            if isinstance(x, dict):
                x = self._pick(x, self.input_names, name)[0]
            elif isinstance(x, (list, tuple)) and len(x) == 1 and hasattr(x[0], "shape"):
                x = x[0]
            return super()._flat_samples(x, name)
        parts = self._pick(x, self.input_names, name)
        be = self.backend or get_backend()
        cols = []
        for part, t, key in zip(parts, self._input_tensors, self.input_names):
            a = checks.float32_array(part, f"{name}[{key!r}]", be)
            if a.ndim == 1 and t.features == 1:
                a = a.reshape(-1, 1)
            if tuple(a.shape[1:]) != tuple(t.shape[1:]):
                raise ValueError(f"{name}[{key!r}] has samples of shape {tuple(a.shape[1:])} but input {t.name!r} "
                                 f"takes {tuple(t.shape[1:])}")
            cols.append(a.reshape(a.shape[0], -1))
        if len({c.shape[0] for c in cols}) != 1:
            raise ValueError(f"the inputs in {name} have different numbers of samples: {[c.shape[0] for c in cols]}")
        xp = be.xp if not all(isinstance(c, np.ndarray) for c in cols) else np
        return xp.concatenate(cols, axis=1)

    def _pick(self, data: Any, names: list[str], what: str) -> list[Any]:
        if isinstance(data, dict):
            missing = [k for k in names if k not in data]
            if missing:
                raise ValueError(f"{what} is missing entries for {missing} (the model's are {names})")
            return [data[k] for k in names]
        if isinstance(data, (list, tuple)) and len(data) == len(names) and all(hasattr(d, "__len__") for d in data) \
                and not isinstance(data, np.ndarray):
            return list(data)
        if len(names) == 1:
            return [data]
        raise ValueError(f"{what} must be a list of {len(names)} arrays (in the order {names}) or a dict by name")

    def _xy(self, x: Any, y: Any, xname: str = "x", yname: str = "y") -> tuple[Any, Any]:
        if self._graph is None or len(self._output_tensors) == 1 or not isinstance(self.loss, OutputLosses):
            if self._graph is not None and len(self._output_tensors) == 1 and isinstance(y, dict):
                y = self._pick(y, self.output_names, yname)[0]
            return super()._xy(x, y, xname, yname)
        be = self.backend or get_backend()
        x = checks.samples(self._flat_samples(x, xname), xname, be, self._input_features())
        parts = self._pick(y, self.output_names, yname)
        cols = []
        for part, tc, key in zip(parts, self.loss.target_cols, self.output_names):
            cols.append(checks.targets(part, f"{yname}[{key!r}]", be, x.shape[0], tc))
        xp = np if all(isinstance(c, np.ndarray) for c in cols) else be.xp
        y = xp.concatenate(cols, axis=1)
        checks.check_finite(x, xname, be)
        checks.check_finite(y, yname, be)
        self.loss.check_targets(y, self.output_shape[1], be)
        return x, y

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer: Any, loss: Any, metrics: Any = None, fused: str | bool = "auto",
                loss_weights: Any = None) -> None:
        """Sequential's compile, plus Keras' multi-output forms: ``loss`` a list (output
        order) or dict (by output name) of losses, or one loss for every output;
        ``loss_weights`` a list or dict of floats (default 1 each); ``metrics`` a list of
        lists (one per output), a list of one metric per output, or a dict by output name
        (as in Keras 3, a flat list of another length is an error). A subclassed model not
        traced yet is compiled as a single-output one."""
        multi = self._graph is not None and len(self._output_tensors) > 1
        if not multi:
            if loss_weights is not None:
                w = loss_weights
                w = list(w.values())[0] if isinstance(w, dict) else (w[0] if isinstance(w, (list, tuple)) else w)
                if float(w) != 1.0:
                    raise NotImplementedError("loss_weights other than 1 on a single-output model are not supported")
            if isinstance(loss, dict):
                loss = self._pick(loss, self.output_names, "loss")[0]
            elif isinstance(loss, (list, tuple)) and len(loss) == 1:
                loss = loss[0]
            if isinstance(metrics, dict):
                metrics = self._pick(metrics, self.output_names, "metrics")[0]
            super().compile(optimizer, loss, metrics, fused)
            return
        names = self.output_names
        k = len(names)
        if isinstance(loss, OutputLosses):  # a saved model's compile settings
            loss, loss_weights = list(loss.losses), list(loss.loss_weights)
        if isinstance(loss, (list, tuple)):
            if len(loss) != k:
                raise ValueError(f"loss is a list of {len(loss)} but the model has {k} outputs {names}")
            per = list(loss)
        elif isinstance(loss, dict):
            unknown = [n for n in loss if n not in names]
            if unknown:
                raise ValueError(f"loss names outputs {unknown} the model does not have (its outputs: {names})")
            per = [loss.get(n) for n in names]
        else:
            per = [loss] * k
        weights = [1.0] * k
        if isinstance(loss_weights, (list, tuple)):
            if len(loss_weights) != k:
                raise ValueError(f"loss_weights has {len(loss_weights)} entries for {k} outputs")
            weights = [float(w) for w in loss_weights]
        elif isinstance(loss_weights, dict):
            weights = [float(loss_weights.get(n, 1.0)) for n in names]
        elif loss_weights is not None:
            raise TypeError("loss_weights must be a list or a dict by output name")
        if metrics is None:
            per_metrics: list[list[Any]] = [[] for _ in names]
        elif isinstance(metrics, dict):
            per_metrics = [list(metrics.get(n) or []) if isinstance(metrics.get(n), (list, tuple))
                           else ([metrics[n]] if metrics.get(n) is not None else []) for n in names]
        elif isinstance(metrics, (list, tuple)) and metrics and all(isinstance(m, (list, tuple)) or m is None
                                                                     for m in metrics):
            if len(metrics) != k:
                raise ValueError(f"metrics is a list of {len(metrics)} lists for {k} outputs")
            per_metrics = [list(m or []) for m in metrics]
        elif isinstance(metrics, (list, tuple)) and len(metrics) == k:  # Keras: one metric per output
            per_metrics = [[m] if m is not None else [] for m in metrics]
        else:
            raise ValueError(f"Invalid `metrics`: for a model with outputs {names}, give a dict by output name, "
                             f"a list of {k} lists (one per output) or a list of {k} metrics; got {metrics!r}")
        super().compile(optimizer, "mse", None, fused)
        objs = []
        for n, spec in zip(names, per):
            if spec is None:  # Keras: an output without a loss does not train
                raise NotImplementedError(f"output {n!r} has no loss; every output needs one")
            objs.append(losses_module.get(spec))
        pred_cols = [t.features for t in self._output_tensors]
        target_cols = [1 if loss.sparse else c for loss, c in zip(objs, pred_cols)]
        self.loss = OutputLosses(objs, weights, pred_cols, target_cols)
        self.output_metrics = [[metrics_module.get(m) for m in ms] for ms in per_metrics]
        self.metrics = [m for ms in self.output_metrics for m in ms]

    def _sample_weights(self, sample_weight: Any, class_weight: Any, y: Any) -> np.ndarray | None:
        if class_weight is not None and isinstance(self.loss, OutputLosses):
            raise ValueError("class_weight is not supported for a model with several outputs (as in Keras); "
                             "pass sample_weight")
        return super()._sample_weights(sample_weight, class_weight, y)

    def _tracker(self) -> Any:
        if isinstance(self.loss, OutputLosses):
            return _OutputTracker(self)
        return super()._tracker()

    # ------------------------------------------------------------------ compute
    def _forward(self, x: Any, ws: Any, logits: bool = False, training: bool = False) -> Any:
        if not self.is_graph:
            return super()._forward(x, ws, logits, training)
        g = self._graph
        xp = self.backend.xp
        if g.n_inputs == 1:
            vals = [x]
        else:
            vals, at = [], 0
            for t in self._input_tensors:
                vals.append(xp.ascontiguousarray(x[:, at:at + t.features]))
                at += t.features
        last = g.outputs[0] - g.n_inputs if len(g.outputs) == 1 else -1
        for i, (layer, buf, ins) in enumerate(zip(self.layers, ws.layers, g.inbound)):
            args = [vals[j] for j in ins]
            a = args if isinstance(layer, Merge) else args[0]
            if layer.uses_training:
                y = layer.forward(a, buf, training=training)
            elif logits and i == last:
                y = layer.forward(a, buf, True)
            else:
                y = layer.forward(a, buf)
            vals.append(y)
        if len(g.outputs) == 1:
            return vals[g.outputs[0]]
        return xp.concatenate([vals[j] for j in g.outputs], axis=1)

    def _backward(self, dy: Any, ws: Any) -> None:
        if not self.is_graph:
            return super()._backward(dy, ws)
        g = self._graph
        k = g.n_inputs
        xp = self.backend.xp
        grads: list[Any] = [None] * (k + len(self.layers))
        if len(g.outputs) == 1:
            grads[g.outputs[0]] = dy
        else:
            at = 0
            for j, t in zip(g.outputs, self._output_tensors):
                part = xp.ascontiguousarray(dy[:, at:at + t.features])
                grads[j] = part if grads[j] is None else grads[j] + part
                at += t.features
        for i in range(len(self.layers) - 1, -1, -1):
            gy = grads[k + i]
            if gy is None:
                continue
            layer, ins = self.layers[i], g.inbound[i]
            need = any(j >= k for j in ins)
            dx = layer.backward(gy, ws.layers[i], need)
            if not need:
                continue
            for j, d in zip(ins, dx if isinstance(layer, Merge) else [dx]):
                if j >= k:  # out of place: d may be a buffer another gradient aliases
                    grads[j] = d if grads[j] is None else grads[j] + d

    def __call__(self, x: Any, training: bool = False) -> Any:
        """Predictions for ``x`` in one batch (backend arrays; a list, or a dict by output
        name, for several outputs); on symbolic tensors: not supported (nesting models)."""
        if is_symbolic(x):
            return self.symbolic_call(x, training)
        if not self.is_graph:
            return super().__call__(x, training=training)
        x = self.backend.asarray(self.check_samples(x))
        ws = SimpleNamespace(layers=[layer.make_buffers(x.shape[0]) for layer in self.layers])
        out = self._forward(x, ws, training=bool(training))
        return self._split_outputs(out)

    def symbolic_call(self, inputs: Any, training: Any = None) -> Any:
        """This model's graph replayed on other symbolic tensors (a model used as a layer
        of another functional model): each of its layers is called on the tensors that
        correspond to its inputs; returns the outputs in the model's structure."""
        if self._graph is None:
            first = inputs[0] if isinstance(inputs, (list, tuple)) else \
                (next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)
            self.build(first.shape)
        refuse_inference_call(self, training)
        g = self._graph
        given = self._pick(inputs, self.input_names, "the inputs")
        vals: list[Any] = []
        for t, u in zip(self._input_tensors, given):
            if not isinstance(u, KerasTensor) or tuple(u.shape[1:]) != tuple(t.shape[1:]):
                raise ValueError(f"model {self.name!r} input {t.name!r} takes shape {t.shape}, got {u!r}")
            vals.append(u)
        for layer, ins in zip(self.layers, g.inbound):
            args = [vals[j] for j in ins]
            if isinstance(layer, InputLayer):  # the new input itself
                vals.append(args[0])
                continue
            vals.append(layer(args if isinstance(layer, Merge) else args[0]))
        outs = [vals[j] for j in g.outputs]
        if len(outs) == 1:
            return outs[0]
        if self._output_keys is not None and any(k is not None for k in self._output_keys):
            return dict(zip(self.output_names, outs))
        return outs

    def _split_outputs(self, out: Any) -> Any:
        if len(self._output_tensors) == 1:
            return out
        parts, at = [], 0
        for t in self._output_tensors:
            parts.append(out[:, at:at + t.features])
            at += t.features
        if self._output_keys is not None and any(k is not None for k in self._output_keys):
            return dict(zip(self.output_names, parts))
        return parts

    def predict(self, x: Any, batch_size: int | None = 32, verbose: int | str = "auto",
                steps: int | None = None) -> Any:
        """Sequential's predict; with several outputs, a list of arrays (a dict by output
        name when the outputs were given as a dict), as Keras."""
        out = super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps)
        return self._split_outputs(out) if self._graph is not None else out

    # ------------------------------------------------------------------ summary
    def _tensor_names_shapes(self) -> tuple[list[str], list[list[Any]]]:
        """The producing layer's name and the shape of every tensor of the graph, by number."""
        names = [t.layer.name for t in self._input_tensors]
        shapes = [list(t.shape) for t in self._input_tensors]
        for layer, ins in zip(self.layers, self._graph.inbound):
            names.append(layer.name)
            if isinstance(layer, InputLayer):
                shapes.append(shapes[ins[0]])
            else:
                shapes.append([None, layer.output_dim() if isinstance(layer, Merge) else
                               layer.output_dim(layer.input_dim)])
        return names, shapes

    def summary(self, print_fn: Callable[[str], Any] | None = None) -> None:
        """Keras' functional summary: each layer (InputLayers included) with its output
        shape, parameter count and (for a graph) the layers it is connected to; then the
        total, trainable and non-trainable parameter counts."""
        if not self.built:
            raise ValueError(f"model {self.name!r} is not built yet: call it on data or build() it first")
        print_fn = print_fn or print
        g = self._graph
        connect = not g.is_chain
        widths = (33, 25, 12, 25) if connect else (33, 25, 12)
        names, shapes = self._tensor_names_shapes()

        def row(*cells: str) -> str:
            text = "".join(c.ljust(w) for c, w in zip(cells[:2], widths)) + cells[2].rjust(widths[2])
            return text + ("  " + cells[3] if connect else "")

        def shape_text(shape: list[Any]) -> str:
            return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"

        header = ("Layer (type)", "Output Shape", "Param #", "Connected to")
        lines = [f'Model: "{self.name}"', "_" * sum(widths), row(*header), "=" * sum(widths)]
        k = g.n_inputs  # (a traced subclassed model lists no InputLayer, as Keras)
        for i, layer in enumerate(self.layers):
            inbound = "-" if isinstance(layer, InputLayer) else ", ".join(f"{names[j]}[0][0]" for j in g.inbound[i])
            lines.append(row(f"{layer.name} ({type(layer).__name__})", shape_text(shapes[k + i]),
                             f"{layer.count_params():,}", inbound))
        total = self.count_params()
        fixed = sum(int(w.size) for w in self.non_trainable_weights)
        lines += ["=" * sum(widths), f"Total params: {total:,} ({total * 4 / 1024:.2f} KB)",
                  f"Trainable params: {total - fixed:,}", f"Non-trainable params: {fixed:,}", "_" * sum(widths)]
        for line in lines:
            print_fn(line)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Keras' functional config: ``name``, ``trainable``, ``layers`` in
        :attr:`layers` order (each with ``class_name``, ``config``, ``name`` and
        ``inbound_nodes`` in Keras 3's ``{"args": [...], "kwargs": {}}`` form; InputLayers
        with ``batch_shape``), ``input_layers`` and ``output_layers`` as ``[name, 0, 0]``
        lists (a dict for dict inputs/outputs). A subclassed model's traced graph is
        written the same way (its InputLayers first, and ``"fusednn_traced": true``)."""
        if self._graph is None:
            raise ValueError(f"model {self.name!r} is not built yet (a subclassed model is traced on its first data)")
        g = self._graph
        names, shapes = self._tensor_names_shapes()

        def tensor(j: int) -> dict[str, Any]:
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": shapes[j], "dtype": "float32", "keras_history": [names[j], 0, 0]}}

        def input_entry(layer: InputLayer) -> dict[str, Any]:
            return {"module": "keras.layers", "class_name": "InputLayer", "config": layer.get_config(),
                    "registered_name": None, "name": layer.name, "inbound_nodes": []}

        traced = not any(isinstance(layer, InputLayer) for layer in self.layers)
        layers = [input_entry(t.layer) for t in self._input_tensors] if traced else []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, InputLayer):
                layers.append(input_entry(layer))
                continue
            spec = registry.serialize(layer, LAYERS)
            args = [[tensor(j) for j in g.inbound[i]]] if isinstance(layer, Merge) else [tensor(g.inbound[i][0])]
            layers.append({"module": "keras.layers", **spec, "registered_name": None, "name": layer.name,
                           "inbound_nodes": [{"args": args, "kwargs": {}}]})

        def ends(keys: Any, numbers: list[int]) -> Any:
            refs = [[names[j], 0, 0] for j in numbers]
            if keys is not None and any(k is not None for k in keys):
                return dict(zip(keys, refs))
            return refs

        config = {"name": self.name, "trainable": self.trainable, "layers": layers,
                  "input_layers": ends(self._input_keys, list(range(g.n_inputs))),
                  "output_layers": ends(self._output_keys, g.outputs)}
        if traced:
            config["fusednn_traced"] = True
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, type] | None = None) -> "Model":
        """A functional model from :meth:`get_config`'s output (Keras' functional config),
        its layers fresh (``load_model`` sets saved weights). A saved subclassed model
        comes back as a functional model of the same graph."""
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("a functional model config needs a 'layers' list")
        made: dict[str, KerasTensor] = {}
        for spec in config["layers"]:
            if not isinstance(spec, dict):
                raise ValueError(f"bad layer entry in the model config: {spec!r:.200}")
            name = spec.get("name") or spec.get("config", {}).get("name")
            if spec.get("class_name") == "InputLayer":
                c = spec.get("config", {})
                shape = c.get("batch_shape") or c.get("batch_input_shape")
                if not isinstance(shape, list) or len(shape) < 2:
                    raise ValueError(f"InputLayer {name!r} has no batch_shape")
                from .layers import Input

                made[name] = Input(shape=tuple(shape[1:]), name=name)
                continue
            layer = registry.deserialize({"class_name": spec["class_name"], "config": spec["config"]}, LAYERS,
                                         custom_objects)
            nodes = spec.get("inbound_nodes") or []
            if len(nodes) != 1:
                raise NotImplementedError(f"layer {name!r} has {len(nodes)} inbound nodes; fusednn's functional "
                                          "models call each layer once")
            args = nodes[0].get("args") if isinstance(nodes[0], dict) else None
            if not isinstance(args, list) or not args:
                raise ValueError(f"layer {name!r}: inbound node without args")
            refs = args[0]
            if isinstance(refs, list):
                x: Any = [made[_history(r)] for r in refs]
            else:
                x = made[_history(refs)]
            made[name] = layer(x)

        def ends(refs: Any) -> Any:
            if isinstance(refs, dict):
                return {k: made[v[0]] for k, v in refs.items()}
            if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str):
                return made[refs[0]]
            return [made[r[0]] for r in refs]

        ins, outs = ends(config["input_layers"]), ends(config["output_layers"])
        if isinstance(ins, list) and len(ins) == 1:
            ins = ins[0]
        if isinstance(outs, list) and len(outs) == 1:
            outs = outs[0]
        model = Model(ins, outs, name=config.get("name"))
        if config.get("fusednn_traced"):  # a saved subclassed model: its layers without InputLayers, as saved
            model._init_graph(ins, outs, input_layers=False)
        if config.get("trainable") is False:
            model.trainable = False
        return model


def _history(ref: Any) -> str:
    """The producing layer's name of a serialized tensor reference."""
    if isinstance(ref, dict) and ref.get("class_name") == "__keras_tensor__":
        return ref["config"]["keras_history"][0]
    if isinstance(ref, list) and ref and isinstance(ref[0], str):
        return ref[0]
    raise ValueError(f"cannot read a tensor reference from {ref!r:.200}")

