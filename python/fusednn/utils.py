"""Reproducibility: one seed for weight initialisation and shuffling.

Every random number fusednn draws (initial weights, the order of samples in
each epoch) comes from one host NumPy generator, so a seed gives the same
numbers on every backend; device arrays are filled from the host afterwards.
"""
from __future__ import annotations

import random

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
