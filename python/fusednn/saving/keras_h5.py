"""Keras 3's HDF5 weights layout (``model.weights.h5`` inside a ``.keras`` archive, and
the ``.weights.h5`` files of ``save_weights``), read and written with h5py.

The layout: ``layers/<key>/vars/<i>`` holds weight ``i`` of each layer of the model, where
``<key>`` is the snake-case class name numbered by class (``dense``, ``dense_1``, ... see
:func:`.keras_config.weight_keys`), ``optimizer/vars/<i>`` the optimizer's variables
(``iterations``, the learning rate unless it is a schedule, then the state Keras' optimizer
builds, in its order: see :func:`optimizer_to_keras`), and an empty ``vars`` group for the
model itself. h5py is an optional dependency (``pip install "fusednn[keras]"``).

Reading is defensive: every name must be a hard link (no external or soft links), every
dataset stored contiguously inside the file (no external storage, virtual datasets, or
compression filters that could inflate), of the shape the model config implies and of a
float dtype (NaN values are allowed), all checked from the metadata *before* a byte of data
is read; so reading costs at most the file's size in memory. Anything else is a ValueError
saying what and where.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def require_h5py() -> Any:
    """The h5py module, or an ImportError saying how to install it."""
    try:
        import h5py
    except ImportError:
        raise ImportError("reading and writing Keras 3 files (.keras, .weights.h5) needs h5py: "
                          'pip install "fusednn[keras]" (or pip install h5py)') from None
    return h5py


# ------------------------------------------------------------------------------ reading
class WeightsFile:
    """An opened Keras weights file (bytes in memory), with checked access to its
    datasets; use as a context manager."""

    def __init__(self, data: bytes, label: str) -> None:
        h5py = require_h5py()
        self._h5py, self._size, self.label = h5py, len(data), label
        if not data.startswith(HDF5_SIGNATURE):
            raise ValueError(f"{label} is not an HDF5 file")
        try:
            self._file = h5py.File(io.BytesIO(data), "r")
        except Exception as e:  # noqa: BLE001 - HDF5 reports damage with several error types
            raise ValueError(f"{label} is not a readable HDF5 file: {e}") from None

    def __enter__(self) -> "WeightsFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()

    def _node(self, path: str) -> Any:
        h5py = self._h5py
        node = self._file
        for part in path.split("/"):
            try:
                link = node.get(part, getlink=True)
                if link is None:
                    return None
                if not isinstance(link, h5py.HardLink):
                    raise ValueError(f"{path!r} is a {type(link).__name__}, not stored in the file itself")
                node = node[part]
            except Exception as e:  # noqa: BLE001 - HDF5 reports damage as KeyError, RuntimeError, OSError...
                raise ValueError(f"{self.label}: cannot read {path!r}: {e}") from None
        return node

    @property
    def h5py(self) -> Any:
        """The h5py module."""
        return self._h5py

    @property
    def file(self) -> Any:
        """The open ``h5py.File``."""
        return self._file

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return self._size

    def node(self, path: str) -> Any:
        """The object at ``path``, reached through hard links only; None if absent."""
        return self._node(path)

    def count(self, path: str) -> int | None:
        """The number of variables in group ``path`` (``.../vars``); None if it is absent."""
        node = self._node(path)
        if node is None:
            return None
        if not isinstance(node, self._h5py.Group):
            raise ValueError(f"{self.label}: {path!r} is not a group")
        try:
            names = list(node.keys())
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{self.label}: cannot list {path!r}: {e}") from None
        if not all(isinstance(n, str) for n in names) or \
                sorted(names, key=lambda n: (len(n), n)) != [str(i) for i in range(len(names))]:
            raise ValueError(f"{self.label}: the variables in {path!r} are not named 0..{len(names) - 1}: "
                             f"{names[:5]}")
        return len(names)

    def dataset_shape(self, path: str) -> tuple[int, ...]:
        """The shape of dataset ``path`` (from its metadata; nothing is read)."""
        ds = self._dataset(path)
        try:
            return tuple(int(d) for d in ds.shape)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{self.label}: cannot read the shape of {path!r}: {e}") from None

    def _dataset(self, path: str) -> Any:
        ds = self._node(path)
        if ds is None:
            raise ValueError(f"{self.label}: {path!r} is missing")
        if not isinstance(ds, self._h5py.Dataset):
            raise ValueError(f"{self.label}: {path!r} is not a dataset")
        return ds

    def read(self, path: str, shape: Sequence[int] | None, integer: bool = False) -> np.ndarray:
        """Dataset ``path`` as float32 (int64 with ``integer``), after checking its
        shape (when given), dtype and storage; ValueError otherwise."""
        try:
            return self._read(path, shape, integer)
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 - damaged metadata surfaces as many error types
            raise ValueError(f"{self.label}: cannot read {path!r}: {type(e).__name__}: {e}") from None

    def _read(self, path: str, shape: Sequence[int] | None, integer: bool) -> np.ndarray:
        ds = self._dataset(path)
        if shape is not None and tuple(ds.shape) != tuple(shape):
            raise ValueError(f"{self.label}: {path!r} has shape {tuple(ds.shape)}, the model needs {tuple(shape)}")
        kind = ds.dtype.kind
        if integer:
            if kind not in "iu" and not (kind == "f" and ds.shape == ()):
                raise ValueError(f"{self.label}: {path!r} holds {ds.dtype}, expected an integer")
        elif kind != "f" or ds.dtype.itemsize not in (2, 4, 8):
            raise ValueError(f"{self.label}: {path!r} holds {ds.dtype} values; weights must be floats")
        if ds.is_virtual or ds.external or ds.chunks is not None or ds.compression is not None:
            raise ValueError(f"{self.label}: {path!r} is not stored contiguously in the file (chunked, "
                             "compressed, virtual or external storage is not read)")
        nbytes = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
        offset = ds.id.get_offset()
        if nbytes and (offset is None or offset < 0 or offset + nbytes > self._size):
            raise ValueError(f"{self.label}: the data of {path!r} ({nbytes} bytes) does not lie inside the file")
        try:
            value = ds[()]
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{self.label}: cannot read {path!r}: {e}") from None
        if integer:
            value = np.asarray(value)
            if value.dtype.kind == "f" and (not np.isfinite(value).all() or value != np.floor(value)):
                raise ValueError(f"{self.label}: {path!r} is not a whole number")
            return value.astype(np.int64)
        return np.array(value, dtype=np.float32, order="C")  # (ascontiguousarray would make a scalar 1-D)


def read_layer_weights(wf: WeightsFile, keys: Sequence[str], shapes: Sequence[Sequence[tuple[int, ...]]],
                       skip: frozenset[str] = frozenset()) -> list[list[np.ndarray]]:
    """Each layer's weights from ``layers/<key>/vars``, checked to be exactly ``shapes``
    (number and shape) before any is read; layers in ``skip`` (read otherwise) are not."""
    for key, want in zip(keys, shapes):
        if key in skip:
            continue
        n = wf.count(f"layers/{key}/vars")
        if n is None and want:
            raise ValueError(f"{wf.label}: it holds no weights for layer {key!r} (expected {len(want)} arrays)")
        if (n or 0) != len(want):
            raise ValueError(f"{wf.label}: layer {key!r} has {n} weight arrays, the model needs {len(want)}")
        for i, s in enumerate(want):
            got = wf.dataset_shape(f"layers/{key}/vars/{i}")
            if got != tuple(s):
                raise ValueError(f"{wf.label}: weight {i} of layer {key!r} has shape {got}, the model needs "
                                 f"{tuple(s)}")
    return [[] if key in skip else [wf.read(f"layers/{key}/vars/{i}", s) for i, s in enumerate(want)]
            for key, want in zip(keys, shapes)]


# ------------------------------------------------------------------------------ writing
def write_file(layer_keys: Sequence[str], layer_names: Sequence[str], weights: Sequence[Sequence[np.ndarray]],
               model_name: str, optimizer: tuple[str, list[np.ndarray]] | None) -> bytes:
    """The bytes of a Keras 3 weights file: each layer's ``weights`` under its key (with
    its name as the ``name`` attribute, as Keras writes it), then the optimizer's
    ``(name, variables)`` when given."""
    h5py = require_h5py()
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        layers = f.create_group("layers")
        for key, name, ws in zip(layer_keys, layer_names, weights):
            group = layers.create_group(key).create_group("vars")
            group.attrs["name"] = name
            for i, w in enumerate(ws):
                group.create_dataset(str(i), data=np.ascontiguousarray(w, dtype=np.float32))
        if optimizer is not None:
            group = f.create_group("optimizer").create_group("vars")
            group.attrs["name"] = optimizer[0]
            for i, v in enumerate(optimizer[1]):
                group.create_dataset(str(i), data=v)
        f.create_group("vars").attrs["name"] = model_name
    return buf.getvalue()


# ------------------------------------------------------------------------------ optimizers
#: per Keras optimizer class: how its state groups are created (each number is how many
#: of fusednn's state kinds, in order, Keras creates interleaved per variable in one call)
_GROUPS = {"Adam": (2, 1), "AdamW": (2, 1), "Nadam": (2,), "Adadelta": (2,), "Adamax": (2,),
           "RMSprop": (1, 1, 1), "Adagrad": (1,), "Lion": (1,), "SGD": (1,)}


def _nadam_u_product(beta_1: float, t: int) -> float:
    u, b1 = 1.0, float(np.float32(beta_1))
    for s in range(1, t + 1):
        u = u * b1 * (1.0 - 0.5 * 0.96 ** s)
    return u


def _layout(opt: Any, n_params: int, n_state: int) -> tuple[int, int, tuple[int, ...]]:
    """(number of state kinds, whether EMA arrays follow, interleave groups) of ``opt``'s
    :meth:`get_state` arrays over ``n_params`` parameters."""
    cls = type(opt).__name__
    if cls not in _GROUPS:
        raise ValueError(f"optimizer {cls} has no Keras 3 variable layout")
    ema = 1 if getattr(opt, "use_ema", False) else 0
    if n_params == 0:
        return 0, ema, ()
    kinds = n_state // n_params - ema
    if kinds < 0 or (kinds + ema) * n_params != n_state:
        raise ValueError(f"optimizer {cls}: {n_state} state arrays do not divide over {n_params} parameters")
    groups, left = [], kinds
    for g in _GROUPS[cls]:
        if left <= 0:
            break
        groups.append(min(g, left))
        left -= groups[-1]
    if left:
        raise ValueError(f"optimizer {cls}: {kinds} state kinds do not fit Keras' layout {_GROUPS[cls]}")
    return kinds, ema, tuple(groups)


def _has_lr_variable(opt: Any) -> bool:
    return not isinstance(opt.get_config().get("learning_rate"), dict)


def has_lr_variable(opt: Any) -> bool:
    """Whether Keras keeps ``opt``'s learning rate as a variable (not a schedule)."""
    return _has_lr_variable(opt)


def state_groups(opt: Any, n_params: int, n_state: int) -> tuple[int, ...]:
    """How Keras interleaves ``opt``'s state kinds per variable (see :func:`optimizer_to_keras`)."""
    return _layout(opt, n_params, n_state)[2]


def optimizer_to_keras(opt: Any, n_params: int, built: bool) -> list[np.ndarray]:
    """``opt``'s state as Keras 3 orders its optimizer variables: ``iterations``, the
    learning rate (unless it is a schedule), the EMA averages, then each group of state
    kinds interleaved per parameter (e.g. Adam: m0, v0, m1, v1, ..., then amsgrad's
    maxima); Nadam ends with its running ``u_product``. An optimizer not ``built`` for
    the model gives ``iterations`` and the learning rate only (what Keras writes then)."""
    lr = [np.asarray(opt.learning_rate, dtype=np.float32)] if _has_lr_variable(opt) else []
    if not built:
        return [np.asarray(0, dtype=np.int64), *lr]
    iterations, state = opt.get_state()
    kinds, ema, groups = _layout(opt, n_params, len(state))
    out = [np.asarray(int(iterations), dtype=np.int64), *lr]
    chunk = [state[k * n_params:(k + 1) * n_params] for k in range(kinds + ema)]
    if ema:
        out += chunk[kinds]
    k = 0
    for g in groups:
        for p in range(n_params):
            out += [chunk[k + j][p] for j in range(g)]
        k += g
    if type(opt).__name__ == "Nadam" and n_params:
        out.append(np.asarray(_nadam_u_product(opt.beta_1, int(iterations)), dtype=np.float32))
    return out


def optimizer_from_keras(opt: Any, wf: WeightsFile, shapes: Sequence[tuple[int, ...]]) -> str | None:
    """Restore ``opt`` (built for parameters of ``shapes``) from the file's
    ``optimizer/vars``; returns None when done, else why the state was left fresh (no
    optimizer variables in the file, or a layout that does not match, as Keras warns)."""
    n = wf.count("optimizer/vars")
    if n is None or n == 0:
        return "the file holds no optimizer variables"
    n_params = len(shapes)
    iterations, state = opt.get_state()
    kinds, ema, groups = _layout(opt, n_params, len(state))
    has_lr = _has_lr_variable(opt)
    head = 1 + has_lr
    nadam = 1 if type(opt).__name__ == "Nadam" and n_params else 0
    want = head + (kinds + ema) * n_params + nadam
    unbuilt = n == head < want  # Keras saved it before it was built: only the step count and the rate
    if n != want and not unbuilt:
        return (f"the file holds {n} optimizer variables, {type(opt).__name__} on this model keeps {want} "
                "(a different optimizer setting or model); the optimizer starts fresh")
    steps = int(wf.read("optimizer/vars/0", (), integer=True))
    if not 0 <= steps < 2**62:
        raise ValueError(f"{wf.label}: optimizer iterations {steps} out of range")
    if has_lr:
        rate = float(wf.read("optimizer/vars/1", ()))
        if not np.isfinite(rate) or rate < 0:
            raise ValueError(f"{wf.label}: the saved learning rate {rate} is not a finite number >= 0")
    if unbuilt:  # a fresh state, at the saved rate
        if has_lr:
            opt.learning_rate = rate
        return None if steps == 0 else "the file holds the step count but no optimizer state"
    chunk: list[list[np.ndarray | None]] = [[None] * n_params for _ in range(kinds + ema)]
    i = head
    if ema:
        for p in range(n_params):
            chunk[kinds][p] = wf.read(f"optimizer/vars/{i}", shapes[p])
            i += 1
    k = 0
    for g in groups:
        for p in range(n_params):
            for j in range(g):
                chunk[k + j][p] = wf.read(f"optimizer/vars/{i}", shapes[p])
                i += 1
        k += g
    opt.set_state(steps, [a for c in chunk for a in c])
    if has_lr:
        opt.learning_rate = rate
    return None
