"""Saving and loading models in one file that cannot run code when it is read.

A model file is an uncompressed ``.npz`` archive (a zip of ``.npy`` arrays, as
``numpy.savez`` writes it), whatever its name; ``.npz`` is the usual suffix,
and any other (``.keras``, ``.fdnn``) works the same. It holds:

- ``fusednn_config``: a uint8 array of UTF-8 JSON: the file format and version,
  the fusednn version, the architecture (``model.get_config()``, Keras'
  ``{"class_name", "config"}`` layout), input and output shapes, the compile
  settings, the name and shape of every array below, and ``model.metadata``;
- ``layers.<i>.<j>``: weight ``j`` of layer ``i`` (float32, Keras order);
- ``optimizer.<k>``: the optimizer's state arrays (float32), when saved; the
  step count is in the JSON.

Nothing in it depends on the backend that wrote it. Reading never unpickles:
arrays are read with ``allow_pickle=False`` after their headers were checked
against the JSON, and every archive member must be stored uncompressed and fit
inside the file, so a corrupt file cannot make the reader allocate more than
the file's size. A truncated, corrupt, foreign or newer-format file raises
ValueError. Files are written to a temporary name and renamed into place.
"""
from __future__ import annotations

import io
import json
import math
import os
import warnings
import zipfile
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from .. import losses, metrics, optimizers, registry, utils
from ..distribution import state as distribution_state
from ..files import write_atomically
from .checks import check_build_fits, check_declared_shapes, check_members, read_regular_file

if TYPE_CHECKING:
    from ..models import Sequential

FORMAT = "fusednn.model"
#: the newest file format this version reads and the one it writes
FORMAT_VERSION = 1
CONFIG_KEY = "fusednn_config"
_MAX_CONFIG_BYTES = 64 << 20


# ------------------------------------------------------------------------------ writing
def _json_constant(token: str) -> None:
    raise ValueError(f"the JSON holds {token}, which is not valid JSON")


def _host_f32(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a, dtype="<f4").reshape(np.shape(a))  # keeps 0-d weights 0-d


def _document(model: "Sequential", kind: str, include_optimizer: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document and the named arrays of ``model``'s file."""
    arrays: dict[str, np.ndarray] = {}
    weights: list[list[str]] = []
    for i, layer in enumerate(model.layers):
        names = []
        for j, w in enumerate(layer.get_weights() if layer.built else []):
            names.append(f"layers.{i}.{j}")
            arrays[names[-1]] = _host_f32(w)
        weights.append(names)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "fusednn_version": __version__,
        "model": {"class_name": type(model).__name__, "config": model.get_config()},
        "input_shape": list(model.input_shape) if model.input_shape is not None else None,
        "output_shape": list(model.output_shape) if model.built else None,
        "saved_from_backend": model.backend.name if model.backend is not None else None,
        "weights": weights,
        "compile": None,
        "optimizer_state": None,
        "metadata": model.metadata,
    }
    if kind == "model" and model.optimizer is not None and model.loss is not None:
        doc["compile"] = {"optimizer": optimizers.serialize(model.optimizer), "loss": losses.serialize(model.loss),
                          "metrics": _metric_names(model), "fused": model.fused_mode}
        if getattr(model, "output_metrics", None):  # a multi-output Model: per output, in output order
            doc["compile"]["metrics"] = [_metric_names(model, ms) for ms in model.output_metrics]
        opt = model.optimizer
        if include_optimizer and model.built and opt.is_built_for(model.backend, model.optimized_weights):
            iterations, state = opt.get_state()
            names = [f"optimizer.{k}" for k in range(len(state))]
            arrays.update(zip(names, map(_host_f32, state)))
            doc["optimizer_state"] = {"iterations": int(iterations), "arrays": names}
    doc["arrays"] = {name: list(a.shape) for name, a in arrays.items()}
    return doc, arrays


def _metric_names(model: "Sequential", compiled: list[Any] | None = None) -> list[str]:
    """The compiled metrics that can be rebuilt from their name (a user function or a
    metric with non-default settings cannot: it is left out with a warning)."""
    names = []
    for m in getattr(model, "metrics", []) if compiled is None else compiled:
        try:
            again = metrics.get(m.name)
            # Keras metric objects compare by settings (their accumulated state differs)
            settings = (lambda o: o.get_config()) if hasattr(m, "get_config") else vars
            same = type(again) is type(m) and settings(again) == settings(m)
        except (ValueError, TypeError):
            same = False
        if same:
            names.append(m.name)
        else:
            warnings.warn(f"metric {m.name!r} cannot be saved by name; recompile with it after loading",
                          UserWarning, stacklevel=4)
    return names


#: the compiled metrics that rebuild from their names (the Keras writer saves them too)
metric_names = _metric_names


def _write(f: IO[bytes], doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"the model's config or metadata is not JSON-serialisable: {e}") from None
    config = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    np.savez(f, **{CONFIG_KEY: config}, **arrays)


def save_model(model: "Sequential", filepath: str | os.PathLike, overwrite: bool = True,
               include_optimizer: bool = True) -> None:
    """Write ``model`` (architecture, weights, compile settings and, with
    ``include_optimizer``, the optimizer's state, so that ``fit`` continues where it
    stopped) to ``filepath`` as described in this module's docstring. Under data
    parallelism only rank 0 writes (the ranks hold the same weights)."""
    if not distribution_state.is_chief():
        return
    doc, arrays = _document(model, "model", include_optimizer)
    write_atomically(filepath, lambda f: _write(f, doc, arrays), overwrite)


def save_weights(model: "Sequential", filepath: str | os.PathLike, overwrite: bool = True) -> None:
    """Write only ``model``'s weights (with its architecture for reference) to ``filepath``."""
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built yet, so it has no weights to save")
    if not distribution_state.is_chief():  # data parallelism: rank 0 alone writes
        return
    doc, arrays = _document(model, "weights", include_optimizer=False)
    write_atomically(filepath, lambda f: _write(f, doc, arrays), overwrite)


# ------------------------------------------------------------------------------ reading
def _member(zf: zipfile.ZipFile, name: str, file_size: int) -> zipfile.ZipInfo:
    """The archive member of array ``name``, checked to be stored uncompressed inside the
    file, so reading it can never inflate to more than the file holds."""
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        raise ValueError(f"array {name!r} is missing") from None
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size \
            or info.header_offset + info.compress_size > file_size:
        raise ValueError(f"array {name!r} is not stored as numpy.savez stores it")
    return info


def _read_config(zf: zipfile.ZipFile, file_size: int) -> dict[str, Any]:
    info = _member(zf, CONFIG_KEY, file_size)
    if info.file_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"its {CONFIG_KEY} entry is implausibly large ({info.file_size} bytes)")
    with zf.open(info) as fp:
        raw = np.lib.format.read_array(fp, allow_pickle=False)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"its {CONFIG_KEY} entry is not UTF-8 JSON bytes")
    doc = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_json_constant)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"its {CONFIG_KEY} entry does not describe a fusednn model")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"its format_version {version!r} is not valid")
    if version > FORMAT_VERSION:
        raise ValueError(f"it was written by a newer fusednn ({doc.get('fusednn_version')}, file format "
                         f"{version}); this fusednn {__version__} reads file format {FORMAT_VERSION} and "
                         "older: upgrade fusednn to load it")
    return doc


def _read_array(zf: zipfile.ZipFile, name: str, shape: Any, file_size: int) -> np.ndarray:
    info = _member(zf, name, file_size)
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"the shape of array {name!r} is not valid: {shape!r}")
    with zf.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        got_shape, fortran, dtype = read_header(fp)
        if dtype != np.dtype("<f4") or fortran or list(got_shape) != shape:
            raise ValueError(f"array {name!r} holds {dtype} {got_shape}, expected float32 {tuple(shape)}")
        if math.prod(shape) * 4 > info.file_size:
            raise ValueError(f"array {name!r} is truncated")
    with zf.open(info) as fp:
        return np.lib.format.read_array(fp, allow_pickle=False)


def read_file(filepath: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document and the arrays of a model (or weights) file, all checked;
    anything wrong with the file raises ValueError saying what."""
    path = os.fspath(filepath)
    data = read_regular_file(path)
    if not data.startswith(b"PK"):
        raise ValueError(f"{path} is not a fusednn model file: it is not an .npz (zip) archive")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            check_members(zf, data)
            if CONFIG_KEY + ".npy" not in zf.namelist():
                raise ValueError(f"it is a zip archive without a {CONFIG_KEY} entry (not saved by fusednn)")
            doc = _read_config(zf, len(data))
            shapes = doc.get("arrays")
            if not isinstance(shapes, dict):
                raise ValueError("its list of arrays is missing")
            arrays = {name: _read_array(zf, name, shape, len(data)) for name, shape in shapes.items()}
    except Exception as e:  # noqa: BLE001 - any parser layer may fail on bad bytes; all mean a bad file
        raise ValueError(f"{path} is not a valid fusednn model file: {e}") from None
    return doc, arrays


def _layer_weights(doc: dict[str, Any], arrays: dict[str, np.ndarray], n_layers: int) -> list[list[np.ndarray]]:
    names = doc.get("weights")
    if not isinstance(names, list) or len(names) != n_layers or not all(isinstance(n, list) for n in names):
        raise ValueError(f"its weight list does not match the model's {n_layers} layers")
    try:
        return [[arrays[name] for name in layer] for layer in names]
    except (KeyError, TypeError) as e:
        raise ValueError(f"its weight list names an array it does not hold ({e})") from None


def load_model(filepath: str | os.PathLike, custom_objects: Mapping[str, type] | None = None,
               compile: bool = True) -> "Sequential":
    """Rebuild the model saved by :func:`save_model` on the active backend, with its
    weights, metadata and (with ``compile``) its optimizer, loss and saved optimizer
    state. ``custom_objects`` maps class names to user classes (layers, losses,
    optimizers, initialisers) defined outside fusednn. Raises ValueError for a file
    that is not a valid fusednn model file. The model's class comes from
    :data:`fusednn.registry.MODELS` (where model classes register themselves), so
    this module never imports the models."""
    from ..layers import REGISTRY as LAYERS

    doc, arrays = read_file(filepath)
    path = os.fspath(filepath)
    # Building runs the initialisers; their draws must not shift the user's random stream.
    generator = utils.rng()
    rng_state = generator.bit_generator.state
    try:
        spec = doc["model"]
        if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str) or \
                not isinstance(spec.get("config"), dict):
            raise ValueError("it does not describe a model")
        cls = registry.MODELS.get(spec["class_name"], custom_objects)
        # Every weight the layers would create must be in the file before any is allocated.
        check_declared_shapes(doc, arrays, LAYERS, custom_objects)
        model = cls.from_config(spec["config"], custom_objects)
        weights = _layer_weights(doc, arrays, len(model.layers))
        if model.built:  # checks that the stored weights cover every layer
            model.set_weights([w for layer in weights for w in layer])
        elif any(weights):
            raise ValueError("it holds weights but no input shape to build the model with")
        metadata = doc.get("metadata")
        model.metadata = metadata if isinstance(metadata, dict) else {}
        if compile and doc.get("compile"):
            _compile(model, doc, arrays, custom_objects)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError) as e:
        raise ValueError(f"{path}: cannot rebuild the saved model: {e}") from None
    finally:
        generator.bit_generator.state = rng_state
    return model


def _compile(model: "Sequential", doc: dict[str, Any], arrays: dict[str, np.ndarray],
             custom_objects: Mapping[str, type] | None) -> None:
    settings = doc["compile"]
    optimizer = registry.deserialize(settings["optimizer"], optimizers.REGISTRY, custom_objects)
    loss = registry.deserialize(settings["loss"], losses.REGISTRY, custom_objects)
    names = settings.get("metrics") or []
    fused = settings.get("fused", "auto")  # files written before the switch existed: the default
    model.compile(optimizer=optimizer, loss=loss, **({"metrics": names} if names else {}), fused=fused)
    state = doc.get("optimizer_state")
    if state and model.built:
        model.optimizer.set_state(state["iterations"], [arrays[name] for name in state["arrays"]])


def load_weights(model: "Sequential", filepath: str | os.PathLike) -> None:
    """Set ``model``'s weights from a file of :func:`save_weights` or :func:`save_model`
    (the architectures must agree: same number of weight arrays and shapes)."""
    doc, arrays = read_file(filepath)
    weights = _layer_weights(doc, arrays, len(doc.get("weights") or []))
    flat = [w for layer in weights for w in layer]
    if not model.built:
        shape = doc.get("input_shape")
        if not (isinstance(shape, list) and len(shape) == 2 and isinstance(shape[1], int)):
            raise ValueError(f"{os.fspath(filepath)} holds no input shape to build model {model.name!r} with")
        try:
            check_build_fits(model.layers, shape[1], [tuple(w.shape) for w in flat])
        except ValueError as e:
            raise ValueError(f"{os.fspath(filepath)}: {e}") from None
        model.build(shape)
    model.set_weights(flat)
