"""Layers, Keras' ``keras.layers``: one file per family over :mod:`.base`.

``base`` holds :class:`Layer` (and the :class:`Buffers` a model gives it), ``core``
Dense, Activation and the Input marker, ``normalization`` the Normalization layer.
A new layer family gets its own file here and is exported below.
"""
from .base import REGISTRY, Buffers, Layer, feature_dim, unique_name
from .core import Activation, Dense, Input, InputLayer
from .activation_layers import ELU, Identity, LeakyReLU, ReLU, Softmax
from .batch_normalization import BatchNormalization, LayerNormalization
from .normalization import Normalization
from .prelu import PReLU
from .reshaping import Flatten, Reshape
from .regularization import Dropout, GaussianDropout, GaussianNoise
from .merging import (Add, Average, Concatenate, Merge, Multiply, Subtract, add, average, concatenate, multiply,
                      subtract)
from .symbolic import KerasTensor

__all__ = ["Add", "Average", "Concatenate", "KerasTensor", "Merge", "Multiply", "Subtract", "add", "average",
           "concatenate", "multiply", "subtract", "ELU", "REGISTRY", "Activation", "BatchNormalization", "Dropout", "Flatten", "GaussianDropout", "GaussianNoise", "Identity", "LayerNormalization", "LeakyReLU", "ReLU", "Reshape",
           "Softmax", "Buffers", "Dense", "Input", "InputLayer", "Layer", "Normalization", "PReLU",
           "feature_dim", "unique_name"]
