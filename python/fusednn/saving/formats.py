"""Which file format ``save``/``load_model``/``save_weights``/``load_weights`` use.

Writing goes by the name: ``.keras`` is a Keras 3 archive and ``.weights.h5`` Keras 3's
weights file (:mod:`.keras_archive`, needs h5py); every other name is fusednn's own
``.npz`` model file (:mod:`.model_file`). Reading goes by the content, so a file keeps
loading whatever it is called: a zip holding ``config.json`` is a Keras archive, an HDF5
file a Keras weights file, anything else is read as fusednn's format (which says what is
wrong with a file that is none of these); fusednn files saved under a ``.keras`` name by
earlier versions still load.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import keras_archive, model_file
from .checks import read_regular_file
from .keras_h5 import HDF5_SIGNATURE

if TYPE_CHECKING:
    from ..models import Sequential


def _is_keras_name(filepath: str | os.PathLike) -> bool:
    return os.fspath(filepath).lower().endswith(".keras")


def _is_keras_weights_name(filepath: str | os.PathLike) -> bool:
    return os.fspath(filepath).lower().endswith(".weights.h5")


def save_model(model: "Sequential", filepath: str | os.PathLike, overwrite: bool = True,
               include_optimizer: bool = True) -> None:
    """Save ``model`` to ``filepath``: a Keras 3 archive for a ``.keras`` name (Keras 3
    loads it), else fusednn's ``.npz`` model file (see :mod:`.model_file`)."""
    if _is_keras_name(filepath):
        keras_archive.save_model(model, filepath, overwrite=overwrite, include_optimizer=include_optimizer)
    else:
        model_file.save_model(model, filepath, overwrite=overwrite, include_optimizer=include_optimizer)


def save_weights(model: "Sequential", filepath: str | os.PathLike, overwrite: bool = True) -> None:
    """Save ``model``'s weights: Keras 3's HDF5 layout for a ``.weights.h5`` name,
    else fusednn's ``.npz`` format."""
    if _is_keras_weights_name(filepath):
        keras_archive.save_weights(model, filepath, overwrite=overwrite)
    else:
        model_file.save_weights(model, filepath, overwrite=overwrite)


def load_model(filepath: str | os.PathLike, custom_objects: Mapping[str, type] | None = None,
               compile: bool = True) -> "Sequential":
    """Load a model saved by :func:`save_model` (either format) or by Keras 3
    (``model.save("x.keras")``), on the active backend; ValueError for a file that is
    neither, saying what is wrong with it."""
    path = os.fspath(filepath)
    data = read_regular_file(path)
    if keras_archive.is_keras_archive(data):
        return keras_archive.load_model(path, custom_objects=custom_objects, compile=compile, data=data)
    if data.startswith(HDF5_SIGNATURE):
        raise ValueError(f"{path} is an HDF5 file: a weights file (load it with model.load_weights) or a legacy "
                         "Keras 2 .h5 model, which fusednn does not read; save the model as .keras")
    return model_file.load_model(path, custom_objects=custom_objects, compile=compile)


def load_weights(model: "Sequential", filepath: str | os.PathLike) -> None:
    """Set ``model``'s weights from a Keras 3 ``.weights.h5`` file or ``.keras``
    archive, or from a fusednn file of :func:`save_weights` / :func:`save_model`."""
    path = os.fspath(filepath)
    data = read_regular_file(path)
    if data.startswith(HDF5_SIGNATURE) or keras_archive.is_keras_archive(data):
        keras_archive.load_weights(model, path, data=data)
    else:
        model_file.load_weights(model, path)
