"""Reproducibility: one seed for weight initialisation and shuffling.

Every random number fusednn draws (initial weights, the order of samples in
each epoch) comes from one host NumPy generator, so a seed gives the same
numbers on every backend; device arrays are filled from the host afterwards.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np

from .py_dataset import PyDataset  # noqa: F401  (keras.utils.PyDataset)

_rng = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Seed fusednn's generator (initialisers, shuffling) and, as Keras does,
    Python's ``random`` and NumPy's legacy global generator, so that a program
    that also draws its data with ``np.random`` becomes deterministic too."""
    global _rng
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _rng = np.random.default_rng(seed)


def rng(seed: int | None = None) -> np.random.Generator:
    """The generator to draw from: a fresh one for an explicit ``seed``, else the
    shared one that :func:`set_random_seed` resets."""
    return np.random.default_rng(seed) if seed is not None else _rng


def to_categorical(x: Any, num_classes: int | None = None) -> np.ndarray:
    """``keras.utils.to_categorical``: one-hot rows for integer class labels, as Keras 3
    computes them: a trailing axis of size 1 is dropped first (labels of shape (n, 1)
    give (n, num_classes)), the class axis goes last, ``num_classes`` defaults to
    ``max(x) + 1``, and the result is a float64 NumPy array (Keras 3's dtype; fit
    converts it to float32 once). Labels that are negative, not whole numbers or not
    below ``num_classes`` raise ValueError (Keras would wrap or fail with an IndexError)."""
    values = np.asarray(x)
    if values.dtype == object or not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise ValueError(f"to_categorical takes numeric class labels, got dtype {values.dtype}")
    if values.size and not np.issubdtype(values.dtype, np.integer) and values.dtype != bool:
        if not np.isfinite(values).all() or (values != np.floor(values)).any():
            raise ValueError("to_categorical: class labels must be whole numbers (0, 1, ...), "
                             "got non-integral or non-finite values")
    labels = values.astype(np.int64)
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:  # (n, 1) -> (n, num_classes), as Keras
        shape = shape[:-1]
    flat = labels.reshape(-1)
    if flat.size and flat.min() < 0:
        raise ValueError(f"to_categorical: class labels must be >= 0, got {int(flat.min())}")
    if not num_classes:  # Keras treats 0 and None alike here
        if flat.size == 0:
            raise ValueError("to_categorical: cannot infer num_classes from no labels; pass num_classes")
        num_classes = int(flat.max()) + 1
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    if flat.size and flat.max() >= num_classes:
        raise ValueError(f"to_categorical: label {int(flat.max())} is not below num_classes={num_classes}")
    out = np.zeros((flat.size, num_classes))
    out[np.arange(flat.size), flat] = 1.0
    return out.reshape(shape + (num_classes,))


def normalize(x: Any, axis: int = -1, order: int | float = 2) -> np.ndarray:
    """``keras.utils.normalize``: ``x`` divided by its ``order``-norm along ``axis``
    (``np.linalg.norm``'s orders), a zero norm left as 1 so zero vectors stay zero. A
    copy is returned, in ``x``'s floating dtype (float64 for integer input), as Keras'
    NumPy path does."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if x.ndim == 0:
        raise ValueError("normalize needs an array with at least one axis, got a scalar")
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis if axis is not None else -1)

