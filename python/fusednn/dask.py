"""Batch inference over Dask: ``predict(model, x)`` maps the model over the row blocks of
a Dask array or the partitions of a Dask DataFrame, on whatever scheduler is active (a
``distributed.Client`` to a cluster, or Dask's local threads).

The model travels as its saved file (the ``.npz`` of :meth:`Sequential.save`, plain
bytes, no pickled Python objects): it is one task of the graph, so each worker receives
it once and every block on that worker uses it; each worker thread loads it once (a
model's buffers are not shared between threads) and keeps it for later blocks of the
same model. Needs the ``dask`` extra (``pip install 'fusednn[dask]'``).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from typing import Any

import numpy as np

_local = threading.local()  # per worker thread: {digest: model}
_loads = 0  # how many times this process loaded a model file (tests count it)
_loads_lock = threading.Lock()


def _require_dask() -> Any:
    try:
        import dask
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("fusednn.dask needs Dask: pip install 'fusednn[dask]'") from e
    return dask


def model_bytes(model: Any) -> bytes:
    """``model`` as the bytes of its saved file (weights and architecture; no optimizer
    state, which inference does not need)."""
    from .saving import save_model

    if not getattr(model, "built", False):
        raise ValueError("predict needs a built model (fit it, build it, or load one)")
    fd, path = tempfile.mkstemp(suffix=".npz")
    os.close(fd)
    try:
        save_model(model, path, include_optimizer=False)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def _model(blob: bytes, digest: str) -> Any:
    """The model of ``blob`` for this thread, loaded from the file bytes on first use."""
    global _loads
    cache = getattr(_local, "models", None)
    if cache is None:
        cache = _local.models = {}
    model = cache.get(digest)
    if model is None:
        from .saving import load_model

        fd, path = tempfile.mkstemp(suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            model = load_model(path, compile=False)
        finally:
            os.unlink(path)
        cache.clear()  # keep one model per thread: a new model replaces the last
        cache[digest] = model
        with _loads_lock:
            _loads += 1
    return model


def _predict_block(block: np.ndarray, blob: bytes, digest: str, batch_size: int) -> np.ndarray:
    return _model(blob, digest).predict(np.asarray(block), batch_size=batch_size, verbose=0)


def _predict_frame(frame: Any, blob: bytes, digest: str, batch_size: int, columns: list[str]) -> Any:
    import pandas as pd

    out = _model(blob, digest).predict(frame.to_numpy(dtype=np.float32), batch_size=batch_size, verbose=0)
    return pd.DataFrame(out, index=frame.index, columns=columns)


def predict(model: Any, data: Any, batch_size: int = 1024) -> Any:
    """Lazy predictions of ``model`` for ``data``, a 2-D Dask array (n, features) —
    rechunked so each block holds whole rows — or a Dask DataFrame whose columns are the
    features in order. Returns a Dask array (n, outputs) of float32, or a Dask DataFrame
    with the same index and columns ``output_0 ... output_{k-1}``; call ``.compute()``
    (or persist) to run it. The model is shipped as its saved file, once per worker."""
    dask = _require_dask()
    import dask.array as da

    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    blob = model_bytes(model)
    digest = hashlib.sha256(blob).hexdigest()
    shipped = dask.delayed(blob, name=f"fusednn-model-{digest[:16]}", pure=True)
    n_in, n_out = model.input_shape[1], model.output_shape[1]
    if isinstance(data, da.Array):
        if data.ndim != 2 or data.shape[1] != n_in:
            raise ValueError(f"data must be a 2-D Dask array with {n_in} columns, got shape {data.shape}")
        data = data.rechunk({1: -1})
        return data.map_blocks(_predict_block, shipped, digest, int(batch_size), dtype=np.float32,
                               chunks=(data.chunks[0], (n_out,)), meta=np.empty((0, n_out), np.float32))
    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover
        dd = None
    if dd is not None and isinstance(data, dd.DataFrame):
        if len(data.columns) != n_in:
            raise ValueError(f"data must have {n_in} feature columns, got {len(data.columns)}")
        import pandas as pd

        columns = [f"output_{i}" for i in range(n_out)]
        meta = pd.DataFrame({c: pd.Series(dtype=np.float32) for c in columns})
        return data.map_partitions(_predict_frame, shipped, digest, int(batch_size), columns, meta=meta)
    raise TypeError(f"data must be a dask.array.Array or a dask.dataframe.DataFrame, got {type(data).__name__}")


def loads_in_this_process() -> int:
    """How many model files this process has loaded for :func:`predict` (for tests and
    monitoring: with one thread per worker it stays at one per model)."""
    return _loads
