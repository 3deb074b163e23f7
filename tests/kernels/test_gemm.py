"""GEMM kernel family: matmul, linear (matmul + bias + activation epilogue) and the
matrix-vector path, on every device against the float64 reference."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fusednn
from fusednn import backends, ops

from helpers import matmul_ref, poisoned

ODD_SIZES = [1, 2, 3, 5, 7, 13, 16, 17, 31, 47, 64, 97, 127, 128, 129, 255, 257]
ACTS = ["linear", "relu", "sigmoid", "tanh"]

dims = st.one_of(st.sampled_from(ODD_SIZES), st.integers(1, 300))
kdims = st.one_of(st.sampled_from(ODD_SIZES + [600, 1000]), st.integers(1, 1000))
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(M=dims, N=dims, K=kdims, ta=st.booleans(), tb=st.booleans(), seed=st.integers(0, 2**31))
def test_matmul_random_shapes(device, M, N, K, ta, tb, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    out = device.poisoned((M, N))
    got = ops.matmul(device.put(a), device.put(b), transpose_a=ta, transpose_b=tb, out=out)
    assert got is out
    got = device.get(got)
    ref, scale = matmul_ref(a, b, ta, tb)
    assert np.isfinite(got).all(), "an output element was not written"
    # the bound, and a per-element bound against the size of each dot product's terms
    assert np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30) <= 1e-4 * np.sqrt(K)
    assert np.max(np.abs(got - ref) / scale) <= 1e-5


@SETTINGS
@given(M=dims, N=dims, K=kdims, act=st.sampled_from(ACTS), bias=st.booleans(),
       tw=st.booleans(), seed=st.integers(0, 2**31))
def test_linear_fused_epilogue(device, M, N, K, act, bias, tw, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((K, N)).astype(np.float32) / np.sqrt(K)
    b = rng.standard_normal(N).astype(np.float32) if bias else None
    w_arg = device.xp.asfortranarray(device.put(w)) if tw else device.put(w)  # F-order: the transposed path
    got = ops.linear(device.put(x), w_arg, None if b is None else device.put(b), activation=act)
    ref, scale = matmul_ref(x, w, False, False, b, act)
    assert got.shape == (M, N) and got.dtype == np.float32
    tol = 1e-5 * (1 + scale)  # absolute, in units of each sum's magnitude
    assert np.all(np.abs(device.get(got) - ref) <= tol)


# (rows in groups of four and left over, K with and without an even chunk and a masked last
# chunk; 96-, 32- and 8-output passes of the transposed product)
@pytest.mark.parametrize("M,K", [(1, 1), (7, 3), (32, 64), (33, 1000), (64, 32), (200, 100), (203, 24), (130, 17),
                                 (97, 8), (2, 9)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("act", ACTS)
def test_single_output_column(device, M, K, ta, tb, act):
    """N == 1 takes a matrix-vector path on the cpu backend (a regression output layer)."""
    rng = np.random.default_rng(M * K)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((1, K) if tb else (K, 1)).astype(np.float32)
    bias = rng.standard_normal(1).astype(np.float32)
    out = device.poisoned((M, 1))
    device.backend.matmul(device.put(a), device.put(b), out, ta, tb, device.put(bias), act)
    ref, scale = matmul_ref(a, b, ta, tb, bias, act)
    assert np.all(np.abs(device.get(out) - ref) <= 1e-5 * (1 + scale))


def test_matmul_matches_reference_kernel():
    """The tuned kernel and the simple triple loop kept beside it agree."""
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    k = backends.native("cpu")
    rng = np.random.default_rng(1)
    for M, N, K in [(1, 1, 1), (6, 16, 256), (7, 17, 257), (150, 3100, 300)]:
        for ta in (False, True):
            for tb in (False, True):
                a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
                b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
                bias = rng.standard_normal(N).astype(np.float32)
                c1, c2 = poisoned((M, N)), poisoned((M, N))
                k.matmul(a, b, ta, tb, bias, 3, c1)
                k.matmul_reference(a, b, ta, tb, bias, 3, c2)
                _, scale = matmul_ref(a, b, ta, tb, bias)
                assert np.all(np.abs(c1 - c2) <= 1e-5 * scale)


def test_matmul_threaded_and_serial_agree():
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    rng = np.random.default_rng(2)
    a = rng.standard_normal((301, 517)).astype(np.float32)
    b = rng.standard_normal((517, 263)).astype(np.float32)
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    n = fusednn.get_num_threads()
    try:
        fusednn.set_num_threads(1)
        c1 = ops.matmul(a, b)
        fusednn.set_num_threads(2)
        c2 = ops.matmul(a, b)
        c3 = ops.matmul(b.T.copy(), a.T.copy()).T  # splits along the other dimension
    finally:
        fusednn.set_num_threads(n)
        fusednn.set_backend(prev)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_allclose(c1, c3, rtol=1e-5, atol=1e-4)
