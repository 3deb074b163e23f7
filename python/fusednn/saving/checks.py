"""Checks that keep a hostile model file from costing more than its size to load.

:mod:`fusednn.saving.model_file` runs them in this order, each before anything large is
allocated:

1. the path must name a regular file (``/dev/zero``, a FIFO or a directory is a
   ValueError at once, never a blocked or endless read);
2. the zip members, located from the central directory and their local headers,
   must lie inside the file and must not overlap one another or the directory
   (the zip format allows overlapping members; Python's ``zipfile`` reads them, so
   one 1 MB file could otherwise hold gigabytes of "arrays");
3. the shape of every weight each declared layer would create, worked out from the
   layer configs *without building them*, must equal the shape of the array the
   file actually holds for it: a file cannot declare ``Dense(20000)`` on 20,000
   inputs without also holding those 400 million floats, and a file whose weights
   do not cover its layers (e.g. empty weight lists) is a ValueError, not a freshly
   initialised model.

Layer classes fusednn does not know (user layers, or layers that create weights in
their own ``build``) can publish ``weight_shapes(input_dim) -> list[tuple[int, ...]]``;
without it their weights are checked by ``set_weights`` after building.
"""
from __future__ import annotations

import errno
import os
import stat
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra field length


def read_regular_file(path: str) -> bytes:
    """The bytes of ``path``; ValueError (at once, without blocking) unless it is a
    regular file."""
    # O_NONBLOCK: opening a FIFO without a writer must not hang; it is refused below.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        if e.errno == errno.ENXIO:  # a UNIX socket (or a device without its driver)
            raise ValueError(f"{path} is not a regular file, so not a fusednn model file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
            raise ValueError(f"{path} is {kind}, not a fusednn model file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def check_members(zf: zipfile.ZipFile, data: bytes) -> None:
    """ValueError unless every member's local header and data lie inside ``data``,
    before the central directory, without overlapping any other member."""
    spans = []
    end_of_members = getattr(zf, "start_dir", len(data))
    for info in zf.infolist():
        offset = info.header_offset
        if offset < 0 or offset + _LOCAL_HEADER.size > len(data):
            raise ValueError(f"zip member {info.filename!r} starts outside the file")
        signature, name_len, extra_len = _LOCAL_HEADER.unpack_from(data, offset)
        if signature != b"PK\x03\x04":
            raise ValueError(f"zip member {info.filename!r} has no local header where the directory says")
        end = offset + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
        if end > end_of_members:
            raise ValueError(f"zip member {info.filename!r} runs past the end of the archive's members")
        spans.append((offset, end, info.filename))
    spans.sort()
    for (_, end, name), (start, _, other) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(f"zip members {name!r} and {other!r} overlap")


def _weight_shapes(layer: Any, input_dim: int) -> list[tuple[int, ...]] | None:
    """The shapes of the weights ``layer`` creates when built for ``input_dim``
    features, without building it; None when it cannot be known in advance."""
    from ..layers import Dense, Layer, Normalization

    published = getattr(layer, "weight_shapes", None)
    if callable(published):
        return [tuple(int(d) for d in s) for s in published(input_dim)]
    build = type(layer).build
    if build is Dense.build:
        return [(input_dim, layer.units)] + ([(layer.units,)] if layer.use_bias else [])
    if build is Layer.build or build is Normalization.build:  # these create no weights
        return []
    return None


def check_declared_shapes(doc: dict[str, Any], arrays: Mapping[str, Any], layer_registry: Any,
                          custom_objects: Mapping[str, type] | None) -> None:
    """ValueError unless the weights every declared layer would create match, in number
    and shape, the arrays the file holds for it (see the module docstring). Layers are
    constructed but not built, so nothing is allocated for their weights."""
    from .. import registry

    config = doc["model"]["config"]
    specs, names = config.get("layers"), doc.get("weights")
    if not isinstance(specs, list):
        raise ValueError("its architecture has no list of layers")
    if "input_layers" in config:  # a functional model (fusednn.Model): a layer graph
        _check_graph_shapes(specs, names, arrays, layer_registry, custom_objects)
        return
    if not isinstance(names, list) or len(names) != len(specs) or \
            not all(isinstance(n, list) and all(isinstance(s, str) for s in n) for n in names):
        raise ValueError(f"its weight list does not match the model's {len(specs)} layers")
    layers = [registry.deserialize(spec, layer_registry, custom_objects) for spec in specs]
    shape = config.get("input_shape")
    dim = None
    if shape is not None:
        if not (isinstance(shape, list) and len(shape) == 2 and type(shape[1]) is int and shape[1] >= 1):
            raise ValueError(f"its input shape {shape!r} is not [null, features]")
        dim = shape[1]
    elif layers and layers[0].input_dim is not None:
        dim = layers[0].input_dim  # e.g. a Normalization layer that knows its size from its statistics
    for i, (layer, stored) in enumerate(zip(layers, names)):
        missing = [n for n in stored if n not in arrays]
        if missing:
            raise ValueError(f"its weight list names arrays it does not hold: {', '.join(missing[:3])}")
        got = [tuple(arrays[n].shape) for n in stored]
        if dim is None:  # an unbuilt model: it cannot have weights
            if got:
                raise ValueError(f"layer {i} ({layer.name!r}) has stored weights but the model has no input shape")
            continue
        want = _weight_shapes(layer, dim)
        if want is not None and want != got:
            raise ValueError(f"layer {i} ({type(layer).__name__} {layer.name!r}) on {dim} input features has "
                             f"weights of shapes {want}, but the file holds {got or 'none'}")
        dim = layer.output_dim(dim)
        if type(dim) is not int or dim < 1:
            raise ValueError(f"layer {i} ({layer.name!r}) declares {dim!r} output features")


def check_build_fits(layers: list[Any], input_dim: Any, stored: list[tuple[int, ...]]) -> None:
    """ValueError unless building ``layers`` (a user's unbuilt model) for the file's
    ``input_dim`` creates weights of exactly the ``stored`` shapes; checked before
    building, so a file cannot make ``load_weights`` allocate for a size it lies about."""
    if type(input_dim) is not int or input_dim < 1:
        raise ValueError(f"its input shape holds {input_dim!r} features")
    want: list[tuple[int, ...]] = []
    dim = input_dim
    for layer in layers:
        shapes = _weight_shapes(layer, dim)
        if shapes is None:
            return  # a layer whose weights only its build knows: set_weights checks after building
        want += shapes
        dim = layer.output_dim(dim)
    if want != stored:
        raise ValueError(f"its weights (shapes {stored[:4]}{'...' if len(stored) > 4 else ''}) do not fit this "
                         f"model built for {input_dim} features (shapes {want[:4]}{'...' if len(want) > 4 else ''})")


def declared_weight_shapes(layers: list[Any], input_dim: int | None) -> list[list[tuple[int, ...]] | None]:
    """The shapes of the weights each of ``layers`` (unbuilt) creates when the model is
    built for ``input_dim`` features, worked out from their configs without building;
    None for a layer whose weights only its own ``build`` knows (the caller checks those
    after building); ValueError for a layer that declares no positive output size."""
    if input_dim is None:
        return [[] for _ in layers]
    out: list[list[tuple[int, ...]] | None] = []
    dim = input_dim
    for i, layer in enumerate(layers):
        out.append(_weight_shapes(layer, dim))
        dim = layer.output_dim(dim)
        if type(dim) is not int or dim < 1:
            raise ValueError(f"layer {i} ({layer.name!r}) declares {dim!r} output features")
    return out


def _check_graph_shapes(specs: list[Any], names: Any, arrays: Mapping[str, Any], layer_registry: Any,
                        custom_objects: Mapping[str, type] | None) -> None:
    """:func:`check_declared_shapes` for a functional model's config (Keras' layout:
    InputLayers with ``batch_shape``, then layers with ``inbound_nodes``): each layer's
    input features follow the graph; ``names`` lists the stored weights of the layers
    other than the InputLayers, in config order."""
    import math

    from .. import registry

    compute = [s for s in specs if not (isinstance(s, dict) and s.get("class_name") == "InputLayer")]
    # a functional model's InputLayers are layers (no weights); a traced subclassed model's are not
    with_inputs = isinstance(names, list) and len(names) == len(specs) and len(specs) != len(compute)
    if with_inputs:
        if any(names[j] for j, spec in enumerate(specs) if isinstance(spec, dict) and spec.get("class_name") == "InputLayer"):
            raise ValueError("its weight list gives an InputLayer weights")
        names = [n for n, spec in zip(names, specs) if not (isinstance(spec, dict) and spec.get("class_name") == "InputLayer")]
    if not isinstance(names, list) or len(names) != len(compute) or \
            not all(isinstance(n, list) and all(isinstance(s, str) for s in n) for n in names):
        raise ValueError(f"its weight list does not match the model's {len(compute)} layers")
    dims: dict[str, int] = {}
    i = 0
    for spec in specs:
        if not isinstance(spec, dict):
            raise ValueError(f"bad layer entry {spec!r:.100}")
        name = spec.get("name")
        if spec.get("class_name") == "InputLayer":
            shape = (spec.get("config") or {}).get("batch_shape")
            if not (isinstance(shape, list) and len(shape) >= 2 and all(type(d) is int and d >= 1 for d in shape[1:])):
                raise ValueError(f"input {name!r} has no valid batch_shape: {shape!r}")
            dims[name] = int(math.prod(shape[1:]))
            continue
        layer = registry.deserialize({"class_name": spec.get("class_name"), "config": spec.get("config")},
                                     layer_registry, custom_objects)
        nodes = spec.get("inbound_nodes")
        try:
            refs = nodes[0]["args"][0]
            refs = refs if isinstance(refs, list) and refs and isinstance(refs[0], dict) else [refs]
            ins = [dims[r["config"]["keras_history"][0]] for r in refs]
        except (TypeError, KeyError, IndexError):
            raise ValueError(f"layer {name!r} has no readable inbound node (or one on a later layer)") from None
        stored = names[i]
        missing = [n for n in stored if n not in arrays]
        if missing:
            raise ValueError(f"its weight list names arrays it does not hold: {', '.join(missing[:3])}")
        got = [tuple(arrays[n].shape) for n in stored]
        if len(ins) == 1:
            want = _weight_shapes(layer, ins[0])
            out = layer.output_dim(ins[0])
        else:
            want = []
            layer.build(ins)  # a merge layer: checks the shapes, allocates nothing
            out = layer.output_dim()
        if want is not None and want != got:
            raise ValueError(f"layer {name!r} ({type(layer).__name__}) on {ins} input features has weights of "
                             f"shapes {want}, but the file holds {got or 'none'}")
        if type(out) is not int or out < 1:
            raise ValueError(f"layer {name!r} declares {out!r} output features")
        dims[name] = out
        i += 1
