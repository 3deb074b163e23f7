"""Saving and loading models, Keras' ``keras.saving``: the model file and the exports.

``model_file`` is fusednn's own format (one ``.npz`` that cannot run code when read,
rebuilt through :data:`fusednn.registry.MODELS`); ``keras_archive`` (with
``keras_config`` and ``keras_h5``) reads and writes Keras 3's ``.keras`` and
``.weights.h5`` files; ``formats`` picks one by the file's name when writing and by its
content when reading; ``onnx`` exports to ONNX. Nothing
here imports the models: a model class registers itself and calls in.
"""
from . import formats, keras_archive, keras_config, keras_h5, keras_legacy_h5, model_file, onnx
from ..custom_objects import (get_custom_objects, get_registered_name, get_registered_object,
                              register_keras_serializable)
from .formats import load_model, load_weights, save_model, save_weights
from .model_file import CONFIG_KEY, FORMAT, FORMAT_VERSION, read_file

__all__ = ["CONFIG_KEY", "FORMAT", "FORMAT_VERSION", "formats", "keras_archive", "keras_config", "keras_h5", "keras_legacy_h5",
           "load_model", "load_weights", "model_file", "onnx", "read_file", "save_model", "save_weights",
           "get_custom_objects", "get_registered_name", "get_registered_object", "register_keras_serializable"]
