"""Accuracy of the CPU kernels' own vectorized exp-based sigmoid and tanh: maximum
relative error <= 2e-7 on a dense sweep of float32 inputs (every 499th bit pattern
of both signs, a fine grid over [-100, 100], the edges near +-88 and +-104, and
denormals). The reference is float64; the error is relative to max(|ref|, FLT_MIN),
so results in the denormal range are held to an absolute error below FLT_MIN."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import backends

pytestmark = pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")

TOL = 2e-7


def sweep() -> np.ndarray:
    pos = np.arange(0, 0x7F800000, 499, dtype=np.uint32).view(np.float32)
    edges = np.array([88, 88.37, 88.38, 88.72, 87.3, 87.34, 103.9, 104, 9.0, 9.5, 9.6, 0.625, 0.6249,
                      1e-45, 1e-40, 1.1754942e-38, 3.4e38], np.float32)
    grid = np.linspace(-100, 100, 2_000_001, dtype=np.float32)
    return np.concatenate([pos, -pos, grid, edges, -edges])


def max_rel_err(y: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    e = np.abs(y.astype(np.float64) - ref) / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
    i = int(np.argmax(e))
    return float(e[i]), i


@pytest.fixture(params=["avx2", "portable"])
def kernels(request):
    k = backends.native("cpu")
    if request.param == "avx2" and k.simd_path() != "avx2+fma":
        pytest.skip("this CPU has no AVX2+FMA")
    k.force_portable(request.param == "portable")
    yield k
    k.force_portable(False)


def test_sigmoid_max_relative_error(kernels):
    x = sweep()
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        e = np.exp(-np.abs(x64))
        ref = np.where(x64 >= 0, 1 / (1 + e), e / (1 + e))
    err, i = max_rel_err(kernels.act_forward(x, 2), ref)
    assert err <= TOL, f"sigmoid({x[i]!r}): relative error {err:.3e}"


def test_tanh_max_relative_error(kernels):
    x = sweep()
    err, i = max_rel_err(kernels.act_forward(x, 3), np.tanh(x.astype(np.float64)))
    assert err <= TOL, f"tanh({x[i]!r}): relative error {err:.3e}"


def test_special_values(kernels):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
    s = kernels.act_forward(x, 2)
    t = kernels.act_forward(x, 3)
    np.testing.assert_array_equal(s[:2], [1, 0])
    np.testing.assert_array_equal(t[:2], [1, -1])
    assert np.isnan(s[2]) and np.isnan(t[2])
    assert s[3] == 0.5 and t[3] == 0 and np.signbit(t[4])  # tanh(-0) is -0
