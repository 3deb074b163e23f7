"""The Keras-compatible namespace: ``from fusednn import keras`` and then
``keras.Sequential``, ``keras.layers.Dense``, ``keras.optimizers.Adam``,
``keras.losses.MeanSquaredError``, ``keras.callbacks.EarlyStopping``,
``keras.utils.set_random_seed``, ``keras.Input``, ``keras.models.load_model`` and
``keras.saving.save_model/load_model``, ``keras.distribution.DataParallel``, as in Keras. The submodules
can also be imported by name (``from fusednn.keras.layers import Dense``)."""
from __future__ import annotations

import sys

from . import (activations, callbacks, distribution, initializers, layers, losses, models, optimizers, regularizers,
               saving, utils)
from .metrics import keras_objects as metrics
from .layers import Input
from .functional import Model
from .models import Sequential

for _sub in (activations, callbacks, distribution, initializers, layers, losses, models, optimizers, regularizers,
             saving, utils):
    sys.modules[f"{__name__}.{_sub.__name__.rsplit('.', 1)[1]}"] = _sub
# keras.models.Model: the functional/subclassed Model lives in fusednn.functional (it builds
# on Sequential, so fusednn.models cannot import it back); the face publishes it there
models.Model = Model
sys.modules[f"{__name__}.metrics"] = metrics  # Keras 3's metric objects (fusednn.metrics keeps scikit-learn's)
from . import constraints, keras_backend as backend  # noqa: E402 - keras.constraints, keras.backend
sys.modules[f"{__name__}.constraints"] = constraints
sys.modules[f"{__name__}.backend"] = backend

__all__ = ["Input", "Model", "Sequential", "activations", "backend", "callbacks", "constraints", "distribution", "initializers", "layers", "losses",
           "metrics", "models",
           "optimizers", "regularizers", "saving", "utils"]
