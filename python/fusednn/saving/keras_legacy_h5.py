"""Keras' legacy HDF5 model file: ``model.save("x.h5")`` / ``"x.hdf5"`` and
``load_model`` of such a file, written by Keras 3, tf.keras 2.x or fusednn.

The layout (Keras 3's ``keras/src/legacy/saving/legacy_h5_format.py``): root attributes
``keras_version``, ``backend``, ``model_config`` (the model's config as JSON, in Keras'
legacy spelling: layers without ``module``/``build_config``) and, for a compiled model
saved with its optimizer, ``training_config`` (loss, metrics, loss_weights and
``optimizer_config``); group ``model_weights`` with attribute ``layer_names`` and per
layer a group whose ``weight_names`` attribute lists its datasets by relative path
(Keras 3: ``sequential/dense/kernel``; tf.keras 2.x: ``dense/kernel:0``), in the order
trainable then non-trainable weights; group ``optimizer_weights`` with ``weight_names``
(``adam/iteration``, ``adam/learning_rate``, ``adam/<variable path>_momentum``, ...) in
Keras 3's variable order. Keras 3 reads the layer weights by position (the layers that
have weights, in order) and the optimizer's by position too.

Reading is as defensive as :mod:`.keras_archive`: the config is JSON of bounded size,
translated by :mod:`.keras_config` (Keras 2 spellings through
:func:`.keras_config.from_legacy_model`; no Lambda, unknown classes are a ValueError
naming them, nothing imported or run); every weight is reached through hard links only,
and :class:`.keras_h5.WeightsFile`'s checks apply (contiguous float datasets of the shapes
the config implies, sizes checked before reading). tf.keras 2.x optimizer state (a
different variable layout) is not restored: the optimizer starts fresh, with a warning.
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import utils
from ..distribution import state as distribution_state
from ..files import write_atomically
from . import keras_archive, keras_config, keras_h5
from .checks import read_regular_file
from .model_file import metric_names

if TYPE_CHECKING:
    from ..models import Sequential

#: the largest JSON attribute (model_config, training_config) read
MAX_JSON_BYTES = 64 << 20
#: the most entries a ``layer_names``/``weight_names`` attribute may hold. HDF5 keeps
#: these as variable-length strings whose lengths cannot be checked before reading, so a
#: crafted file that points every entry at one large string could cost up to this many
#: times the file's size; the bound keeps that finite (Keras models have far fewer layers)
MAX_NAMES = 4096
#: what the ``backend`` attribute says of a file fusednn wrote (Keras reads and ignores it)
BACKEND = "fusednn"
#: Keras 3's warning (logged, as Keras logs it) when a model is saved as legacy HDF5
LEGACY_WARNING = ("You are saving your model as an HDF5 file via `model.save()` or "
                  "`keras.saving.save_model(model)`. This file format is considered legacy. We recommend using "
                  "instead the native Keras format, e.g. `model.save('my_model.keras')` or "
                  "`keras.saving.save_model(model, 'my_model.keras')`. ")

_log = logging.getLogger("fusednn")


def _json_constant(token: str) -> None:
    raise ValueError(f"it holds {token}, which is not valid JSON")


def is_legacy_file(data: bytes) -> bool:
    """Whether HDF5 bytes ``data`` hold a legacy Keras model or weights file (a
    ``model_weights`` group, or ``layer_names`` at the root as tf.keras' ``save_weights``
    wrote) rather than Keras 3's ``.weights.h5`` layout; never raises."""
    if not data.startswith(keras_h5.HDF5_SIGNATURE):
        return False
    try:
        h5py = keras_h5.require_h5py()
        with h5py.File(io.BytesIO(data), "r") as f:
            return "model_config" in f.attrs or "layer_names" in f.attrs or \
                isinstance(f.get("model_weights", getlink=True), h5py.HardLink)
    except Exception:  # noqa: BLE001 - unreadable: the weights reader says why
        return False


# ------------------------------------------------------------------------------ reading
_NAME = re.compile(r"[^/\x00]{1,255}(/[^/\x00]{1,255}){0,15}")


class LegacyFile(keras_h5.WeightsFile):
    """A legacy HDF5 model file seen through :class:`.keras_h5.WeightsFile`'s interface:
    ``layers/<key>/vars/<i>`` is weight ``i`` of the layer named ``names[key]`` (in its
    group's ``weight_names`` order), ``optimizer/vars/<i>`` the ``i``-th entry of
    ``optimizer_weights``; every access is checked as the archive reader checks it."""

    def __init__(self, data: bytes, label: str, names: Mapping[str, str] | None = None,
                 root: str | None = "model_weights") -> None:
        super().__init__(data, label)
        self.names = dict(names or {})
        self.root = root

    # -- attributes
    def attr(self, node: Any, name: str, limit: int) -> Any:
        """Attribute ``name`` of ``node`` (None if absent), its size checked first."""
        try:
            if name not in node.attrs:
                return None
            aid = node.attrs.get_id(name)
            if aid.shape is not None and int(np.prod(aid.shape, dtype=np.int64)) > limit:
                raise ValueError(f"{self.label}: attribute {name!r} holds more than {limit} entries")
            n = int(np.prod(aid.shape, dtype=np.int64)) if aid.shape is not None else 0
            if n and aid.dtype.itemsize * n > self.size:  # fixed-size values: inside the file
                raise ValueError(f"{self.label}: attribute {name!r} declares more bytes than the file holds")
            return node.attrs[name]
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 - damaged attributes surface as many error types
            raise ValueError(f"{self.label}: cannot read attribute {name!r}: {type(e).__name__}: {e}") from None

    def json_attr(self, name: str) -> Any:
        """Root attribute ``name`` parsed as JSON (None if absent)."""
        value = self.attr(self.file, name, MAX_JSON_BYTES)
        if value is None:
            return None
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value[()]
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="strict")
        if not isinstance(value, str):
            raise ValueError(f"{self.label}: attribute {name!r} is not a JSON string")
        if len(value) > MAX_JSON_BYTES:
            raise ValueError(f"{self.label}: attribute {name!r} is larger than {MAX_JSON_BYTES} bytes")
        try:
            return json.loads(value, parse_constant=_json_constant)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"{self.label}: attribute {name!r} is not valid JSON: {e}") from None

    def names_attr(self, node: Any, name: str) -> list[str]:
        """A list-of-names attribute (``layer_names``, ``weight_names``), also when Keras
        split it into ``<name>0``, ``<name>1``... because of HDF5's header limit."""
        values = self.attr(node, name, MAX_NAMES)
        if values is None:
            values, i = [], 0
            while (chunk := self.attr(node, f"{name}{i}", MAX_NAMES)) is not None and i < MAX_NAMES:
                values = [*values, *np.asarray(chunk).reshape(-1)]
                i += 1
        out = []
        for v in np.asarray(values).reshape(-1) if not isinstance(values, list) else values:
            v = v.decode("utf-8", errors="strict") if isinstance(v, bytes) else v
            if not isinstance(v, str) or not _NAME.fullmatch(v) or any(p in (".", "..") for p in v.split("/")):
                raise ValueError(f"{self.label}: attribute {name!r} holds {v!r:.100}, not a weight or layer name")
            out.append(v)
        if len(out) > MAX_NAMES:
            raise ValueError(f"{self.label}: attribute {name!r} lists more than {MAX_NAMES} names")
        return out

    # -- the WeightsFile interface, translated
    def _group_of(self, path: str) -> tuple[str | None, list[str] | None]:
        """(real group path, its weight names) of ``layers/<key>/vars`` or ``optimizer/vars``."""
        parts = path.split("/")
        if parts == ["optimizer", "vars"]:
            real = "optimizer_weights"
        elif len(parts) == 3 and parts[0] == "layers" and parts[2] == "vars":
            name = self.names.get(parts[1])
            if name is None:
                return None, None
            real = f"{self.root}/{name}" if self.root else name
        else:
            raise ValueError(f"{self.label}: no such weight {path!r}")
        group = self.node(real)
        if group is None:
            return real, None
        if not isinstance(group, self.h5py.Group):
            raise ValueError(f"{self.label}: {real!r} is not a group")
        return real, self.names_attr(group, "weight_names")

    def count(self, path: str) -> int | None:
        return None if (names := self._group_of(path)[1]) is None else len(names)

    def _dataset(self, path: str) -> Any:
        group, _, index = path.rpartition("/")
        real, names = self._group_of(group)
        if names is None or not index.isdigit() or int(index) >= len(names):
            raise ValueError(f"{self.label}: {path!r} is missing")
        ds = self.node(f"{real}/{names[int(index)]}")
        if ds is None or not isinstance(ds, self.h5py.Dataset):
            raise ValueError(f"{self.label}: {real}/{names[int(index)]} is missing or not a dataset")
        return ds

    def _real(self, path: str) -> str:
        """The dataset's path in the file, for messages (``path`` itself if unknown)."""
        group, _, index = path.rpartition("/")
        try:
            real, names = self._group_of(group)
        except ValueError:
            return path
        return f"{real}/{names[int(index)]}" if names and index.isdigit() and int(index) < len(names) else path

    def read(self, path: str, shape: Any, integer: bool = False) -> np.ndarray:
        try:
            return super().read(path, shape, integer)
        except ValueError as e:  # name the dataset as the file does, not by the archive's layout
            raise ValueError(str(e).replace(repr(path), repr(self._real(path)))) from None

    def dataset_shape(self, path: str) -> tuple[int, ...]:
        try:
            return super().dataset_shape(path)
        except ValueError as e:
            raise ValueError(str(e).replace(repr(path), repr(self._real(path)))) from None


def _layer_name(spec: dict[str, Any]) -> str:
    name = spec.get("name") or (spec.get("config") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {spec.get('class_name')} layer has no name, so its weights cannot be found")
    return name


def load_model(filepath: str | os.PathLike, custom_objects: Mapping[str, type] | None = None,
               compile: bool = True, data: bytes | None = None) -> "Sequential":
    """The model of a legacy HDF5 model file (see the module docstring) on the active
    backend, with its weights and, with ``compile``, its compile settings and (for a
    file of Keras 3 or fusednn) the optimizer's state. ValueError for anything fusednn
    cannot read."""
    label = os.fspath(filepath)
    if data is None:
        data = read_regular_file(label)
    with LegacyFile(data, label) as lf:
        model_config = lf.json_attr("model_config")
        training_config = lf.json_attr("training_config") if compile else None
    if model_config is None:
        raise ValueError(f"{label}: no model config found in the file (a weights file? load it with "
                         "model.load_weights)")
    try:
        doc = keras_config.from_legacy_model(model_config)
        config, classes, kind = keras_config.from_keras_model(doc)
        compute = [s for s in config["layers"] if s["class_name"] != "InputLayer"]
        names = dict(zip(keras_config.weight_keys(classes), (_layer_name(s) for s in compute)))
    except ValueError as e:
        raise ValueError(f"{label}: {e}") from None

    def opener() -> LegacyFile:
        return LegacyFile(data, label, names)

    generator = utils.rng()
    rng_state = generator.bit_generator.state  # building runs initialisers: keep the user's stream
    try:
        model = keras_archive.build_model(label, config, classes, kind, data, custom_objects, opener)
        if training_config is not None:
            try:
                outputs = config.get("output_layers")
                single = kind == "Sequential" or not (isinstance(outputs, (list, dict)) and outputs and (
                    isinstance(outputs, dict) or isinstance(outputs[0], list)) and len(outputs) > 1)
                compile_config = keras_config.from_legacy_training(training_config, single)
            except ValueError as e:
                warnings.warn(f"{label}: the model is loaded without its compile settings: {e}; compile it again "
                              "before training", UserWarning, stacklevel=2)
            else:
                keras_archive.compile_model(model, compile_config, data, label, opener)
    finally:
        generator.bit_generator.state = rng_state
    return model


def load_weights(model: "Sequential", filepath: str | os.PathLike, data: bytes | None = None) -> None:
    """Set ``model``'s weights from a legacy HDF5 model file (or a tf.keras ``.h5``
    weights file) as Keras 3 does: by position, the layers that have weights in order
    against the file's layers that have weights; counts and shapes are checked before
    anything is set. The optimizer's state is not read (Keras does not either)."""
    from ..layers import REGISTRY as LAYERS

    label = os.fspath(filepath)
    if data is None:
        data = read_regular_file(label)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built yet: give it an Input (or build it) before "
                         f"loading weights from {label}")
    with LegacyFile(data, label) as probe:
        root = "model_weights" if probe.node("model_weights") is not None else None
        group = probe.file if root is None else probe.node(root)
        if not isinstance(group, probe.h5py.Group):
            raise ValueError(f"{label}: model_weights is not a group")
        file_layers = probe.names_attr(group, "layer_names")
        weighted = []
        for name in file_layers:
            node = probe.node(f"{root}/{name}" if root else name)
            if node is None or not isinstance(node, probe.h5py.Group):
                raise ValueError(f"{label}: layer {name!r} is listed but has no group")
            if probe.names_attr(node, "weight_names"):
                weighted.append(name)
    layers = [layer for layer in model.layers if layer.all_weights]
    if len(weighted) != len(layers):
        raise ValueError(f"{label}: layer count mismatch when loading weights from file: the model has "
                         f"{len(layers)} layers with weights, the file {len(weighted)}")
    keys = keras_config.weight_keys([LAYERS.name_of(type(layer)) for layer in layers])
    shapes = [[tuple(w.shape) for w in layer.all_weights] for layer in layers]
    with LegacyFile(data, label, dict(zip(keys, weighted)), root) as lf:
        stored = keras_h5.read_layer_weights(lf, keys, shapes)
    for layer, ws in zip(layers, stored):
        layer.set_weights(ws)


# ------------------------------------------------------------------------------ writing
#: per Keras layer class: its weights' names, in Keras' order, with the config switch
#: each depends on
_WEIGHT_NAMES: dict[str, list[tuple[str, str | None]]] = {
    "Dense": [("kernel", None), ("bias", "use_bias")],
    "BatchNormalization": [("gamma", "scale"), ("beta", "center"), ("moving_mean", None),
                           ("moving_variance", None)],
    "LayerNormalization": [("gamma", "scale"), ("beta", "center")],
    "PReLU": [("alpha", None)],
    "Normalization": [("mean", None), ("variance", None), ("count", None)],
}

#: per Keras optimizer class: the names of its per-variable state kinds, in the order
#: :func:`.keras_h5.optimizer_to_keras` writes them (each group interleaved per variable)
_KINDS = {"Adam": ["momentum", "velocity", "velocity_hat"], "AdamW": ["momentum", "velocity", "velocity_hat"],
          "Nadam": ["momentum", "velocity"], "Adadelta": ["accumulated_grad", "accumulated_delta_var"],
          "Adamax": ["momentum", "norm"], "RMSprop": ["velocity", "momentum", "average_gradient"],
          "Adagrad": ["accumulator"], "Lion": ["momentum"], "SGD": ["momentum"]}


def _weight_names(cls: str, config: Mapping[str, Any], n: int) -> list[str]:
    names = [w for w, flag in _WEIGHT_NAMES.get(cls, []) if flag is None or config.get(flag, True) is not False]
    return names if len(names) == n else [f"variable_{i}" for i in range(n)]


def _optimizer_names(opt: Any, paths: list[str], values: list[np.ndarray]) -> list[str]:
    """Keras 3's names of the optimizer variables :func:`.keras_h5.optimizer_to_keras`
    gives (``values``), for model variables at ``paths``."""
    cls, prefix = type(opt).__name__, opt.name
    flat = [p.replace("/", "_") for p in paths]
    names = [f"{prefix}/iteration"]
    if keras_h5.has_lr_variable(opt):
        names.append(f"{prefix}/learning_rate")
    if len(values) > len(names) and paths:
        if getattr(opt, "use_ema", False):
            names += [f"{prefix}/{p}_average" for p in flat]
        kinds = _KINDS.get(cls, [])
        groups = keras_h5.state_groups(opt, len(paths), len(opt.get_state()[1]))
        k = 0
        for g in groups:
            names += [f"{prefix}/{p}_{kind}" for p in flat for kind in kinds[k:k + g]]
            k += g
        if cls == "Nadam":
            names.append("variable")  # Keras' u_product: an unnamed variable outside the optimizer's scope
    if len(names) != len(values):  # a layout this table does not know: still unique, still loads by position
        names = [f"{prefix}/variable_{i}" for i in range(len(values))]
    return names


def _legacy_layer(spec: dict[str, Any]) -> dict[str, Any]:
    """A layer of a Keras 3 ``config.json`` as the legacy serialization writes it."""
    out = {"class_name": spec["class_name"], "config": spec["config"]}
    for key in ("name", "inbound_nodes"):
        if key in spec:
            out[key] = spec[key]
    return out


def legacy_model_config(doc: dict[str, Any]) -> dict[str, Any]:
    """Keras 3's ``config.json`` document as the ``model_config`` Keras writes in a
    legacy HDF5 file: ``{"class_name", "config"}``, layers without ``module``,
    ``registered_name`` and ``build_config``."""
    config = dict(doc["config"])
    config["layers"] = [_legacy_layer(spec) for spec in config["layers"]]
    return {"class_name": doc["class_name"], "config": config}


def _write_names(group: Any, name: str, values: list[str]) -> None:
    """Keras' ``save_attributes_to_hdf5_group`` (one attribute: fusednn's names are short)."""
    if sum(len(v) for v in values) > keras_h5_header_limit():
        raise ValueError(f"{len(values)} names are too long for one HDF5 attribute")
    group.attrs[name] = [v.encode("utf8") for v in values]


def keras_h5_header_limit() -> int:
    return 64512  # Keras' HDF5_OBJECT_HEADER_LIMIT


def _file_bytes(model: "Sequential", include_optimizer: bool) -> bytes:
    from ..layers import REGISTRY as LAYERS

    h5py = keras_h5.require_h5py()
    doc = keras_config.to_keras_model(model)
    model_config = legacy_model_config(doc)
    training_config = None
    compiled = model.optimizer is not None and model.loss is not None
    if include_optimizer and compiled:
        try:
            compile_config = keras_config.to_keras_compile(model, metric_names(model))
        except (TypeError, ValueError, NotImplementedError) as e:
            warnings.warn(f"the compile settings are not saved ({e}); compile again after loading",
                          UserWarning, stacklevel=4)
        else:
            opt = compile_config.pop("optimizer")
            training_config = {**compile_config,
                               "optimizer_config": {"class_name": opt["class_name"], "config": opt["config"]}}
    try:
        texts = {k: json.dumps(v, allow_nan=False).encode("utf8")
                 for k, v in (("model_config", model_config), ("training_config", training_config)) if v is not None}
    except (TypeError, ValueError) as e:
        raise TypeError(f"the model's config is not JSON-serialisable: {e}") from None
    functional = doc["class_name"] == "Functional"
    layer_names = [spec["config"]["name"] if not functional else spec["name"] for spec in doc["config"]["layers"]
                   if functional or spec["class_name"] != "InputLayer"]
    by_name = {layer.name: layer for layer in model.layers}
    paths: dict[int, str] = {}
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["keras_version"] = keras_archive.KERAS_LAYOUT_VERSION
        f.attrs["backend"] = BACKEND
        for k, text in texts.items():
            f.attrs[k] = text
        group = f.create_group("model_weights")
        _write_names(group, "layer_names", layer_names)
        group.attrs["backend"] = BACKEND.encode("utf8")
        group.attrs["keras_version"] = keras_archive.KERAS_LAYOUT_VERSION.encode("utf8")
        for name in sorted(layer_names):  # sorted, as Keras writes them
            layer = by_name.get(name)
            weights = layer.all_weights if layer is not None and layer.built else []
            values = layer.get_weights() if weights else []
            cfg = layer.get_config() if layer is not None else {}
            cls = LAYERS.name_of(type(layer)) if layer is not None else "InputLayer"
            names = [f"{name}/{w}" if functional else f"{model.name}/{name}/{w}"
                     for w in _weight_names(cls, cfg, len(values))]
            paths.update({id(w): n for w, n in zip(weights, names)})
            layer_group = group.create_group(name)
            _write_names(layer_group, "weight_names", names)
            for n, v in zip(names, values):
                layer_group.create_dataset(n, data=np.ascontiguousarray(v, dtype=np.float32))
        _write_names(group.create_group("top_level_model_weights"), "weight_names", [])
        if training_config is not None:
            opt = model.optimizer
            params = keras_archive.optimized_weights(model) if model.built else []
            built = model.built and opt.is_built_for(model.backend, params)
            values = keras_h5.optimizer_to_keras(opt, len(params), built)
            names = _optimizer_names(opt, [paths.get(id(p), f"variable_{i}") for i, p in enumerate(params)]
                                     if built else [], values)
            og = f.create_group("optimizer_weights")
            _write_names(og, "weight_names", names)
            for n, v in zip(names, values):
                og.create_dataset(n, data=v)
    return buf.getvalue()


def save_model(model: "Sequential", filepath: str | os.PathLike, overwrite: bool = True,
               include_optimizer: bool = True) -> None:
    """Write ``model`` as Keras' legacy HDF5 model file, as Keras 3's
    ``model.save("x.h5")`` does (and logs the same warning); ValueError, before anything
    is written, for a model Keras has no built-in classes for. Under data parallelism
    only rank 0 writes."""
    keras_h5.require_h5py()
    _log.warning(LEGACY_WARNING)
    data = _file_bytes(model, include_optimizer)
    if not distribution_state.is_chief():
        return
    write_atomically(filepath, lambda f: f.write(data), overwrite)
