"""Saving and loading models, Keras' ``keras.saving``: the model file and the exports.

``model_file`` is fusednn's own format (one ``.npz`` that cannot run code when read,
rebuilt through :data:`fusednn.registry.MODELS`); ``onnx`` exports to ONNX. Nothing
here imports the models: a model class registers itself and calls in.
"""
from . import model_file, onnx
from ..custom_objects import (get_custom_objects, get_registered_name, get_registered_object,
                             register_keras_serializable)
from .model_file import (CONFIG_KEY, FORMAT, FORMAT_VERSION, load_model, load_weights, read_file, save_model,
                         save_weights)

__all__ = ["CONFIG_KEY", "FORMAT", "FORMAT_VERSION", "load_model", "load_weights", "model_file", "onnx", "read_file",
           "save_model", "save_weights", "get_custom_objects", "get_registered_name", "get_registered_object",
           "register_keras_serializable"]
