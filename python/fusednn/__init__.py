"""fusednn: Keras-style neural networks on hand-written C++ and CUDA kernels.

``fusednn.ops`` holds the NumPy-style compute functions; the backend that runs
them is chosen by :func:`set_backend` / ``FUSEDNN_BACKEND`` (default: cuda if
usable, else cpu, else numpy).
"""
__version__ = "0.1.0"

from . import backends, ops
from .backends import available as available_backends
from .backends import get_backend, set_backend
from .threads import get_num_threads, set_num_threads

from . import callbacks, initializers, keras, layers, losses, models, optimizers, utils
from .callbacks import Callback, EarlyStopping, History, ProgbarLogger, TerminateOnNaN
from .callbacks import ModelCheckpoint
from .layers import Activation, Dense, Input, InputLayer, Normalization
from .losses import MeanSquaredError
from .models import Sequential
from .saving import load_model
from .optimizers import SGD, Adam
from .optimizers import Adadelta, Adagrad, Adamax, AdamW, Lion, Nadam, RMSprop
from .utils import set_random_seed

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
