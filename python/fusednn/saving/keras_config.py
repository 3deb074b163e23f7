"""Translating between Keras 3's saved configs (``config.json`` of a ``.keras`` archive)
and fusednn's own ``get_config()`` layout, in both directions, without running code.

Keras writes every object as ``{"module", "class_name", "config", "registered_name"}``;
fusednn as ``{"class_name", "config"}`` with Keras' class names and argument names, so
most of the work is checking. Reading accepts only the classes in :data:`LAYERS` (and
Keras' own initializers, regularizers, constraints, optimizers, schedules, losses and
metrics that fusednn has under the same name), from Keras' own modules: a ``Lambda``
layer, a class registered by user code (``registered_name`` ``"package>Name"``), a
module outside Keras, or an activation saved as a function is a ValueError naming it,
never an import. A Keras argument fusednn does not take is accepted only at a value
that changes nothing (``None``, or the Keras defaults in :data:`_HARMLESS`);
anything else is a ValueError naming the layer and the argument, rather than a model
that silently computes something else.
"""
from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

#: Keras layer classes fusednn reads and writes (same names on both sides)
LAYERS = frozenset({"Dense", "Dropout", "BatchNormalization", "LayerNormalization", "Flatten", "Reshape",
                    "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Normalization", "Identity",
                    "GaussianNoise", "GaussianDropout", "PReLU"})

#: layers whose Keras class holds code or whose config cannot be honoured; named in the error
_REFUSED = {"Lambda": "a Lambda layer holds Python code (a function or bytecode); loading never runs code",
            "TFSMLayer": "it wraps a TensorFlow SavedModel"}

#: Keras modules an object may come from (Keras writes its private "keras.src..." paths too)
_KERAS_MODULES = ("keras", "keras.layers", "keras.initializers", "keras.regularizers", "keras.constraints",
                  "keras.optimizers", "keras.optimizers.schedules", "keras.losses", "keras.metrics",
                  "keras.activations", "keras.models", "keras.src")

#: Keras arguments fusednn's classes may not take, and values of them that change nothing
_HARMLESS: dict[str, tuple[Any, ...]] = {
    "renorm_momentum": (0.99,),            # BatchNormalization: only used with renorm=True
    "data_format": ("channels_last",),
    "axis": (-1, [-1], (-1,)),
    "input_axes": (None,), "output_axes": (None,),  # initializers of einsum layers
    "reduction": ("sum_over_batch_size",),  # losses: fusednn's only reduction
    # Keras switches that are off by default (None, the other default, is always harmless)
    **{key: (False,) for key in ("synchronized", "renorm", "rms_scaling", "invert", "sparse", "ragged", "optional",
                                 "is_legacy_optimizer")},
}

#: Keras' float32 dtype policy, as every layer config carries it
DTYPE_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                "registered_name": None}


def to_snake_case(name: str) -> str:
    """Keras' ``naming.to_snake_case``: the key a layer's weights are stored under in
    ``model.weights.h5`` (``LeakyReLU`` -> ``leaky_re_lu``), numbered by class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def weight_keys(class_names: list[str]) -> list[str]:
    """The ``layers/<key>`` group of each layer in Keras' weights file: the snake-case
    class name, ``_1``, ``_2``... for repeats (not the layer's own name)."""
    used: dict[str, int] = {}
    keys = []
    for cls in class_names:
        key = to_snake_case(cls)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys.append(key)
    return keys


# ------------------------------------------------------------------------------ reading
def _where(what: str, name: Any) -> str:
    return f"{what} {name!r}" if name else what


def check_object(spec: Any, what: str) -> tuple[str, Any]:
    """``(class_name, config)`` of a saved Keras object after checking it comes from
    Keras itself; ValueError naming anything else."""
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
        raise ValueError(f"{what}: expected a Keras object {{'class_name': ..., 'config': ...}}, got {spec!r:.200}")
    cls = spec["class_name"]
    module = spec.get("module", "keras")
    registered = spec.get("registered_name")
    if cls in _REFUSED:
        raise ValueError(f"{what}: {cls} is not loaded: {_REFUSED[cls]}")
    if module is not None and (not isinstance(module, str) or not (
            module in _KERAS_MODULES or module.startswith(("keras.src.", "keras.layers.", "keras.optimizers.")))):
        raise ValueError(f"{what}: class {cls!r} comes from module {module!r}, which is not Keras; fusednn loads "
                         "only Keras' built-in classes (it never imports modules named in a file)")
    if registered is not None and registered != cls:
        raise ValueError(f"{what}: class {cls!r} is registered by user code as {registered!r}; fusednn loads only "
                         "Keras' built-in classes")
    return cls, spec.get("config", {})


def _accepted(cls: type) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if n != "self" and p.kind is not p.VAR_POSITIONAL}


def _takes_kwargs(cls: type) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())


def _check_dtype(value: Any, where: str) -> None:
    if value is None or value == "float32":
        return
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") \
            and isinstance(value.get("config"), dict) and value["config"].get("name") == "float32":
        return
    name = value.get("config", {}).get("name") if isinstance(value, dict) and isinstance(
        value.get("config"), dict) else value
    raise ValueError(f"{where}: dtype policy {name!r:.100} is not supported (fusednn computes in float32)")


def _fit_config(cls: type, config: Mapping[str, Any], where: str, nested: Any,
                droppable: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Keras' ``config`` reduced to the arguments fusednn's ``cls`` takes: other keys
    must hold a value that changes nothing; nested Keras objects are translated."""
    if not isinstance(config, Mapping):
        raise ValueError(f"{where}: its config is not a JSON object: {config!r:.100}")
    accepted = _accepted(cls)
    open_kwargs = _takes_kwargs(cls)
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key == "dtype":
            _check_dtype(value, where)
            if "dtype" not in accepted:
                continue
        if key == "trainable" and "trainable" not in accepted:
            if value is False:  # a frozen layer: Layer.from_config takes it where layers can be frozen
                out["trainable"] = False
            continue
        if isinstance(value, dict) and "class_name" in value:
            value = nested(key, value)
        if key in accepted:
            out[key] = value
        elif key in droppable or value is None or value in _HARMLESS.get(key, ()):
            continue
        elif open_kwargs:  # the class checks its own keyword arguments
            out[key] = value
        else:
            raise ValueError(f"{where}: Keras argument {key}={value!r:.100} is not supported by fusednn's "
                             f"{cls.__name__}")
    return out


def fusednn_object(spec: Any, registry: Any, what: str) -> dict[str, Any]:
    """A Keras initializer/regularizer/constraint/schedule/loss spec as fusednn's
    ``{"class_name", "config"}``, checked against fusednn's ``registry``."""
    if isinstance(spec, str):  # a name such as "glorot_uniform" or "l2": fusednn's get() resolves it
        return spec  # type: ignore[return-value]
    cls_name, config = check_object(spec, what)
    if not isinstance(config, dict):
        raise ValueError(f"{what}: the config of {cls_name} is not a dict")
    try:
        cls = registry.get(cls_name)
    except ValueError:
        raise ValueError(f"{what}: Keras class {cls_name!r} is not supported by fusednn") from None
    where = f"{what} ({cls_name})"
    return {"class_name": cls_name, "config": _fit_config(cls, config, where,
                                                          lambda k, v: fusednn_object(v, registry, f"{where}.{k}"))}


def _nested_registry(key: str) -> Any:
    from .. import initializers, regularizers

    if key.endswith("_initializer"):
        return initializers.REGISTRY
    if key.endswith("_regularizer"):
        return regularizers.REGISTRY
    if key.endswith("_constraint"):
        try:  # keras.constraints, where this build has them (fusednn.constraints)
            constraints = importlib.import_module("fusednn.constraints")
        except ImportError:
            return None
        return getattr(constraints, "REGISTRY", None)
    return None


def _translate_nested(layer_where: str, key: str, value: Any) -> Any:
    registry = _nested_registry(key)
    if registry is None:
        cls_name, _ = check_object(value, f"{layer_where}.{key}")
        raise ValueError(f"{layer_where}: {key}={cls_name} is not supported by fusednn")
    return fusednn_object(value, registry, f"{layer_where}.{key}")


def _shape(value: Any, where: str) -> list[int | None]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: a shape must be a non-empty list, got {value!r:.100}")
    for d in value:
        if d is not None and (type(d) is not int or d < 1 or d > 2**31):
            raise ValueError(f"{where}: shape {value!r:.100} holds {d!r}")
    return list(value)


def _input_shape(spec: dict[str, Any], where: str) -> list[int] | None:
    """The per-sample shape an InputLayer (or a layer's build_config) declares."""
    config = spec.get("config") if isinstance(spec.get("config"), dict) else {}
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            shape = _shape(config[key], f"{where}.{key}")[1:]
            if not shape or any(d is None for d in shape):
                raise ValueError(f"{where}: the input shape {config[key]!r} must give every sample axis")
            return shape  # type: ignore[return-value]
    if config.get("shape") is not None:
        return _shape(config["shape"], f"{where}.shape")  # type: ignore[return-value]
    return None


#: layers that only functional models have (several inputs)
MERGE_LAYERS = frozenset({"Concatenate", "Add"})


def functional_class() -> type | None:
    """fusednn's functional model class (``keras.Model``) where this build has one."""
    from .. import registry

    try:
        cls = registry.MODELS.get("Model")
    except ValueError:
        return None
    return cls if hasattr(cls, "get_layer") else None


def _layer_spec(spec: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    """One saved Keras layer as fusednn's ``{"class_name", "config"}``, checked."""
    from ..layers import REGISTRY as LAYER_REGISTRY

    cls, cfg = check_object(spec, where)
    name = cfg.get("name") if isinstance(cfg, dict) else None
    where = f"{where} ({cls} {name!r})" if name else f"{where} ({cls})"
    if cls not in allowed:
        raise ValueError(f"{where}: Keras layer class {cls!r} is not supported by fusednn's .keras reader "
                         f"(supported: {', '.join(sorted(allowed))})")
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: its config is not a JSON object")
    if cfg.get("activation") is not None and not isinstance(cfg["activation"], str):
        act = cfg["activation"]
        label = act.get("config") if isinstance(act, dict) else act
        raise ValueError(f"{where}: its activation {label!r:.100} is saved as a function object; fusednn "
                         "loads activations by name only and never runs saved code")
    layer_cls = LAYER_REGISTRY.get(cls)
    fitted = _fit_config(layer_cls, cfg, where, lambda k, v: _translate_nested(where, k, v))
    fitted.pop("input_shape", None)
    fitted.pop("batch_input_shape", None)
    if cls == "Normalization":
        for key in ("mean", "variance"):
            if fitted.get(key) is not None:
                fitted[key] = _flat_floats(fitted[key], f"{where}.{key}")
        if fitted.get("variance") is not None:  # Keras divides by max(sqrt(variance), 1e-7)
            fitted["variance"] = [max(v, 1e-14) for v in fitted["variance"]]
    return {"class_name": cls, "config": fitted}


def from_keras_model(doc: Any) -> tuple[dict[str, Any], list[str], str]:
    """The fusednn model config of a Keras ``config.json`` document, each weighted
    layer's Keras class name (for the weights file's keys), and the fusednn model class
    ("Sequential", or "Model" for a functional model where this build has the functional
    API). ValueError for a model fusednn cannot hold, naming what."""
    if not isinstance(doc, dict):
        raise ValueError("its config.json is not a JSON object")
    cls_name, config = check_object(doc, "the model")
    if cls_name in ("Functional", "Model"):
        if functional_class() is None:
            raise ValueError(f"it holds a functional Keras model (class {cls_name!r}); this fusednn reads "
                             "Sequential models from .keras files only (it has no functional API): rebuild it as "
                             "a keras.Sequential model, or load its weights into a fusednn model of the same layers")
        fconfig, classes = _from_keras_functional(config)
        return fconfig, classes, "Model"
    if cls_name != "Sequential":
        raise ValueError(f"it holds a Keras model of class {cls_name!r}; only Sequential models are read")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError("its Sequential config has no list of layers")
    _check_dtype(config.get("dtype"), "the model")
    specs = list(config["layers"])
    sample_shape: list[int] | None = None
    if specs and isinstance(specs[0], dict) and specs[0].get("class_name") == "InputLayer":
        check_object(specs[0], "layer 0")
        sample_shape = _input_shape(specs[0], "the InputLayer")
        specs = specs[1:]
    if sample_shape is None:
        build = doc.get("build_config") or {}
        given = build.get("input_shape") if isinstance(build, dict) else None
        given = given or config.get("build_input_shape")
        if given is not None:
            sample_shape = _shape(given, "the model's build_config")[1:]  # type: ignore[assignment]
    layers: list[dict[str, Any]] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, dict) and spec.get("class_name") == "InputLayer":
            raise ValueError(f"layer {i + 1}: an InputLayer may only come first")
        layers.append(_layer_spec(spec, f"layer {i + 1}", LAYERS))
    input_shape = None
    if sample_shape is not None:
        if len(sample_shape) > 1:
            if not layers or layers[0]["class_name"] not in ("Flatten", "Reshape"):
                raise ValueError(f"its input samples have shape {tuple(sample_shape)}; fusednn layers take flat "
                                 "features, so a Flatten (or Reshape) must come first")
            layers[0]["config"]["input_shape"] = list(sample_shape)
        input_shape = [None, math.prod(sample_shape)]
    return ({"name": config.get("name") if isinstance(config.get("name"), str) else None,
             "input_shape": input_shape, "layers": layers}, [spec["class_name"] for spec in layers], "Sequential")


def _tensor_ref(ref: Any, known: set[str], where: str) -> dict[str, Any]:
    """A saved ``__keras_tensor__`` reference to the output of an earlier layer, checked."""
    hist = ref.get("config", {}).get("keras_history") if isinstance(ref, dict) and isinstance(
        ref.get("config"), dict) and ref.get("class_name") == "__keras_tensor__" else None
    if not (isinstance(hist, list) and len(hist) == 3 and isinstance(hist[0], str)):
        raise ValueError(f"{where}: an input is not a reference to a layer's output: {ref!r:.150}")
    if hist[0] not in known:
        raise ValueError(f"{where}: its input comes from {hist[0]!r}, which is not an earlier layer")
    if hist[1:] != [0, 0]:
        raise ValueError(f"{where}: it uses output {hist[1:]} of {hist[0]!r}; fusednn's functional models call "
                         "each layer once")
    shape = ref["config"].get("shape")
    return {"class_name": "__keras_tensor__",
            "config": {"shape": shape if isinstance(shape, list) else None, "dtype": "float32",
                       "keras_history": [hist[0], 0, 0]}}


def _ends(refs: Any, known: set[str], what: str) -> Any:
    def one(r: Any) -> list[Any]:
        if not (isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and r[0] in known and r[1:] == [0, 0]):
            raise ValueError(f"its {what} {r!r:.100} do not name a layer's output")
        return [r[0], 0, 0]

    if isinstance(refs, dict):
        return {str(k): one(v) for k, v in refs.items()}
    if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str):
        return one(refs)
    if isinstance(refs, list) and refs:
        return [one(r) for r in refs]
    raise ValueError(f"its {what} are missing")


def _from_keras_functional(config: Any) -> tuple[dict[str, Any], list[str]]:
    """fusednn's functional config (Keras' own layout, checked and translated layer by
    layer) and the Keras classes of its layers other than the inputs."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError("its functional config has no list of layers")
    _check_dtype(config.get("dtype"), "the model")
    known: set[str] = set()
    layers: list[dict[str, Any]] = []
    classes: list[str] = []
    for i, spec in enumerate(config["layers"]):
        where = f"layer {i}"
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name or name in known:
            raise ValueError(f"{where}: it has no name, or a name used before: {name!r:.100}")
        if spec.get("class_name") == "InputLayer":
            check_object(spec, where)
            shape = _input_shape(spec, f"{where} ({name!r})")
            if shape is None:
                raise ValueError(f"{where}: InputLayer {name!r} declares no shape")
            layers.append({"class_name": "InputLayer", "config": {"batch_shape": [None, *shape], "name": name},
                           "name": name, "inbound_nodes": []})
            known.add(name)
            continue
        entry = _layer_spec(spec, where, LAYERS | MERGE_LAYERS)
        nodes = spec.get("inbound_nodes")
        if not (isinstance(nodes, list) and len(nodes) == 1 and isinstance(nodes[0], dict)):
            raise ValueError(f"{where} ({name!r}): it must be called exactly once (one inbound node)")
        args, kwargs = nodes[0].get("args"), nodes[0].get("kwargs") or {}
        if not isinstance(kwargs, dict) or any(v is not None and v is not False for v in kwargs.values()):
            raise ValueError(f"{where} ({name!r}): call arguments {kwargs!r:.100} are not supported")
        if not (isinstance(args, list) and len(args) == 1):
            raise ValueError(f"{where} ({name!r}): it must be called on one tensor or one list of tensors")
        first = args[0]
        refs = [_tensor_ref(r, known, where) for r in first] if isinstance(first, list) \
            else _tensor_ref(first, known, where)
        layers.append({**entry, "name": name, "inbound_nodes": [{"args": [refs], "kwargs": {}}]})
        classes.append(entry["class_name"])
        known.add(name)
    return {"name": config.get("name") if isinstance(config.get("name"), str) else None,
            "trainable": config.get("trainable") is not False, "layers": layers, "input_layers": _ends(config.get("input_layers"), known, "input layers"),
            "output_layers": _ends(config.get("output_layers"), known, "output layers")}, classes


def _flat_floats(value: Any, where: str) -> list[float]:
    """A Keras Normalization statistic (a number, or nested lists broadcasting over the
    last axis) as one float per feature."""
    import numpy as np

    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected numbers, got {value!r:.100}") from None
    if arr.ndim > 1 and any(d != 1 for d in arr.shape[:-1]):
        raise ValueError(f"{where}: statistics of shape {arr.shape} are not per feature of the last axis")
    return arr.reshape(-1).tolist()


# ------------------------------------------------------------------------------ writing
def keras_object(spec: Any, module: str) -> Any:
    """fusednn's ``{"class_name", "config"}`` as Keras writes it (nested ones too)."""
    if not isinstance(spec, dict) or "class_name" not in spec:
        return spec
    config = {k: keras_object(v, _module_for(k, module)) for k, v in spec.get("config", {}).items()}
    return {"module": module, "class_name": spec["class_name"], "config": config, "registered_name": None}


def _module_for(key: str, default: str) -> str:
    for suffix, module in (("_initializer", "keras.initializers"), ("_regularizer", "keras.regularizers"),
                           ("_constraint", "keras.constraints"), ("learning_rate", "keras.optimizers.schedules")):
        if key.endswith(suffix):
            return module
    return default


def _keras_layer(layer: Any, spec: dict[str, Any], i: int, allowed: frozenset[str]) -> dict[str, Any]:
    """fusednn ``layer`` (its ``{"class_name", "config"}`` ``spec``) as Keras writes a layer;
    ValueError for a layer Keras has no built-in class for."""
    from ..layers import REGISTRY as LAYER_REGISTRY

    cls = spec["class_name"]
    builtin = type(layer).__module__.startswith("fusednn.layers") and LAYER_REGISTRY.name_of(type(layer)) == cls
    if cls not in allowed or not builtin:
        raise ValueError(f"layer {i} ({type(layer).__name__} {layer.name!r}) has no Keras 3 built-in "
                         "equivalent, so the model cannot be saved as .keras; save it as .npz "
                         "(fusednn's format) instead")
    cfg = dict(spec["config"])
    cfg.pop("input_shape", None)  # Flatten/Reshape of shaped samples: the shape is the InputLayer's
    if cls == "Normalization":
        cfg = _keras_normalization(cfg)
    cfg = {k: keras_object(v, _module_for(k, "keras")) for k, v in cfg.items()}
    cfg.setdefault("trainable", bool(getattr(layer, "trainable", True)))
    cfg["dtype"] = DTYPE_POLICY
    return {"module": "keras.layers", "class_name": cls, "config": cfg, "registered_name": None}


def _keras_input(name: str, shape: list[Any]) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": shape, "dtype": "float32", "sparse": False, "ragged": False, "name": name,
                       "optional": False},
            "registered_name": None}


def to_keras_model(model: Any) -> dict[str, Any]:
    """Keras 3's ``config.json`` document (without the compile config) for fusednn
    ``model`` (Sequential, or functional where this build has it); ValueError naming a
    layer Keras has no built-in class for."""
    from .. import registry

    functional = functional_class()
    if functional is not None and isinstance(model, functional):
        return _to_keras_functional(model)
    if registry.MODELS.name_of(type(model)) != "Sequential":
        raise ValueError(f"a {type(model).__name__} model cannot be saved as a Keras 3 .keras archive; "
                         "save it as .npz (fusednn's format)")
    config = model.get_config()
    dim = (config.get("input_shape") or [None, None])[1]
    sample_shape = None
    layers = []
    for i, (layer, spec) in enumerate(zip(model.layers, config["layers"])):
        if i == 0 and "input_shape" in spec["config"]:
            sample_shape = list(spec["config"]["input_shape"])
        entry = _keras_layer(layer, spec, i, LAYERS)
        if dim is not None:
            entry["build_config"] = {"input_shape": [None, *sample_shape] if (i == 0 and sample_shape) else [None, dim]}
            dim = layer.output_dim(dim)
        layers.append(entry)
    keras_layers = []
    input_shape = None
    if config.get("input_shape") is not None:
        input_shape = [None, *(sample_shape or [config["input_shape"][1]])]
        keras_layers.append(_keras_input("input_layer", input_shape))
    keras_layers += layers
    doc: dict[str, Any] = {"module": "keras", "class_name": "Sequential",
                           "config": {"name": config.get("name") or "sequential", "trainable": True,
                                      "dtype": DTYPE_POLICY, "layers": keras_layers},
                           "registered_name": None}
    if input_shape is not None:
        doc["config"]["build_input_shape"] = input_shape
        doc["build_config"] = {"input_shape": input_shape}
    return doc


def _to_keras_functional(model: Any) -> dict[str, Any]:
    config = model.get_config()
    layers = []
    inputs: dict[str, Any] = {}
    i = 0
    for spec in config["layers"]:
        if spec.get("class_name") == "InputLayer":
            shape = [None, *spec["config"]["batch_shape"][1:]]
            inputs[spec["name"]] = shape
            layers.append({**_keras_input(spec["name"], shape), "name": spec["name"], "inbound_nodes": []})
            continue
        layer = model.get_layer(spec["name"])
        entry = _keras_layer(layer, {"class_name": spec["class_name"], "config": spec["config"]}, i,
                             LAYERS | MERGE_LAYERS)
        args = spec["inbound_nodes"][0]["args"][0]
        refs = args if isinstance(args, list) else [args]
        shapes = [r["config"]["shape"] for r in refs]
        entry["build_config"] = {"input_shape": shapes if isinstance(args, list) else shapes[0]}
        layers.append({**entry, "name": spec["name"], "inbound_nodes": spec["inbound_nodes"]})
        i += 1
    shapes = list(inputs.values())
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": config.get("name") or "functional", "trainable": config.get("trainable", True),
                       "layers": layers, "input_layers": config["input_layers"],
                       "output_layers": config["output_layers"]},
            "registered_name": "Functional",
            "build_config": {"input_shape": shapes[0] if len(shapes) == 1 else shapes}}


def _zero_variance_is_one() -> bool:
    """Whether this fusednn's Normalization treats a zero variance as one (scikit-learn's
    rule, fusednn before it took Keras' ``max(sqrt(variance), 1e-7)``): asked of the
    layer itself on one number, so the writer follows whichever rule the layer has."""
    import numpy as np

    from ..layers import Normalization

    return abs(float(np.asarray(Normalization(mean=[0.0], variance=[0.0])(np.ones((1, 1), np.float32)))[0, 0])) < 2


def _keras_normalization(cfg: dict[str, Any]) -> dict[str, Any]:
    """Keras divides by ``max(sqrt(variance), 1e-7)``: where fusednn's layer treats a zero
    variance as one, write 1 there so Keras computes the same."""
    cfg = dict(cfg)
    if isinstance(cfg.get("variance"), list) and 0 in cfg["variance"] and _zero_variance_is_one():
        cfg["variance"] = [1.0 if v == 0 else v for v in cfg["variance"]]
    cfg.setdefault("axis", -1)
    cfg.setdefault("invert", False)
    return cfg


# ------------------------------------------------------------------------------ compile settings
_NAMES = frozenset({"name"})


def _keras_function_name(spec: Any) -> str | None:
    """The name of a Keras built-in function saved as an object (a loss or metric given
    as ``keras.losses.mean_squared_error``): ``{"class_name": "function", "config": name}``."""
    if isinstance(spec, dict) and spec.get("class_name") == "function" and isinstance(spec.get("config"), str):
        module = spec.get("module")
        if module is not None and not (isinstance(module, str) and module.startswith("keras")):
            raise ValueError(f"function {spec['config']!r} comes from module {module!r}, which is not Keras")
        return spec["config"]
    return None


def _optimizer(spec: Any) -> Any:
    from .. import optimizers, schedules

    if isinstance(spec, str):
        return optimizers.get(spec)
    cls_name, config = check_object(spec, "the optimizer")
    try:
        cls = optimizers.REGISTRY.get(cls_name)
    except ValueError:
        raise ValueError(f"optimizer class {cls_name!r} is not supported by fusednn") from None
    if not isinstance(config, dict):
        raise ValueError("the optimizer's config is not a JSON object")
    config = dict(config)
    lr = config.get("learning_rate")
    if isinstance(lr, dict):
        if _keras_function_name(lr) is not None:
            raise ValueError("the learning rate is saved as a function; only schedules are loaded")
        config["learning_rate"] = fusednn_object(lr, schedules.REGISTRY, "the learning-rate schedule")
    fitted = _fit_config(cls, config, f"the optimizer ({cls_name})", lambda k, v: v)
    return optimizers.deserialize({"class_name": cls_name, "config": fitted})


def _loss(spec: Any) -> Any:
    from .. import losses

    name = spec if isinstance(spec, str) else _keras_function_name(spec)
    if name is not None:
        return losses.get(name)
    if isinstance(spec, (list, dict)) and not (isinstance(spec, dict) and "class_name" in spec):
        raise ValueError("per-output losses (a list or dict) need a multi-output model")
    cls_name, config = check_object(spec, "the loss")
    try:
        cls = losses.REGISTRY.get(cls_name)
    except ValueError:
        raise ValueError(f"loss class {cls_name!r} is not supported by fusednn") from None
    fitted = _fit_config(cls, config or {}, f"the loss ({cls_name})", lambda k, v: v, droppable=_NAMES)
    return losses.deserialize({"class_name": cls_name, "config": fitted})


def _metric(spec: Any) -> Any:
    from .. import metrics
    from ..metrics import keras_objects

    name = spec if isinstance(spec, str) else _keras_function_name(spec)
    if name is not None:
        metrics.get(name)  # raises ValueError for a name fusednn does not know
        return name
    cls_name, config = check_object(spec, "a metric")
    cls = keras_objects.BY_NAME.get(cls_name)
    if cls is None or not isinstance(cls, type):
        raise ValueError(f"metric class {cls_name!r} is not supported by fusednn")
    fitted = _fit_config(cls, config or {}, f"metric {cls_name}", lambda k, v: v)
    if not isinstance(fitted.get("name", ""), (str, type(None))):
        raise ValueError(f"metric {cls_name}: its name {fitted['name']!r:.100} is not a string")
    try:
        return cls(**fitted)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metric {cls_name}: {e}") from None


def _per_output(value: Any, one: Any, what: str) -> Any:
    """A list or dict (by output name) of ``one(item)``, for a multi-output model."""
    if isinstance(value, list):
        return [one(v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {str(k): one(v) for k, v in value.items()}
    raise ValueError(f"{what} {value!r:.100} is not a list or dict per output")


def _weight(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"a loss weight must be a finite number, got {value!r:.50}")
    return float(value)


def from_keras_compile(config: Any) -> dict[str, Any]:
    """``model.compile`` arguments (optimizer and loss objects, metrics and, for several
    outputs, per-output losses and ``loss_weights``) from Keras' ``compile_config``;
    ValueError naming what fusednn cannot take."""
    if not isinstance(config, dict):
        raise ValueError("the compile config is not a JSON object")
    if config.get("weighted_metrics"):
        raise ValueError(f"compile argument weighted_metrics={config['weighted_metrics']!r:.100} is not supported")
    if config.get("optimizer") is None or config.get("loss") is None:
        raise ValueError("the compile config names no optimizer or no loss")
    loss = config["loss"]
    per_output = isinstance(loss, list) or (isinstance(loss, dict) and "class_name" not in loss)
    kwargs: dict[str, Any] = {"optimizer": _optimizer(config["optimizer"]),
                              "loss": _per_output(loss, _loss, "the loss") if per_output else _loss(loss)}
    if config.get("loss_weights") is not None:
        kwargs["loss_weights"] = _per_output(config["loss_weights"], _weight, "loss_weights")
    metrics = config.get("metrics") or []
    if isinstance(metrics, dict) or (isinstance(metrics, list) and any(isinstance(m, list) for m in metrics)):
        kwargs["metrics"] = _per_output(metrics, lambda ms: [_metric(m) for m in (ms if isinstance(ms, list)
                                                                                   else [ms])], "the metrics")
    elif isinstance(metrics, list):
        if metrics:
            kwargs["metrics"] = [_metric(m) for m in metrics]
    else:
        raise ValueError(f"the metrics {metrics!r:.100} are not a list or dict")
    return kwargs


def to_keras_compile(model: Any, metric_names: list[str]) -> dict[str, Any]:
    """Keras' ``compile_config`` of a compiled fusednn ``model`` (metrics by the names
    that rebuild them; a multi-output model's losses, ``loss_weights`` and metrics per
    output)."""
    from .. import losses, metrics, optimizers

    loss = model.loss
    per_output = type(loss).__name__ == "OutputLosses" and isinstance(getattr(loss, "losses", None), list)
    for obj, module in ((model.optimizer, optimizers), *((l, losses) for l in (loss.losses if per_output
                                                                                  else [loss]))):
        if type(obj).__module__ != module.__name__:  # a user class
            raise ValueError(f"{type(obj).__name__} is not one of Keras' built-in {module.__name__.split('.')[-1]}")
    config = {"optimizer": keras_object(optimizers.serialize(model.optimizer), "keras.optimizers"),
              "loss": keras_object(losses.serialize(loss), "keras.losses") if not per_output else
              [keras_object(losses.serialize(l), "keras.losses") for l in loss.losses],
              "loss_weights": None, "metrics": list(metric_names) or None, "weighted_metrics": None,
              "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}
    if per_output:
        config["loss_weights"] = [float(w) for w in loss.loss_weights]
        names = []
        for ms in getattr(model, "output_metrics", []) or []:
            keep = []
            for m in ms:
                try:
                    if type(metrics.get(m.name)) is type(m):
                        keep.append(m.name)
                except (ValueError, TypeError):
                    pass
            names.append(keep)
        config["metrics"] = names if any(names) else None
    return config


# ------------------------------------------------------------------------------ legacy (.h5) spellings
#: layers whose Keras 2 config saves ``axis`` as the positive index of the last axis
_LAST_AXIS_LAYERS = frozenset({"BatchNormalization", "LayerNormalization"})


def _legacy_node(node: Any, where: str) -> dict[str, Any]:
    """A tf.keras 2.x inbound node ``[["layer", 0, 0, {}], ...]`` as Keras 3's
    ``{"args": [...], "kwargs": {}}`` of ``__keras_tensor__`` references."""
    if isinstance(node, dict):
        return node  # already Keras 3's spelling
    if not (isinstance(node, list) and node):
        raise ValueError(f"{where}: inbound node {node!r:.100} is not a list of tensors")
    refs = []
    for entry in node:
        if not (isinstance(entry, list) and len(entry) in (3, 4) and isinstance(entry[0], str)):
            raise ValueError(f"{where}: inbound tensor {entry!r:.100} is not [layer, node, tensor, kwargs]")
        if len(entry) == 4 and entry[3]:
            raise ValueError(f"{where}: call arguments {entry[3]!r:.100} are not supported")
        refs.append({"class_name": "__keras_tensor__",
                     "config": {"shape": None, "dtype": "float32", "keras_history": list(entry[:3])}})
    return {"args": [refs if len(refs) > 1 else refs[0]], "kwargs": {}}


def _legacy_layer_config(spec: Any, where: str, functional: bool) -> Any:
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        return spec  # from_keras_model says what is wrong
    spec = {**spec, "config": dict(spec["config"])}
    cfg = spec["config"]
    if spec.get("class_name") == "InputLayer":
        if "batch_input_shape" in cfg and "batch_shape" not in cfg:
            cfg["batch_shape"] = cfg.pop("batch_input_shape")
        return spec
    cfg.pop("batch_input_shape", None)  # (Keras 3 turns it into input_shape, which it then ignores)
    if spec.get("class_name") in _LAST_AXIS_LAYERS and cfg.get("axis") in (1, [1]):
        cfg["axis"] = -1  # fusednn's layers take flat features: axis 1 is the last
    if functional and isinstance(spec.get("inbound_nodes"), list):
        spec["inbound_nodes"] = [_legacy_node(n, where) for n in spec["inbound_nodes"]]
    return spec


def from_legacy_model(doc: Any) -> dict[str, Any]:
    """The ``model_config`` of a legacy HDF5 file (Keras 3's legacy spelling, or tf.keras
    2.x's) in Keras 3's ``config.json`` spelling, for :func:`from_keras_model`: a
    Sequential whose first layer carries ``batch_input_shape`` gets an InputLayer,
    ``batch_input_shape`` becomes ``batch_shape``, Keras 2's ``axis=[1]`` of
    BatchNormalization/LayerNormalization becomes -1, and Keras 2's inbound nodes
    (``[["dense", 0, 0, {}]]``) become Keras 3's tensor references. Initializers,
    regularizers and constraints without ``module`` need nothing: they are Keras' own."""
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ValueError("its model_config is not a Keras model config {'class_name': ..., 'config': ...}")
    config = dict(doc["config"])
    functional = doc.get("class_name") in ("Functional", "Model")
    if not isinstance(config.get("layers"), list):
        raise ValueError("its model_config has no list of layers")
    layers = [_legacy_layer_config(s, f"layer {i}", functional) for i, s in enumerate(config["layers"])]
    if not functional and layers and isinstance(doc["config"]["layers"][0], dict):
        first = doc["config"]["layers"][0]
        shape = (first.get("config") or {}).get("batch_input_shape") if isinstance(first.get("config"), dict) \
            else None
        if first.get("class_name") != "InputLayer" and shape is not None:
            layers.insert(0, {"class_name": "InputLayer",
                              "config": {"batch_shape": shape, "name": "input_layer"}})
    config["layers"] = layers
    return {"class_name": doc.get("class_name"), "config": config}


def from_legacy_training(training_config: Any, single_output: bool = True) -> dict[str, Any]:
    """A legacy HDF5 file's ``training_config`` as Keras 3's ``compile_config`` for
    :func:`from_keras_compile`: ``optimizer_config`` becomes ``optimizer`` (tf.keras
    2.11+'s ``Custom>Adam`` spelling of a built-in optimizer is read as ``Adam``), and
    tf.keras 2.x's ``decay`` argument is dropped with Keras 3's warning
    (Keras 3 ignores it too); a trained tf.keras 2.x model's metrics, saved as
    ``MeanMetricWrapper`` objects nested per output, are read by name."""
    import warnings

    if not isinstance(training_config, dict):
        raise ValueError("its training_config is not a JSON object")
    out = {k: v for k, v in training_config.items() if k != "optimizer_config"}
    opt = training_config.get("optimizer_config")
    if isinstance(opt, dict) and isinstance(opt.get("class_name"), str) and opt["class_name"].startswith("Custom>"):
        opt = {**opt, "class_name": opt["class_name"][len("Custom>"):]}
    if isinstance(opt, dict) and isinstance(opt.get("config"), dict) and "decay" in opt["config"]:
        opt = {**opt, "config": {k: v for k, v in opt["config"].items() if k != "decay"}}
        if training_config["optimizer_config"]["config"]["decay"] is not None:  # (Keras 3 warns at 0.0 too)
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", UserWarning, stacklevel=3)
    out["optimizer"] = opt
    for key in ("metrics", "weighted_metrics"):
        if out.get(key) is not None:
            out[key] = _legacy_metrics(out[key], single_output)
    return out


def _legacy_metric(spec: Any) -> Any:
    """tf.keras 2.x's ``MeanMetricWrapper`` of a built-in metric function (how a trained
    model's ``metrics=["accuracy"]`` is saved) as the name it was compiled with."""
    if isinstance(spec, dict) and spec.get("class_name") == "MeanMetricWrapper" and isinstance(
            spec.get("config"), dict) and isinstance(spec["config"].get("fn"), str):
        name = spec["config"].get("name")
        return name if name in ("accuracy", "acc") else spec["config"]["fn"]
    return spec


def _legacy_metrics(value: Any, single_output: bool) -> Any:
    if isinstance(value, list):
        if single_output and len(value) == 1 and isinstance(value[0], list):
            value = value[0]  # tf.keras 2.x nests a single output's metrics: [[...]]
        return [_legacy_metrics(v, False) if isinstance(v, list) else _legacy_metric(v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _legacy_metrics(v, False) if isinstance(v, list) else _legacy_metric(v) for k, v in value.items()}
    return _legacy_metric(value)
