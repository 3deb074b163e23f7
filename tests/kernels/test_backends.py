"""Backend selection: set_backend, FUSEDNN_BACKEND, availability and its reasons,
and the package working on NumPy alone when the extension is hidden."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fusednn
from fusednn import backends


def test_available_lists_host_backends():
    av = fusednn.backends.available()
    assert "numpy" in av
    assert av == [n for n in ("cuda", "cpu", "numpy") if n in av]  # fastest first
    for name, why in backends.unavailable().items():
        assert name not in av and why


def test_set_and_get_backend():
    prev = fusednn.get_backend().name
    try:
        assert fusednn.set_backend("numpy").name == "numpy"
        assert fusednn.get_backend().name == "numpy"
    finally:
        fusednn.set_backend(prev)


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="cuda, cpu, numpy"):
        fusednn.set_backend("tpu")


def test_unavailable_backend_says_why():
    missing = backends.unavailable()
    if not missing:
        pytest.skip("every backend is available here")
    name, why = next(iter(missing.items()))
    with pytest.raises(backends.BackendUnavailableError, match=why[:20].replace("(", r"\(")):
        fusednn.set_backend(name)


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_env_var_selects_backend():
    r = _run("import fusednn; print(fusednn.get_backend().name)", FUSEDNN_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"


def test_default_is_fastest_available():
    r = _run("import fusednn; print(fusednn.get_backend().name, fusednn.backends.available()[0])",
             FUSEDNN_BACKEND="")
    assert r.returncode == 0, r.stderr
    got, first = r.stdout.split()
    assert got == first


HIDE_NATIVE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("fusednn._cpu", "fusednn._cuda"):
            raise ImportError(f"{name} hidden by the test")
sys.meta_path.insert(0, Hide())
"""


def test_package_works_on_numpy_when_native_is_hidden():
    r = _run(HIDE_NATIVE + """
import numpy as np, fusednn
from fusednn import ops, backends
assert backends.available() == ["numpy"], backends.available()
assert "hidden" in backends.unavailable()["cpu"]
assert fusednn.get_backend().name == "numpy"
c = ops.linear(np.ones((2, 3)), np.ones((3, 4)), np.ones(4), activation="relu")
assert c.dtype == np.float32 and (c == 4).all()
fusednn.set_num_threads(1)
print("ok")
""", FUSEDNN_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_env_var_naming_unavailable_backend_fails_clearly():
    r = _run(HIDE_NATIVE + """
import fusednn
try:
    fusednn.get_backend()
except fusednn.backends.BackendUnavailableError as e:
    print(e)
""", FUSEDNN_BACKEND="cpu")
    assert r.returncode == 0, r.stderr
    assert "backend 'cpu' is unavailable" in r.stdout and "hidden" in r.stdout


def test_threads():
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    n = fusednn.get_num_threads()
    try:
        fusednn.set_num_threads(1)
        assert backends.native("cpu").num_threads() == 1
        with pytest.raises(ValueError):
            fusednn.set_num_threads(0)
    finally:
        fusednn.set_num_threads(n)
    r = _run("import fusednn; print(fusednn.get_num_threads())", FUSEDNN_NUM_THREADS="1")
    assert r.stdout.strip() == "1"


def test_info_command():
    r = subprocess.run([sys.executable, "-m", "fusednn", "info"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"fusednn {fusednn.__version__}" in out
    assert "backends available:" in out and "numpy" in out
    for name, why in backends.unavailable().items():
        assert f"{name}: unavailable - {why}" in out
    assert "threads:" in out
    if "cpu" in backends.available():
        assert "kernels use:" in out


def test_portable_and_avx2_paths_agree():
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    k = backends.native("cpu")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(10007) * 4).astype(np.float32)
    outs = []
    for portable in (False, True):
        k.force_portable(portable)
        try:
            y = np.empty_like(x)
            k.act_forward(x, 2, y)
            outs.append(y)
        finally:
            k.force_portable(False)
    # each path is within 2e-7 of the exact value (test_simd_math), so within 4e-7 of the other
    np.testing.assert_allclose(outs[0], outs[1], rtol=4e-7, atol=1e-30)


@pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (200, 100), (0,), (2, 0, 3), 13])
def test_cpu_backend_arrays_are_cache_line_aligned(shape):
    """The cpu backend allocates whole cache lines (vector loads never straddle two, and
    the replicated fused update's halves never share one), zeroed where asked."""
    be = backends.backend("cpu")
    for arr in (be.empty(shape), be.zeros(shape)):
        want = (shape,) if isinstance(shape, int) else shape
        assert arr.shape == want and arr.dtype == np.float32 and arr.flags.c_contiguous
        assert arr.ctypes.data % 64 == 0 or arr.size == 0
    assert not be.zeros(shape).any()
    with pytest.raises(ValueError, match="negative dimensions"):
        be.empty((3, -1))
