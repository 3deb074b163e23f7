"""Keras 3 files: the ``.keras`` archive and the ``.weights.h5`` weights file.

A ``.keras`` archive is a zip of ``config.json`` (the model as Keras serializes it, with
``compile_config``), ``metadata.json`` and ``model.weights.h5`` (:mod:`.keras_h5`).
:func:`save_model` writes one that Keras 3 loads (``keras.models.load_model``) and
predicts identically with; :func:`load_model` reads one written by Keras 3 (or by
fusednn) for a Sequential model of the layers in :data:`.keras_config.LAYERS`, with its
compile settings and the optimizer's state, so ``fit`` continues. fusednn's own extras
(``model.metadata``, the ``fused`` switch, the fusednn version) ride in
``metadata.json`` under ``"fusednn"``, which Keras ignores.

Loading never runs code and costs at most about the file's size in memory: the path must
be a regular file; zip members must lie inside the file without overlapping, and their
declared sizes are checked before reading (a deflated member may not claim more than
:data:`MAX_MEMBER_BYTES` nor expand more than :data:`MAX_EXPANSION` times); the config is
translated by :mod:`.keras_config` (unknown classes, ``Lambda`` layers, modules outside
Keras: ValueError); every weight's shape is worked out from the config and compared with
the file's datasets before anything is built or read. Files are written through
:func:`fusednn.files.write_atomically`.
"""
from __future__ import annotations

import datetime
import inspect
import io
import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from .. import registry, utils
from ..distribution import state as distribution_state
from ..files import write_atomically
from . import keras_config, keras_h5
from .checks import check_members, declared_weight_shapes, read_regular_file

if TYPE_CHECKING:
    from ..models import Sequential

CONFIG_NAME, METADATA_NAME, WEIGHTS_NAME = "config.json", "metadata.json", "model.weights.h5"
#: the largest uncompressed size of a JSON member (config.json, metadata.json)
MAX_JSON_BYTES = 64 << 20
#: the largest uncompressed size of the weights member
MAX_MEMBER_BYTES = 4 << 30
#: how many times a compressed member may expand (float weights barely compress)
MAX_EXPANSION = 64
#: the Keras version whose layout is written (metadata.json's keras_version)
KERAS_LAYOUT_VERSION = "3.15.1"


def _json_constant(token: str) -> None:
    raise ValueError(f"it holds {token}, which is not valid JSON")


# ------------------------------------------------------------------------------ archive reading
def is_keras_archive(data: bytes) -> bool:
    """Whether ``data`` is a zip holding ``config.json`` (a Keras 3 archive) rather than
    fusednn's ``.npz``; never raises."""
    if not data.startswith(b"PK"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except Exception:  # noqa: BLE001 - not a readable zip: the other reader says why
        return False
    return CONFIG_NAME in names and "fusednn_config.npy" not in names


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, label: str) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ValueError(f"{label} has no {name}") from None
    if info.file_size > limit:
        raise ValueError(f"{label}: {name} declares {info.file_size} bytes, more than the {limit} allowed")
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > max(1 << 20, MAX_EXPANSION * info.compress_size):
        raise ValueError(f"{label}: {name} would expand from {info.compress_size} to {info.file_size} bytes "
                         "(a zip bomb?)")
    if info.flag_bits & 0x1:
        raise ValueError(f"{label}: {name} is encrypted")
    with zf.open(info) as f:
        data = f.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ValueError(f"{label}: {name} holds {len(data)} bytes, its header says {info.file_size}")
    return data


def read_archive(data: bytes, label: str) -> tuple[dict[str, Any], dict[str, Any], bytes | None]:
    """``(config, metadata, weights file bytes or None)`` of a ``.keras`` archive in
    ``data``; ValueError for anything malformed."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            check_members(zf, data)
            names = set(zf.namelist())
            if "model.weights.npz" in names or "model.weights.json" in names:
                raise ValueError(f"{label} stores its weights as npz or in shards, which fusednn does not read")
            config = json.loads(_read_member(zf, CONFIG_NAME, MAX_JSON_BYTES, label).decode("utf-8"),
                                parse_constant=_json_constant)
            metadata: Any = {}
            if METADATA_NAME in names:
                metadata = json.loads(_read_member(zf, METADATA_NAME, MAX_JSON_BYTES, label).decode("utf-8"),
                                      parse_constant=_json_constant)
            weights = _read_member(zf, WEIGHTS_NAME, MAX_MEMBER_BYTES, label) if WEIGHTS_NAME in names else None
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - zip/JSON/UTF-8 errors on bad bytes all mean a bad file
        raise ValueError(f"{label} is not a valid .keras archive: {type(e).__name__}: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{label}: its config.json is not a JSON object")
    return config, metadata if isinstance(metadata, dict) else {}, weights


# ------------------------------------------------------------------------------ loading
def _layers(config: dict[str, Any], custom_objects: Mapping[str, type] | None) -> list[Any]:
    from ..layers import REGISTRY as LAYERS

    return [registry.deserialize(spec, LAYERS, custom_objects) for spec in config["layers"]]


def _input_dim(config: dict[str, Any], layers: list[Any]) -> int | None:
    shape = config.get("input_shape")
    if shape is not None:
        return int(shape[1])
    return layers[0].input_dim if layers else None


def _adapted_normalization(wf: keras_h5.WeightsFile, key: str, dim: int, spec: dict[str, Any]) -> None:
    """A Keras Normalization adapted on data keeps its statistics as weights (mean,
    variance, count); fusednn keeps them in the config: move them there."""
    n = wf.count(f"layers/{key}/vars")
    if n != 3:
        raise ValueError(f"{wf.label}: Normalization layer {key!r} has no statistics in its config, so its "
                         f"weights must hold mean, variance and count; found {n} arrays")
    stats = []
    for i in range(2):
        shape = wf.dataset_shape(f"layers/{key}/vars/{i}")
        if shape not in ((dim,), (1, dim), (), (1,)):  # per feature, or one for all (axis=None)
            raise ValueError(f"{wf.label}: statistic {i} of Normalization {key!r} has shape {shape}, expected "
                             f"({dim},)")
        stats.append(wf.read(f"layers/{key}/vars/{i}", shape).astype(np.float64).reshape(-1))
    if len(stats[0]) == 1 and dim != 1 and spec["config"].get("axis", -1) is None:
        spec["config"]["mean"], spec["config"]["variance"] = float(stats[0][0]), max(float(stats[1][0]), 1e-14)
        return
    spec["config"]["mean"] = stats[0].tolist()
    spec["config"]["variance"] = [max(float(v), 1e-14) for v in stats[1]]  # Keras: max(sqrt(var), 1e-7)


def load_model(filepath: str | os.PathLike, custom_objects: Mapping[str, type] | None = None,
               compile: bool = True, data: bytes | None = None) -> "Sequential":
    """The model of a Keras 3 ``.keras`` archive (see the module docstring), on the
    active backend, with its weights and, with ``compile``, its optimizer, loss,
    metrics and optimizer state. ValueError for anything fusednn cannot read."""
    label = os.fspath(filepath)
    if data is None:
        data = read_regular_file(label)
    doc, metadata, weights_bytes = read_archive(data, label)
    try:
        config, classes, kind = keras_config.from_keras_model(doc)
    except ValueError as e:
        raise ValueError(f"{label}: {e}") from None
    generator = utils.rng()
    rng_state = generator.bit_generator.state  # building runs initialisers: keep the user's stream
    try:
        if kind == "Sequential":
            model = _build(label, config, classes, weights_bytes, custom_objects)
        else:
            model = _build_functional(label, config, classes, weights_bytes, custom_objects)
        extra = metadata.get("fusednn") if isinstance(metadata.get("fusednn"), dict) else {}
        if isinstance(extra.get("metadata"), dict):
            model.metadata = extra["metadata"]
        if compile and doc.get("compile_config"):
            _compile(model, doc["compile_config"], extra, weights_bytes, label)
    finally:
        generator.bit_generator.state = rng_state
    return model


def _open_weights(weights_bytes: bytes, label: str, opener: Any = None) -> keras_h5.WeightsFile:
    """The weights file of an archive, or (``opener``, from :mod:`.keras_legacy_h5`) a
    legacy HDF5 model file's weights seen through the same interface."""
    return opener() if opener is not None else keras_h5.WeightsFile(weights_bytes, f"{label}:{WEIGHTS_NAME}")


def _build(label: str, config: dict[str, Any], classes: list[str], weights_bytes: bytes | None,
           custom_objects: Mapping[str, type] | None, opener: Any = None) -> "Sequential":
    try:
        layers = _layers(config, custom_objects)
        dim = _input_dim(config, layers)
        keys = keras_config.weight_keys(classes)
        flat: list[np.ndarray] = []
        if dim is not None:
            if weights_bytes is None:
                raise ValueError("it has no model.weights.h5")
            with _open_weights(weights_bytes, label, opener) as wf:
                d, adapted = dim, set()
                for i, (layer, spec) in enumerate(zip(layers, config["layers"])):
                    if spec["class_name"] == "Normalization" and spec["config"].get("mean") is None:
                        _adapted_normalization(wf, keys[i], d, spec)
                        layers[i] = registry.deserialize(spec, _registry(), custom_objects)
                        adapted.add(keys[i])
                    d = layers[i].output_dim(d)
                shapes = declared_weight_shapes(layers, dim)
                for i, want in enumerate(shapes):  # weights only the layer's build knows: as stored,
                    if want is None:               # (inside the file), checked by set_weights below
                        n = wf.count(f"layers/{keys[i]}/vars") or 0
                        shapes[i] = [wf.dataset_shape(f"layers/{keys[i]}/vars/{j}") for j in range(n)]
                stored = keras_h5.read_layer_weights(wf, keys, shapes, frozenset(adapted))
            flat = [w for ws in stored for w in ws]
        cls = registry.MODELS.get("Sequential")
        model = cls.from_config(config, custom_objects)
        if flat or model.built:
            model.set_weights(flat)
    except ValueError as e:
        raise ValueError(f"{label}: cannot rebuild the saved model: {e}") from None
    except (TypeError, KeyError, AttributeError, IndexError, RuntimeError) as e:
        raise ValueError(f"{label}: cannot rebuild the saved model: {type(e).__name__}: {e}") from None
    return model


class _Declared:
    """A stored dataset's shape, standing in for the array in the shape checks."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def _build_functional(label: str, config: dict[str, Any], classes: list[str], weights_bytes: bytes | None,
                      custom_objects: Mapping[str, type] | None, opener: Any = None) -> "Sequential":
    """A functional model from its translated config: every layer's stored weight shapes
    are checked against the graph (:func:`check_declared_shapes`) before anything is
    built or read, then each layer's weights are set by its name."""
    from .checks import check_declared_shapes

    try:
        compute = [spec for spec in config["layers"] if spec["class_name"] != "InputLayer"]
        keys = keras_config.weight_keys(classes)
        for spec in compute:
            if spec["class_name"] == "Normalization" and spec["config"].get("mean") is None:
                raise ValueError(f"Normalization layer {spec['name']!r} keeps adapted statistics as weights; in a "
                                 "functional model fusednn reads them only from the config")
        if weights_bytes is None:
            raise ValueError("it has no model.weights.h5")
        with _open_weights(weights_bytes, label, opener) as wf:
            names, declared = [], {}
            for key in keys:
                n = wf.count(f"layers/{key}/vars") or 0
                names.append([f"{key}/{i}" for i in range(n)])
                declared.update({f"{key}/{i}": _Declared(wf.dataset_shape(f"layers/{key}/vars/{i}"))
                                 for i in range(n)})
            check_declared_shapes({"model": {"config": config}, "weights": names}, declared, _registry(),
                                  custom_objects)
            model = registry.MODELS.get("Model").from_config(config, custom_objects)
            for spec, stored in zip(compute, names):
                layer = model.get_layer(spec["name"])
                want = [tuple(w.shape) for w in layer.all_weights]
                if [declared[n].shape for n in stored] != want:
                    raise ValueError(f"layer {spec['name']!r} has weights of shapes {want}, the file holds "
                                     f"{[declared[n].shape for n in stored]}")
                layer.set_weights([wf.read(f"layers/{n.replace('/', '/vars/')}", s) for n, s in zip(stored, want)])
    except ValueError as e:
        raise ValueError(f"{label}: cannot rebuild the saved model: {e}") from None
    except (TypeError, KeyError, AttributeError, IndexError, RuntimeError, NotImplementedError) as e:
        raise ValueError(f"{label}: cannot rebuild the saved model: {type(e).__name__}: {e}") from None
    return model


def _registry() -> Any:
    from ..layers import REGISTRY as LAYERS

    return LAYERS


def _compile(model: "Sequential", compile_config: Any, extra: dict[str, Any], weights_bytes: bytes | None,
             label: str, opener: Any = None) -> None:
    """Compile ``model`` as the archive says and restore the optimizer's state; what
    fusednn cannot take is a warning and the model stays uncompiled (as Keras does when
    a saved compile config fails)."""
    try:
        kwargs = keras_config.from_keras_compile(compile_config)
    except ValueError as e:
        warnings.warn(f"{label}: the model is loaded without its compile settings: {e}; compile it again "
                      "before training", UserWarning, stacklevel=3)
        return
    weights = kwargs.get("loss_weights")
    if weights is not None and "loss_weights" not in inspect.signature(model.compile).parameters:
        values = list(weights.values()) if isinstance(weights, dict) else list(weights)
        if any(w != 1.0 for w in values) or isinstance(kwargs["loss"], (list, dict)):
            warnings.warn(f"{label}: the model is loaded without its compile settings: per-output losses or "
                          f"loss_weights need a functional model; compile it again before training",
                          UserWarning, stacklevel=3)
            return
        del kwargs["loss_weights"]  # one output weighted 1: Keras' default
    fused = extra.get("fused", "auto")
    try:
        model.compile(**kwargs, fused=fused if fused in ("auto", True, False) else "auto")
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"{label}: its compile config cannot be applied: {type(e).__name__}: {e}") from None
    if weights_bytes is None or not model.built:
        return
    with _open_weights(weights_bytes, label, opener) as wf:
        _restore_optimizer(model, wf)


def _optimized(model: "Sequential") -> list[Any]:
    """The weights the optimizer updates (Keras: the trainable variables at compile time):
    all of them, or those of the layers not frozen when a model has ``optimized_weights``."""
    return list(getattr(model, "optimized_weights", model.weights))


def _restore_optimizer(model: "Sequential", wf: keras_h5.WeightsFile) -> None:
    opt = model.optimizer
    params = _optimized(model)
    if not opt.is_built_for(model.backend, params):
        return
    why = keras_h5.optimizer_from_keras(opt, wf, [tuple(w.shape) for w in params])
    if why is not None and "holds no optimizer" not in why:
        warnings.warn(f"{wf.label}: optimizer state not restored: {why}", UserWarning, stacklevel=4)


# ------------------------------------------------------------------------------ saving
def _weights_file(model: "Sequential", include_optimizer: bool) -> bytes:
    from ..layers import REGISTRY as LAYERS

    classes = [LAYERS.name_of(type(layer)) for layer in model.layers]
    keys = keras_config.weight_keys(classes)
    weights = [layer.get_weights() if layer.built else [] for layer in model.layers]
    names = [layer.name for layer in model.layers]
    functional = keras_config.functional_class()
    inputs = [t.layer.name for t in model.inputs] if functional is not None and isinstance(model, functional) else []
    inputs = [name for name in inputs if name not in names]  # (where model.layers lists them, they are there)
    if inputs:  # a functional model: Keras keeps an (empty) entry for each InputLayer
        keys += keras_config.weight_keys(["InputLayer"] * len(inputs))
        weights += [[] for _ in inputs]
        names += inputs
    optimizer = None
    if include_optimizer and model.optimizer is not None:
        opt = model.optimizer
        params = _optimized(model) if model.built else []
        built = model.built and opt.is_built_for(model.backend, params)
        optimizer = (opt.name, keras_h5.optimizer_to_keras(opt, len(params), built))
    return keras_h5.write_file(keys, names, weights, model.name, optimizer)


def _metric_names(model: "Sequential") -> list[str]:
    from .model_file import metric_names

    return metric_names(model)


def save_model(model: "Sequential", filepath: str | os.PathLike, overwrite: bool = True,
               include_optimizer: bool = True) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` archive (architecture, weights, the
    compile settings and optimizer state unless ``include_optimizer`` is False, and
    fusednn's metadata); ValueError, before anything is written, for a model Keras has
    no built-in classes for. Under data parallelism only rank 0 writes."""
    keras_h5.require_h5py()
    doc = keras_config.to_keras_model(model)
    compiled = model.optimizer is not None and model.loss is not None
    if include_optimizer and compiled:
        try:
            doc["compile_config"] = keras_config.to_keras_compile(model, _metric_names(model))
        except (TypeError, ValueError, NotImplementedError) as e:
            warnings.warn(f"the compile settings are not saved ({e}); compile again after loading",
                          UserWarning, stacklevel=3)
    metadata = {"keras_version": KERAS_LAYOUT_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "fusednn": {"version": __version__, "fused": getattr(model, "fused_mode", "auto"),
                            "metadata": model.metadata}}
    try:
        config_text = json.dumps(doc, allow_nan=False)
        metadata_text = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"the model's config or metadata is not JSON-serialisable: {e}") from None
    weights = _weights_file(model, include_optimizer and "compile_config" in doc)
    if not distribution_state.is_chief():
        return

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(METADATA_NAME, metadata_text)
            zf.writestr(CONFIG_NAME, config_text)
            zf.writestr(WEIGHTS_NAME, weights)

    write_atomically(filepath, write, overwrite)


def save_weights(model: "Sequential", filepath: str | os.PathLike, overwrite: bool = True) -> None:
    """Write ``model``'s weights (and its optimizer's state, as Keras does) in Keras 3's
    ``.weights.h5`` layout."""
    keras_h5.require_h5py()
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built yet, so it has no weights to save")
    weights = _weights_file(model, include_optimizer=model.optimizer is not None)
    if not distribution_state.is_chief():
        return
    write_atomically(filepath, lambda f: f.write(weights), overwrite)


def load_weights(model: "Sequential", filepath: str | os.PathLike, data: bytes | None = None) -> None:
    """Set ``model``'s weights (and, when it is compiled, its optimizer's state) from a
    Keras 3 ``.weights.h5`` file or a ``.keras`` archive; the layers must match in order,
    class and weight shapes, which are checked before anything is set."""
    from ..layers import REGISTRY as LAYERS

    label = os.fspath(filepath)
    if data is None:
        data = read_regular_file(label)
    if data.startswith(b"PK"):
        _, _, weights_bytes = read_archive(data, label)
        if weights_bytes is None:
            raise ValueError(f"{label} holds no model.weights.h5")
        data, label = weights_bytes, f"{label}:{WEIGHTS_NAME}"
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built yet: give it an Input (or build it) before "
                         f"loading Keras weights from {label}")
    keys = keras_config.weight_keys([LAYERS.name_of(type(layer)) for layer in model.layers])
    shapes = [[tuple(w.shape) for w in layer.all_weights] for layer in model.layers]
    with keras_h5.WeightsFile(data, label) as wf:
        stored = keras_h5.read_layer_weights(wf, keys, shapes)
        model.set_weights([w for ws in stored for w in ws])
        if model.optimizer is not None and wf.count("optimizer/vars"):
            _restore_optimizer(model, wf)


# ------------------------------------------------------------------------------ for keras_legacy_h5
def build_model(label: str, config: dict[str, Any], classes: list[str], kind: str, weights_bytes: bytes,
                custom_objects: Mapping[str, type] | None, opener: Any) -> "Sequential":
    """The model of a config translated by :func:`.keras_config.from_keras_model`, its
    weights read through ``opener()`` (a :class:`.keras_h5.WeightsFile`), checked as
    :func:`load_model` checks an archive's."""
    build = _build if kind == "Sequential" else _build_functional
    return build(label, config, classes, weights_bytes, custom_objects, opener)


def compile_model(model: "Sequential", compile_config: Any, weights_bytes: bytes, label: str, opener: Any) -> None:
    """Compile ``model`` from Keras' ``compile_config`` and restore the optimizer's state
    through ``opener()``, as :func:`load_model` does (a warning where it cannot)."""
    _compile(model, compile_config, {}, weights_bytes, label, opener)


def optimized_weights(model: "Sequential") -> list[Any]:
    """The weights the optimizer updates, in Keras' order of its variables."""
    return _optimized(model)
