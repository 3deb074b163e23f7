"""Every op of fusednn.ops on every host backend (numpy, cpu with AVX2, cpu with the
portable kernels) against an independent float64 NumPy computation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fusednn
from fusednn import backends, ops

from helpers import matmul_ref, poisoned, ref_act, ref_act_grad, rel_err

ODD_SIZES = [1, 2, 3, 5, 7, 13, 16, 17, 31, 47, 64, 97, 127, 128, 129, 255, 257]
ACTS = ["linear", "relu", "sigmoid", "tanh"]

VARIANTS = ["numpy"]
if "cpu" in backends.available():
    VARIANTS += ["cpu", "cpu-portable"]


@pytest.fixture(params=VARIANTS)
def variant(request):
    """A host backend; 'cpu-portable' is the cpu backend forced onto its non-AVX2 kernels."""
    prev = fusednn.get_backend().name
    name = request.param
    fusednn.set_backend("cpu" if name.startswith("cpu") else name)
    k = backends.native("cpu") if name.startswith("cpu") else None
    if k is not None:
        k.force_portable(name == "cpu-portable")
    yield name
    if k is not None:
        k.force_portable(False)
    fusednn.set_backend(prev)


dims = st.one_of(st.sampled_from(ODD_SIZES), st.integers(1, 300))
kdims = st.one_of(st.sampled_from(ODD_SIZES + [600, 1000]), st.integers(1, 1000))
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(M=dims, N=dims, K=kdims, ta=st.booleans(), tb=st.booleans(), seed=st.integers(0, 2**31))
def test_matmul_random_shapes(variant, M, N, K, ta, tb, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    out = poisoned((M, N))
    got = ops.matmul(a, b, transpose_a=ta, transpose_b=tb, out=out)
    assert got is out
    ref, scale = matmul_ref(a, b, ta, tb)
    assert np.isfinite(got).all(), "an output element was not written"
    # the bound, and a per-element bound against the size of each dot product's terms
    assert np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30) <= 1e-4 * np.sqrt(K)
    assert np.max(np.abs(got - ref) / scale) <= 1e-5


@SETTINGS
@given(M=dims, N=dims, K=kdims, act=st.sampled_from(ACTS), bias=st.booleans(),
       tw=st.booleans(), seed=st.integers(0, 2**31))
def test_linear_fused_epilogue(variant, M, N, K, act, bias, tw, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((K, N)).astype(np.float32) / np.sqrt(K)
    b = rng.standard_normal(N).astype(np.float32) if bias else None
    w_arg = np.asfortranarray(w) if tw else w  # F-order weights take the transposed path
    got = ops.linear(x, w_arg, b, activation=act)
    ref, scale = matmul_ref(x, w, False, False, b, act)
    assert got.shape == (M, N) and got.dtype == np.float32
    tol = 1e-5 * (1 + scale)  # absolute, in units of each sum's magnitude
    assert np.all(np.abs(got - ref) <= tol)


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
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_allclose(c1, c3, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 16, 17, 1000, 65536 + 3, 300001])
def test_activation_forward(variant, act, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 5).astype(np.float32)
    out = poisoned(n)
    got = ops.activation(x, act, out=out)
    assert rel_err(got, ref_act(x, act)) <= 1e-5


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n", [1, 9, 1000, 65536 + 3])
def test_activation_backward(variant, act, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    y = ref_act(x, act).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    got = ops.activation_grad(dy, y, act, out=poisoned(n))
    assert rel_err(got, ref_act_grad(dy, y, act)) <= 1e-5


def test_named_activation_functions(variant):
    x = np.linspace(-6, 6, 101, dtype=np.float32).reshape(101, 1)
    for fn, name in [(ops.relu, "relu"), (ops.sigmoid, "sigmoid"), (ops.tanh, "tanh")]:
        y = fn(x)
        assert y.shape == x.shape
        assert rel_err(y, ref_act(x, name)) <= 1e-5
    dy = np.ones_like(x)
    for fn, name in [(ops.relu_grad, "relu"), (ops.sigmoid_grad, "sigmoid"), (ops.tanh_grad, "tanh")]:
        y = ref_act(x, name).astype(np.float32)
        assert rel_err(fn(dy, y), ref_act_grad(dy, y, name)) <= 1e-5


def test_activation_extremes(variant):
    x = np.array([-1e30, -1000, -104, -88, -87.5, -20, -1e-40, 0, 1e-40, 20, 88, 1000, 1e30, np.inf, -np.inf],
                 dtype=np.float32)
    with np.errstate(over="ignore"):
        for act in ("sigmoid", "tanh", "relu"):
            y = ops.activation(x, act)
            assert act == "relu" or np.isfinite(y).all()
            assert rel_err(y, ref_act(x, act)) <= 1e-5
    nan = np.array([np.nan, 1.0], dtype=np.float32)
    for act in ("relu", "sigmoid", "tanh"):
        assert np.isnan(ops.activation(nan, act)[0]), f"{act} must propagate NaN"


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 17), (32, 64), (129, 7)])
@pytest.mark.parametrize("act", ACTS)
def test_bias_act(variant, rows, cols, act):
    rng = np.random.default_rng(rows * cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    b = rng.standard_normal(cols).astype(np.float32)
    be = fusednn.get_backend()
    out = poisoned((rows, cols))
    be.bias_act(x, b, out, act)
    assert rel_err(out, ref_act(x.astype(np.float64) + b, act)) <= 1e-5


@pytest.mark.parametrize("shape", [(1,), (1, 1), (7, 3), (32, 1), (1000, 10), (300, 300)])
def test_mse_and_grad(variant, shape):
    rng = np.random.default_rng(sum(shape))
    p = rng.standard_normal(shape).astype(np.float32)
    t = rng.standard_normal(shape).astype(np.float32)
    d = p.astype(np.float64) - t
    assert abs(ops.mse(p, t) - np.mean(d * d)) <= 1e-6 * np.mean(d * d)
    g = ops.mse_grad(p, t, out=poisoned(shape))
    assert rel_err(g, 2 * d / d.size) <= 1e-5


def test_mse_large_is_deterministic_and_accurate(variant):
    rng = np.random.default_rng(5)
    p = rng.standard_normal(1 << 20).astype(np.float32)
    t = rng.standard_normal(1 << 20).astype(np.float32)
    d = p.astype(np.float64) - t
    v1, v2 = ops.mse(p, t), ops.mse(p, t)
    assert v1 == v2
    assert abs(v1 - np.mean(d * d)) <= 1e-9 * np.mean(d * d)


def test_mse_into_device_scalar(variant):
    be = fusednn.get_backend()
    p = np.array([[1.0], [3.0]], np.float32)
    t = np.zeros((2, 1), np.float32)
    buf = np.zeros(4, np.float32)
    r = be.mse(p, t, out=buf[2:3])
    assert r == pytest.approx(5.0) and buf[2] == pytest.approx(5.0) and buf[[0, 1, 3]].sum() == 0


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 600), (1000, 1), (33, 65), (5000, 513)])
def test_sum_rows(variant, rows, cols):
    rng = np.random.default_rng(rows + cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    got = ops.sum_rows(x, out=poisoned(cols))
    ref = x.astype(np.float64).sum(axis=0)
    scale = np.abs(x.astype(np.float64)).sum(axis=0)
    assert np.all(np.abs(got - ref) <= 1e-6 * scale)
    assert ops.bias_grad is ops.sum_rows


def test_ops_accept_lists_float64_ints_and_views(variant):
    a64 = np.arange(12, dtype=np.float64).reshape(3, 4)
    b_int = np.arange(8).reshape(4, 2)
    got = ops.matmul(a64, b_int)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a64 @ b_int)
    np.testing.assert_allclose(ops.matmul([[1, 2]], [[3], [4]]), [[11.0]])
    big = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    view = big[::2, 1::2]  # non-contiguous
    np.testing.assert_allclose(ops.relu(view), np.maximum(view, 0))
    np.testing.assert_allclose(ops.matmul(view, view.T), view.astype(np.float64) @ view.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.matmul(big.T, big), big.T.astype(np.float64) @ big, rtol=1e-5, atol=1e-4)
    assert ops.sigmoid(np.array([True, False])).dtype == np.float32
    np.testing.assert_allclose(ops.tanh(np.float16([0.5])), np.tanh(np.float32(0.5)), rtol=1e-3)


def test_empty_inputs(variant):
    assert ops.relu(np.zeros((0, 3), np.float32)).shape == (0, 3)
    assert ops.matmul(np.zeros((0, 4)), np.zeros((4, 5))).shape == (0, 5)
    np.testing.assert_array_equal(ops.matmul(np.zeros((3, 0)), np.zeros((0, 2))), np.zeros((3, 2)))
    np.testing.assert_array_equal(ops.linear(np.zeros((2, 0)), np.zeros((0, 3)), np.ones(3), activation="relu"),
                                  np.ones((2, 3)))
    np.testing.assert_array_equal(ops.sum_rows(np.zeros((0, 4))), np.zeros(4))
    assert ops.mse_grad(np.zeros((0, 1)), np.zeros((0, 1))).shape == (0, 1)
    with pytest.raises(ValueError, match="empty"):
        ops.mse(np.zeros((0, 1)), np.zeros((0, 1)))
    w = np.zeros(0, np.float32)
    ops.sgd_update(w, w.copy(), learning_rate=0.1)


@pytest.mark.parametrize("M,K", [(1, 1), (7, 3), (32, 64), (33, 1000), (64, 32)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("act", ACTS)
def test_single_output_column(variant, M, K, ta, tb, act):
    """N == 1 takes a matrix-vector path on the cpu backend (a regression output layer)."""
    rng = np.random.default_rng(M * K)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((1, K) if tb else (K, 1)).astype(np.float32)
    bias = rng.standard_normal(1).astype(np.float32)
    be = fusednn.get_backend()
    out = poisoned((M, 1))
    be.matmul(a, b, out, ta, tb, bias, act)
    ref, scale = matmul_ref(a, b, ta, tb, bias, act)
    assert np.all(np.abs(out - ref) <= 1e-5 * (1 + scale))
