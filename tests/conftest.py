"""Shared fixtures: run each test on every backend that can run here.

GPU tests carry the ``gpu`` marker and are skipped, with the reason, where the
cuda backend is unavailable (no _cuda build, no CuPy, or no device).
"""
from __future__ import annotations

import pytest

import fusednn
from fusednn import backends


def _cuda_reason():
    return backends.unavailable().get("cuda")


def pytest_collection_modifyitems(config, items):
    reason = _cuda_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"cuda backend unavailable: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


HOST_BACKENDS = [n for n in ("numpy", "cpu") if n in backends.available()]
ALL_BACKENDS = HOST_BACKENDS + [pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=ALL_BACKENDS)
def backend_name(request):
    """Each backend in turn, made active for the test and restored after it."""
    previous = fusednn.get_backend().name
    fusednn.set_backend(request.param)
    yield request.param
    fusednn.set_backend(previous)


@pytest.fixture(params=HOST_BACKENDS)
def host_backend_name(request):
    previous = fusednn.get_backend().name
    fusednn.set_backend(request.param)
    yield request.param
    fusednn.set_backend(previous)
