"""Array helpers shared by the host-side (NumPy) modules: metrics, preprocessing."""
from __future__ import annotations

from typing import Any

import numpy as np


def to_host(a: Any) -> np.ndarray:
    """``a`` as a NumPy array: lists and NumPy arrays as ``np.asarray`` reads them, CuPy
    (or any ``__cuda_array_interface__`` array with ``.get()``) copied to the host once."""
    # CuPy arrays expose .get() for the device->host copy; np.asarray on them fails.
    if hasattr(a, "__cuda_array_interface__") and hasattr(a, "get"):
        a = a.get()
    return np.asarray(a)
