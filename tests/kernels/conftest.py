"""The ``device`` fixture: each kernel test is written once and runs on every device.

Devices: ``numpy`` (the reference backend), ``cpu`` (the C++ kernels, AVX2+FMA where
the CPU has it), ``cpu-portable`` (the same backend forced onto its portable
kernels) and ``cuda`` (marked ``gpu``: skipped, with the reason, where no GPU can
run). A test puts its inputs on the device with ``device.put``, calls
``fusednn.ops`` (which dispatches on the arrays' kind) or the active backend, and
reads results back with ``device.get`` to compare against the float64 reference
(:mod:`fusednn.bench.reference`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fusednn
from fusednn import backends

DEVICES = ["numpy"]
if "cpu" in backends.available():
    DEVICES += ["cpu", "cpu-portable"]
DEVICES.append(pytest.param("cuda", marks=pytest.mark.gpu))
HOST_DEVICES = [d for d in DEVICES if isinstance(d, str)]


class Device:
    """One device under test: its name, backend and array module, and the copies to
    and from it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.backend = fusednn.get_backend()
        self.xp = self.backend.xp

    def put(self, a: Any) -> Any:
        """``a`` (a NumPy array) as an array of this device, same dtype."""
        return self.xp.asarray(a)

    def get(self, a: Any) -> np.ndarray:
        """A NumPy copy of ``a`` (any array of this device)."""
        return np.asarray(self.backend.to_numpy(a))

    def poisoned(self, shape: Any) -> Any:
        """A float32 output buffer full of NaN on this device: an unwritten element cannot pass."""
        return self.put(np.full(shape, np.nan, dtype=np.float32))

    def __repr__(self) -> str:
        return self.name


def _use(name: str):
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu" if name.startswith("cpu") else name)
    k = backends.native("cpu") if name.startswith("cpu") else None
    if k is not None:
        k.force_portable(name == "cpu-portable")
    try:
        yield Device(name)
    finally:
        if k is not None:
            k.force_portable(False)
        fusednn.set_backend(prev)


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device in turn, active for the test and restored after it."""
    yield from _use(request.param)


@pytest.fixture(params=HOST_DEVICES)
def host_device(request):
    """Each host device (numpy, cpu, cpu-portable): for what only host arrays can do
    (lists, views of NumPy arrays, the cpu thread pool)."""
    yield from _use(request.param)
