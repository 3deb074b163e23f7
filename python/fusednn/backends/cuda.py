"""The CUDA backend: fusednn._cuda's kernels on CuPy arrays."""
from __future__ import annotations

try:
    from .. import _cuda
except ImportError as e:
    _cuda = None
    _IMPORT_ERROR = f"fusednn._cuda is not built ({e})"
else:
    _IMPORT_ERROR = None


def unavailable_reason() -> str | None:
    """None when the backend is usable, else a sentence saying why not."""
    if _cuda is None:
        return _IMPORT_ERROR
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed (pip install cupy-cuda12x or cupy-cuda13x)"
    if _cuda.device_count() < 1:
        return "no CUDA device is present"
    return "the CUDA kernels are not implemented yet"


class CudaBackend:  # filled in by the CUDA backend issue
    name = "cuda"

    def __init__(self) -> None:
        raise RuntimeError(unavailable_reason())
