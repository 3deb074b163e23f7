"""Which file format ``save``/``load_model``/``save_weights``/``load_weights`` use.

Writing goes by the name, as Keras 3 does: ``save`` of a ``.keras`` name writes a Keras 3
archive (:mod:`.keras_archive`), of a ``.h5`` or ``.hdf5`` name Keras' legacy HDF5 model
file (:mod:`.keras_legacy_h5`, logging Keras' "legacy format" warning);
``save_weights`` of a ``.weights.h5`` name writes Keras 3's weights file, and of any
other ``.h5``/``.hdf5`` name raises Keras' ValueError ("The filename must end in
`.weights.h5`"). Every other name is fusednn's own ``.npz`` file (:mod:`.model_file`).
The Keras formats need h5py. Reading goes by the content, so a file keeps loading
whatever it is called: a zip holding ``config.json`` is a Keras archive, an HDF5 file
with a ``model_weights`` group (or ``layer_names``) a legacy Keras model or weights file
(Keras 3's or tf.keras 2.x's), another HDF5 file a Keras 3 weights file, anything else
is read as fusednn's format (which says what is wrong with a file that is none of
these); fusednn files saved under a ``.keras`` or ``.h5`` name by earlier versions still
load.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import keras_archive, keras_legacy_h5, model_file
from .checks import read_regular_file
from .keras_h5 import HDF5_SIGNATURE

if TYPE_CHECKING:
    from ..models import Sequential


def _is_keras_name(filepath: str | os.PathLike) -> bool:
    return os.fspath(filepath).lower().endswith(".keras")


def _is_keras_weights_name(filepath: str | os.PathLike) -> bool:
    return os.fspath(filepath).lower().endswith(".weights.h5")


def _is_h5_name(filepath: str | os.PathLike) -> bool:
    return os.fspath(filepath).lower().endswith((".h5", ".hdf5"))


def save_model(model: "Sequential", filepath: str | os.PathLike, overwrite: bool = True,
               include_optimizer: bool = True) -> None:
    """Save ``model`` to ``filepath``: a Keras 3 archive for a ``.keras`` name, Keras'
    legacy HDF5 model file for a ``.h5``/``.hdf5`` name (Keras 3 and tf.keras load both),
    else fusednn's ``.npz`` model file (see :mod:`.model_file`)."""
    if _is_keras_name(filepath):
        keras_archive.save_model(model, filepath, overwrite=overwrite, include_optimizer=include_optimizer)
    elif _is_h5_name(filepath):
        keras_legacy_h5.save_model(model, filepath, overwrite=overwrite, include_optimizer=include_optimizer)
    else:
        model_file.save_model(model, filepath, overwrite=overwrite, include_optimizer=include_optimizer)


def save_weights(model: "Sequential", filepath: str | os.PathLike, overwrite: bool = True) -> None:
    """Save ``model``'s weights: Keras 3's HDF5 layout for a ``.weights.h5`` name, Keras'
    ValueError for another ``.h5``/``.hdf5`` name, else fusednn's ``.npz`` format."""
    if _is_keras_weights_name(filepath):
        keras_archive.save_weights(model, filepath, overwrite=overwrite)
    elif _is_h5_name(filepath):  # Keras 3.15's check and message (saving_api.save_weights)
        raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={os.fspath(filepath)}")
    else:
        model_file.save_weights(model, filepath, overwrite=overwrite)


def load_model(filepath: str | os.PathLike, custom_objects: Mapping[str, type] | None = None,
               compile: bool = True) -> "Sequential":
    """Load a model saved by :func:`save_model` (any format) or by Keras
    (``model.save("x.keras")``, ``model.save("x.h5")`` of Keras 3 or tf.keras 2.x), on
    the active backend; ValueError for a file that is none of these, saying what is
    wrong with it."""
    path = os.fspath(filepath)
    data = read_regular_file(path)
    if keras_archive.is_keras_archive(data):
        return keras_archive.load_model(path, custom_objects=custom_objects, compile=compile, data=data)
    if data.startswith(HDF5_SIGNATURE):
        if keras_legacy_h5.is_legacy_file(data):
            return keras_legacy_h5.load_model(path, custom_objects=custom_objects, compile=compile, data=data)
        raise ValueError(f"{path} is an HDF5 file: a weights file (load it with model.load_weights), not a model "
                         "file (it has no model_config and no model_weights group)")
    return model_file.load_model(path, custom_objects=custom_objects, compile=compile)


def load_weights(model: "Sequential", filepath: str | os.PathLike) -> None:
    """Set ``model``'s weights from a Keras 3 ``.weights.h5`` file or ``.keras``
    archive, a legacy Keras ``.h5`` model (or tf.keras weights) file, or a fusednn file
    of :func:`save_weights` / :func:`save_model`."""
    path = os.fspath(filepath)
    data = read_regular_file(path)
    if keras_legacy_h5.is_legacy_file(data):
        keras_legacy_h5.load_weights(model, path, data=data)
    elif data.startswith(HDF5_SIGNATURE) or keras_archive.is_keras_archive(data):
        keras_archive.load_weights(model, path, data=data)
    else:
        model_file.load_weights(model, path)
