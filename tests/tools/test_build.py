"""What the build produced: a CUDA compiler at build time must have given a
working fusednn._cuda, so a kernel that stops compiling cannot pass unnoticed."""
from __future__ import annotations

import importlib

import pytest


def test_cuda_extension_built_when_a_compiler_was_found():
    bi = pytest.importorskip("fusednn._build_info", reason="fusednn was not built by CMake (pure-Python use)")
    if not bi.CUDA_COMPILER_FOUND or bi.CUDA_OPTION == "OFF":
        pytest.skip(f"no CUDA build requested or possible (FUSEDNN_CUDA={bi.CUDA_OPTION}, "
                    f"compiler found: {bi.CUDA_COMPILER_FOUND})")
    assert bi.CUDA_BUILT, "a CUDA compiler was found but the _cuda extension was not built"
    assert bi.CUDA_ARCHS, "the build names no CUDA architectures"
    cuda = importlib.import_module("fusednn._cuda")
    assert cuda.device_count() >= 0
    assert cuda.archs.split(",") == bi.CUDA_ARCHS.split(";")
    assert len(cuda.gemm_variants()) >= 1
    assert cuda.mse_workspace_len() >= 2


def test_cuda_backend_reports_why_it_is_unavailable():
    from fusednn import backends
    from fusednn.backends import cuda

    reason = cuda.unavailable_reason()
    assert (reason is None) == ("cuda" in backends.available())
    if reason is not None:
        assert isinstance(reason, str) and reason
        with pytest.raises(backends.BackendUnavailableError, match="cuda"):
            backends.backend("cuda")
