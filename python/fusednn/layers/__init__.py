"""Layers, Keras' ``keras.layers``: one file per family over :mod:`.base`.

``base`` holds :class:`Layer` (and the :class:`Buffers` a model gives it), ``core``
Dense, Activation and the Input marker, ``normalization`` the Normalization layer.
A new layer family gets its own file here and is exported below.
"""
from .base import REGISTRY, Buffers, Layer, feature_dim, unique_name
from .core import Activation, Dense, Input, InputLayer
from .normalization import Normalization

__all__ = ["REGISTRY", "Activation", "Buffers", "Dense", "Input", "InputLayer", "Layer", "Normalization",
           "feature_dim", "unique_name"]
