"""The CPU GEMM's small-product paths (the products of small-batch MLP training):
narrow outputs computed as their transpose, the 6×8 kernel for slivers of at most
8 columns, masked partial tiles, operands read in place without packing, and the
N == 1 matrix-vector kernels; every one against the float64 reference, over all
four transpose cases, with the fused bias/activation epilogue."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import backends, ops
from fusednn.backends import activation_code

from helpers import guarded, matmul_ref, poisoned

pytestmark = pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")

# (M, N, K): shapes of the sklearn tasks' training steps and their neighbours, chosen
# to land on each path: narrow outputs (N in 1..12, K >= 32: the transposed path when
# it pays, e.g. 200x10x100 and 64x10x200), the 12x8 kernel (N <= 8 and M >= 12, also
# accumulating over K > 256), few rows (M = 1..10), tails of 1..15
# columns/rows, K = 1 (the outer-product path) and K past the 256-deep blocking, and in-place reads up to
# K*N = 32768 (64x100x200).
SHAPES = [
    (200, 10, 100), (100, 10, 200), (64, 10, 200), (13, 3, 77), (97, 7, 33), (31, 12, 40),
    (8, 100, 200), (10, 100, 200), (30, 100, 200), (64, 100, 200), (1, 100, 200), (2, 17, 300),
    (200, 100, 64), (200, 100, 10), (200, 100, 1), (201, 101, 9), (7, 9, 31), (1, 1, 1),
    (100, 1, 200), (37, 1, 64), (5, 1, 1), (3, 9, 600), (150, 11, 257), (40, 5, 600), (25, 8, 300),
]


@pytest.fixture(scope="module")
def kernels():
    return backends.native("cpu")


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_small_products_match_float64(kernels, M, N, K, ta, tb):
    rng = np.random.default_rng(M * 7919 + N * 31 + K + 2 * ta + tb)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    out = poisoned((M, N))
    kernels.matmul(a, b, ta, tb, None, activation_code("linear"), out)
    ref, scale = matmul_ref(a, b, ta, tb)
    assert np.isfinite(out).all(), "an output element was not written"
    assert np.max(np.abs(out - ref) / scale) <= 1e-5


@pytest.mark.parametrize("M,N,K", [(200, 10, 100), (64, 10, 200), (13, 3, 77), (8, 100, 200), (40, 5, 600), (201, 13, 1),
                                   (201, 101, 9), (97, 7, 33), (37, 1, 64), (1, 1, 1)])
@pytest.mark.parametrize("act", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("ta", [False, True])
def test_small_products_bias_activation_epilogue(kernels, M, N, K, act, ta):
    """The epilogue (bias, then activation) is applied once and to every element,
    also where the product was computed transposed and copied back."""
    rng = np.random.default_rng(M + N + K)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = (rng.standard_normal((K, N)) / np.sqrt(K)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    out = poisoned((M, N))
    kernels.matmul(a, b, ta, False, bias, activation_code(act), out)
    ref, scale = matmul_ref(a, b, ta, False, bias, act)
    assert np.all(np.abs(out - ref) <= 1e-5 * (1 + scale))


def test_output_with_accumulated_garbage_is_overwritten(kernels):
    """Partial tiles are written with masked stores: the columns and rows past the
    tile's edge in a larger output are not touched, and every owned one is written."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((23, 40)).astype(np.float32)
    b = rng.standard_normal((40, 21)).astype(np.float32)
    big = np.full((23, 21 + 5), 7.0, np.float32)
    view = big[:, :21]  # not contiguous: the binding refuses it rather than write around it
    with pytest.raises(ValueError, match="contiguous"):
        kernels.matmul(a, b, False, False, None, 0, view)
    out = np.full((23, 21), np.inf, np.float32)
    kernels.matmul(a, b, False, False, None, 0, out)
    ref, scale = matmul_ref(a, b, False, False)
    assert np.max(np.abs(out - ref) / scale) <= 1e-5
    assert np.all(big == 7.0)


@pytest.mark.parametrize("M,N,K", [(200, 10, 100), (8, 100, 200), (64, 10, 200)])
def test_binding_rejects_wrong_dtype_and_layout(kernels, M, N, K):
    a = np.ones((M, K), np.float64)
    b = np.ones((K, N), np.float32)
    with pytest.raises(TypeError, match="float32"):
        kernels.matmul(a, b)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.matmul(np.ones((K, M), np.float32).T, b)


@pytest.mark.parametrize("M,N,K", [(200, 10, 100), (8, 100, 200), (64, 10, 200)])
def test_ops_converts_strided_and_float64_inputs(M, N, K):
    """The drop-in ops convert once at the boundary (float64 and strided views) and
    then take the same paths."""
    rng = np.random.default_rng(M)
    a64 = rng.standard_normal((M, 2 * K))[:, ::2]  # float64, not contiguous
    b32 = np.asfortranarray(rng.standard_normal((K, N)).astype(np.float32))
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        got = np.asarray(ops.matmul(a64, b32))
    finally:
        fusednn.set_backend(prev)
    ref, scale = matmul_ref(a64.astype(np.float32), np.ascontiguousarray(b32), False, False)
    assert got.dtype == np.float32 and got.shape == (M, N)
    assert np.max(np.abs(got - ref) / scale) <= 1e-5


@pytest.mark.parametrize("M,N,K", [(200, 10, 100), (64, 10, 200), (8, 100, 200), (100, 1, 200)])
def test_threads_and_paths_agree(M, N, K):
    """One thread (the transposed path where it pays) and two threads (the blocked
    path split over the threads) give the same product up to rounding."""
    rng = np.random.default_rng(K)
    a = rng.standard_normal((K, M)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    prev, n = fusednn.get_backend().name, fusednn.get_num_threads()
    fusednn.set_backend("cpu")
    try:
        fusednn.set_num_threads(1)
        c1 = np.asarray(ops.matmul(a, b, transpose_a=True))
        fusednn.set_num_threads(2)
        c2 = np.asarray(ops.matmul(a, b, transpose_a=True))
    finally:
        fusednn.set_num_threads(n)
        fusednn.set_backend(prev)
    _, scale = matmul_ref(a, b, True, False)
    assert np.max(np.abs(c1 - c2) / scale) <= 1e-5


@pytest.mark.parametrize("N", [*range(1, 13), 17, 20, 24, 36, 100, 104, 108])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_narrow_outputs_and_column_tails(kernels, N, ta, tb):
    """Outputs of 1..12 columns and the last 1..8 columns of wider ones (the
    narrow-output kernels: rows in the lanes for a transposed A, else dot products
    after the 6x16/12x8 tiles): row counts around the 8- and 16-row blocks, K around
    the 8-wide chunks (and below the dot products' minimum), with the bias and every
    epilogue activation, against float64."""
    rng = np.random.default_rng(N * 4 + 2 * ta + tb)
    for M in (1, 7, 8, 9, 15, 16, 17, 33, 100):
        for K in (1, 5, 15, 16, 17, 100, 257):
            a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
            b = (rng.standard_normal((N, K) if tb else (K, N)) / np.sqrt(K)).astype(np.float32)
            bias = rng.standard_normal(N).astype(np.float32)
            for act in ("linear", "relu", "sigmoid", "tanh"):
                out, guard = guarded((M, N))
                kernels.matmul(a, b, ta, tb, bias, activation_code(act), out)
                ref, scale = matmul_ref(a, b, ta, tb, bias, act)
                assert np.all(np.abs(out - ref) <= 1e-5 * (1 + scale)), (M, K, act)
                assert np.all(guard == 12345.0), ("wrote past C", M, K, act)
