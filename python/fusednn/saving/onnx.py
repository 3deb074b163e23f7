"""Export a Sequential model to ONNX, for ONNX Runtime and other standard runtimes.

The graph takes float32 "input" of shape (batch, features) with a dynamic batch
dimension and gives "output" of shape (batch, outputs). Each layer adds its own
nodes through ``layer.onnx_nodes(builder, x)`` (a Dense layer: Gemm, or MatMul
without a bias, then its activation), so a new layer class becomes exportable
by defining that method. The weights are stored in the graph as float32
initialisers. Needs the ``onnx`` package (``pip install "fusednn[onnx]"``).
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..files import write_atomically

if TYPE_CHECKING:
    from ..models import Sequential

#: activation name -> ONNX operator (linear adds no node; softmax is over the features)
_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}
#: activations that are one opset-17 operator with Keras' constants as attributes
_ACTIVATIONS_WITH_ATTRS = {
    "elu": ("Elu", {"alpha": 1.0}),
    "selu": ("Selu", {"alpha": 1.6732632423543772, "gamma": 1.0507009873554805}),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.2}),
    "softplus": ("Softplus", {}),
    "softsign": ("Softsign", {}),
    "hard_sigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
    "hard_swish": ("HardSwish", {}), "hard_silu": ("HardSwish", {}),
    "exponential": ("Exp", {}),
    "log_softmax": ("LogSoftmax", {"axis": -1}),
}
#: activations written as a few opset-17 operators (see GraphBuilder.activation)
_COMPOSED = ("relu6", "swish", "silu", "mish", "gelu", "gelu_tanh")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError('exporting to ONNX needs the onnx package: pip install "fusednn[onnx]"') from None
    return onnx


class GraphBuilder:
    """Collects the nodes and initialisers of the graph being exported; names of new
    tensors are made unique here, so layers need not coordinate them."""

    def __init__(self) -> None:
        self.onnx = _onnx()
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = {"input", "output"}

    def fresh(self, base: str) -> str:
        """A tensor name not used yet, ``base`` itself when free."""
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def constant(self, name: str, value: Any) -> str:
        """Store ``value`` as a float32 initialiser; returns its tensor name."""
        array = np.ascontiguousarray(value, dtype=np.float32)
        tensor = self.onnx.numpy_helper.from_array(array, self.fresh(name))
        self.initializers.append(tensor)
        return tensor.name

    def node(self, op_type: str, inputs: list[str], **attributes: Any) -> str:
        """Add one ``op_type`` node on the named inputs; returns its output's name."""
        out = self.fresh(op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], name=out, **attributes))
        return out

    def activation(self, name: str, x: str) -> str:
        """Apply activation ``name`` to tensor ``x`` (linear: ``x`` itself)."""
        if name == "linear":
            return x
        if name in _ACTIVATIONS_WITH_ATTRS:
            op, attrs = _ACTIVATIONS_WITH_ATTRS[name]
            return self.node(op, [x], **attrs)
        if name in _COMPOSED:
            return self._composed(name, x)
        try:
            op = _ACTIVATIONS[name]
        except KeyError:
            valid = sorted([*_ACTIVATIONS, *_ACTIVATIONS_WITH_ATTRS, *_COMPOSED])
            raise ValueError(f"activation {name!r} has no ONNX export (exportable: linear, "
                             f"{', '.join(valid)})") from None
        return self.node(op, [x], axis=-1) if op == "Softmax" else self.node(op, [x])

    def _scalar(self, name: str, value: float) -> str:
        return self.constant(name, np.float32(value))

    def _composed(self, name: str, x: str) -> str:
        """The activations without one opset-17 operator, from the ones there are."""
        if name == "relu6":
            return self.node("Clip", [x, self._scalar("relu6_min", 0.0), self._scalar("relu6_max", 6.0)])
        if name in ("swish", "silu"):
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        if name == "mish":
            return self.node("Mul", [x, self.node("Tanh", [self.node("Softplus", [x])])])
        if name == "gelu":  # x * (1 + erf(x / sqrt 2)) / 2
            erf = self.node("Erf", [self.node("Mul", [x, self._scalar("gelu_inv_sqrt2", 0.7071067811865476)])])
            half_x = self.node("Mul", [x, self._scalar("gelu_half", 0.5)])
            return self.node("Mul", [half_x, self.node("Add", [erf, self._scalar("gelu_one", 1.0)])])
        # gelu_tanh: x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), the tanh form without cancellation
        x3 = self.node("Mul", [self.node("Mul", [x, x]), x])
        inner = self.node("Add", [x, self.node("Mul", [x3, self._scalar("gelu_k", 0.044715)])])
        u2 = self.node("Mul", [inner, self._scalar("gelu_2c", 2 * 0.7978845608028654)])
        return self.node("Mul", [x, self.node("Sigmoid", [u2])])


def to_onnx(model: "Sequential", opset: int = 17) -> Any:
    """The model as a checked ``onnx.ModelProto`` (see the module docstring)."""
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built yet: give it an input shape or fit it first")
    if opset < 13:
        raise ValueError(f"opset must be >= 13 (Softmax over the last axis), got {opset}")
    builder = GraphBuilder()
    onnx, helper = builder.onnx, builder.onnx.helper
    x = "input"
    inbound = getattr(model, "graph_inbound", None)
    if inbound is None:
        for layer in model.layers:
            x = layer.onnx_nodes(builder, x)
    else:  # a functional model's layer graph: each layer on the tensors of the layers it reads
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise NotImplementedError("ONNX export of a model with several inputs or outputs is not supported")
        values: list[str] = []
        for layer, ins in zip(model.layers, inbound):
            args = [x if j < 0 else values[j] for j in ins]
            values.append(layer.onnx_nodes(builder, args if len(args) > 1 else args[0]))
        x = values[-1]
    builder.nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    graph = helper.make_graph(
        builder.nodes, model.name,
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", model.input_shape[1]])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["batch", model.output_shape[1]])],
        builder.initializers)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fusednn", producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    if model.metadata:
        helper.set_model_props(proto, {"fusednn_metadata": json.dumps(model.metadata)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model: "Sequential", filepath: str | os.PathLike, opset: int = 17) -> None:
    """Write :func:`to_onnx`'s graph to ``filepath`` (temporary file, then rename)."""
    data = to_onnx(model, opset).SerializeToString()
    write_atomically(filepath, lambda f: f.write(data))
