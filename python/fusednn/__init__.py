"""fusednn: Keras-style neural networks on hand-written C++ and CUDA kernels.

``fusednn.ops`` holds the NumPy-style compute functions; the backend that runs
them is chosen by :func:`set_backend` / ``FUSEDNN_BACKEND`` (default: cuda if
usable, else cpu, else numpy).
"""
import sys as _sys

from ._version import __version__

from . import backends, ops
from .backends import available as available_backends
from .backends import get_backend, set_backend
from .backends.cpu import get_num_threads, set_num_threads

from . import callbacks, initializers, keras, layers, losses, models, optimizers, regularizers, saving, training, utils
from .callbacks import Callback, EarlyStopping, History, ProgbarLogger, TerminateOnNaN
from .callbacks import ModelCheckpoint
from .layers import Activation, Dense, Input, InputLayer, Normalization
from .losses import MeanSquaredError
from .functional import Model
from .models import Sequential
from .saving import load_model
from .optimizers import SGD, Adam
from .optimizers import Adadelta, Adagrad, Adamax, AdamW, Lion, Nadam, RMSprop
from .utils import set_random_seed

# Modules that moved keep their old import path: the old name is the moved module
# object itself (not a copy), so patching either patches both.
_MOVED = {"threads": backends.cpu, "normalization": layers.normalization, "onnx_export": saving.onnx,
          "fused": training.fused, "epoch_metrics": training.epoch_metrics, "inputs": training.inputs}
for _old, _module in _MOVED.items():
    _sys.modules[f"{__name__}.{_old}"] = _module
    globals()[_old] = _module
del _old, _module

__all__ = [
    "__version__",
    "Activation",
    "Adam",
    "Callback",
    "Dense",
    "EarlyStopping",
    "History",
    "Input",
    "InputLayer",
    "Model",
    "MeanSquaredError",
    "Normalization",
    "ModelCheckpoint",
    "ProgbarLogger",
    "SGD",
    "Sequential",
    "TerminateOnNaN",
    "callbacks",
    "initializers",
    "keras",
    "layers",
    "load_model",
    "losses",
    "models",
    "optimizers",
    "regularizers",
    "set_random_seed",
    "utils",
    "available_backends",
    "backends",
    "get_backend",
    "get_num_threads",
    "ops",
    "set_backend",
    "set_num_threads",
    "Adadelta", "Adagrad", "Adamax", "AdamW", "Lion", "Nadam", "RMSprop",
]
