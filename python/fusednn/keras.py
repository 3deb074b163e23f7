"""The Keras-compatible namespace: ``from fusednn import keras`` and then
``keras.Sequential``, ``keras.layers.Dense``, ``keras.optimizers.Adam``,
``keras.losses.MeanSquaredError``, ``keras.callbacks.EarlyStopping``,
``keras.utils.set_random_seed``, ``keras.Input``, ``keras.models.load_model`` and
``keras.saving.save_model/load_model``, as in Keras. The submodules
can also be imported by name (``from fusednn.keras.layers import Dense``)."""
from __future__ import annotations

import sys

from . import callbacks, initializers, layers, losses, models, optimizers, regularizers, saving, utils
from .layers import Input
from .models import Sequential

for _sub in (callbacks, initializers, layers, losses, models, optimizers, regularizers, saving, utils):
    sys.modules[f"{__name__}.{_sub.__name__.rsplit('.', 1)[1]}"] = _sub

__all__ = ["Input", "Sequential", "callbacks", "initializers", "layers", "losses", "models",
           "optimizers", "regularizers", "saving", "utils"]
