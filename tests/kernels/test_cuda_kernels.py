"""The CUDA kernels (fusednn._cuda) against float64 NumPy references and cuBLAS.

Every output is poisoned with NaN before the call, so an element a kernel
forgets to write fails the comparison. Inputs are made on the host with NumPy
and copied over; comparisons run on the host, so the tests compile few CuPy
kernels. Skipped where the cuda backend is unavailable (conftest).
"""
from __future__ import annotations

import numpy as np
import pytest

cp = pytest.importorskip("cupy")
_cuda = pytest.importorskip("fusednn._cuda")

import fusednn  # noqa: E402
from fusednn import ops  # noqa: E402
from fusednn.backends.numpy import NumpyBackend  # noqa: E402
from fusednn.bench import reference  # noqa: E402

pytestmark = pytest.mark.gpu

ACTS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}
U32 = 2.0**-24  # float32 unit roundoff
VARIANTS = list(range(len(_cuda.gemm_variants())))


# ------------------------------------------------------------------ helpers
def dev(host: np.ndarray, offset: int = 0):
    """A C-contiguous float32 (or the host dtype) device copy of ``host`` whose data
    pointer lies ``offset`` elements past a fresh (256-byte aligned) allocation, so an
    odd offset forces the kernels' unaligned (scalar) paths."""
    host = np.ascontiguousarray(host)
    base = cp.empty(host.size + offset, dtype=host.dtype)
    view = base[offset:].reshape(host.shape)
    if host.size:
        view.set(host)
    return view


def poisoned(shape, offset: int = 0):
    return dev(np.full(shape, np.nan, dtype=np.float32), offset)


def host(x) -> np.ndarray:
    cp.cuda.get_current_stream().synchronize()
    return cp.asnumpy(x)


def act64(x: np.ndarray, act: str) -> np.ndarray:
    return reference.activation(x, act)


def gemm_case(rng, M, N, K, ta, tb, bias: bool):
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    bv = rng.standard_normal(N).astype(np.float32) if bias else None
    A = a.T.astype(np.float64) if ta else a.astype(np.float64)
    B = b.T.astype(np.float64) if tb else b.astype(np.float64)
    pre = A @ B + (bv.astype(np.float64) if bias else 0.0)
    # |A||B| + |bias| bounds the size of every rounding in the dot products.
    scale = np.abs(A) @ np.abs(B) + (np.abs(bv.astype(np.float64)) if bias else 0.0)
    return a, b, bv, pre, scale


def check_gemm(got: np.ndarray, pre: np.ndarray, scale: np.ndarray, act: str, K: int, tf32=False):
    assert not np.isnan(got).any(), "an output element was not written (NaN poison left)"
    ref = act64(pre, act)
    # FP32: each dot product is within ~K roundings of its terms' size; TF32 rounds
    # each operand to 11 significant bits (2^-11 relative) before multiplying.
    rel = 2.0 * (K + 2) * U32 + (2.5e-3 if tf32 else 0.0)
    bound = rel * scale + 8 * U32 * np.abs(ref) + 1e-30
    err = np.abs(got.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err / bound), err.shape)
    assert (err <= bound).all(), (
        f"max err/bound {np.max(err / bound):.3g} at {worst}: got {got[worst]!r}, ref {ref[worst]!r}")


# Shapes: size 1, primes, non-multiples of every tile (8, 16, 32, 64, 128), exact
# multiples, K = 0 (the epilogue of zero), and the MLP shapes of the seed program.
GEMM_SHAPES = [
    (1, 1, 1), (1, 7, 3), (7, 1, 5), (2, 3, 0), (5, 4, 0), (3, 5, 2), (13, 17, 19),
    (31, 33, 35), (32, 64, 10), (64, 64, 64), (128, 128, 8), (127, 129, 131),
    (129, 127, 17), (257, 255, 9), (200, 300, 100), (128, 256, 784), (97, 500, 1),
    (1, 300, 257), (300, 1, 257),
]


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
def test_matmul_every_variant(M, N, K, ta, tb):
    rng = np.random.default_rng(M * 1_000_003 + N * 1009 + K * 7 + 2 * ta + tb)
    act = list(ACTS)[(M + N + K) % 4]
    a, b, bv, pre, scale = gemm_case(rng, M, N, K, ta, tb, bias=(M + K) % 2 == 0)
    A, B = dev(a), dev(b)
    BV = dev(bv) if bv is not None else None
    for variant in [-1] + VARIANTS:
        out = poisoned((M, N))
        got = _cuda.matmul(A, B, ta, tb, BV, ACTS[act], out, variant)
        assert got is out
        check_gemm(host(out), pre, scale, act, K)
    if _cuda.tf32_supported() and K > 0:
        out = poisoned((M, N))
        _cuda.matmul(A, B, ta, tb, BV, ACTS[act], out, tf32=True)
        check_gemm(host(out), pre, scale, act, K, tf32=True)
    out = poisoned((M, N))
    _cuda.matmul_reference(A, B, ta, tb, BV, ACTS[act], out)
    check_gemm(host(out), pre, scale, act, K)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
@pytest.mark.parametrize("offset", [1, 2, 3])
def test_matmul_unaligned_operands(offset, ta, tb):
    """Pointers off 16-byte alignment take the scalar load/store paths of every tile."""
    M, N, K = 67, 76, 44  # pitches that are multiples of 4, so only the pointer decides
    rng = np.random.default_rng(offset)
    a, b, bv, pre, scale = gemm_case(rng, M, N, K, ta, tb, bias=True)
    A, B, BV = dev(a, offset), dev(b, offset + 1), dev(bv, offset)
    for variant in VARIANTS:
        out = poisoned((M, N), offset + 2)
        _cuda.matmul(A, B, ta, tb, BV, ACTS["tanh"], out, variant)
        check_gemm(host(out), pre, scale, "tanh", K)
    if _cuda.tf32_supported():
        out = poisoned((M, N), offset)
        _cuda.matmul(A, B, ta, tb, BV, ACTS["tanh"], out, tf32=True)
        check_gemm(host(out), pre, scale, "tanh", K, tf32=True)


@pytest.mark.parametrize("M,N,K", [(1024, 1024, 1024), (640, 1000, 768), (2048, 96, 512)])
def test_matmul_large_vs_cublas(M, N, K):
    """Large products against cupy.matmul (cuBLAS FP32) and the float64 reference."""
    rng = np.random.default_rng(K)
    a, b, _, pre, scale = gemm_case(rng, M, N, K, False, False, bias=False)
    A, B = dev(a), dev(b)
    ref32 = host(cp.matmul(A, B))
    for variant in [-1] + VARIANTS:
        out = poisoned((M, N))
        got = host(_cuda.matmul(A, B, out=out, variant=variant))
        check_gemm(got, pre, scale, "linear", K)
        assert np.linalg.norm(got - ref32) / np.linalg.norm(ref32) < 1e-5
    if _cuda.tf32_supported():
        got = host(_cuda.matmul(A, B, out=poisoned((M, N)), tf32=True))
        rel = np.linalg.norm(got - pre) / np.linalg.norm(pre)
        assert 1e-6 < rel < 1e-2, f"tf32 relative error {rel:.3g} (1e-6 would mean it ran in FP32)"


def test_matmul_vs_cupy_with_epilogue():
    rng = np.random.default_rng(7)
    M, N, K = 333, 222, 111
    a, b, bv, pre, scale = gemm_case(rng, M, N, K, False, True, bias=True)
    A, B, BV = dev(a), dev(b), dev(bv)
    for act, code in ACTS.items():
        got = host(_cuda.matmul(A, B, False, True, BV, code, poisoned((M, N))))
        check_gemm(got, pre, scale, act, K)
        ref = cp.matmul(A, B.T) + BV
        ref = {"linear": ref, "relu": cp.maximum(ref, 0), "tanh": cp.tanh(ref),
               "sigmoid": 1 / (1 + cp.exp(-ref))}[act]
        np.testing.assert_allclose(got, host(ref), rtol=1e-4, atol=1e-4)


def test_gemm_pick_variant_is_a_variant():
    for shape in [(1, 1, 1), (32, 64, 10), (128, 256, 784), (1024, 1024, 1024), (4096, 4096, 4096)]:
        assert 0 <= _cuda.gemm_pick_variant(*shape) < len(VARIANTS)
    assert _cuda.gemm_pick_variant(4096, 4096, 4096) == 2  # the 128x256 tile for big products
    # too few blocks: the smallest tile (the cp.async variants listed after it are never picked)
    assert _cuda.gemm_variants()[_cuda.gemm_pick_variant(256, 256, 256)] == "32x32x8/4x4"
    for shape in [(1, 1, 1), (256, 256, 256), (1024, 1024, 1024), (4096, 4096, 4096)]:
        assert not _cuda.gemm_variants()[_cuda.gemm_pick_variant(*shape)].startswith("async")


ASYNC = [v for v, name in enumerate(_cuda.gemm_variants()) if name.startswith("async")]


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_async_variants_vs_cublas_every_layout(ta, tb):
    """The cp.async pipelines (their swizzled K-major layouts and grouped block order) on
    a product with many K slices, partial edge tiles and more tile rows than one group,
    every transpose combination, against cuBLAS FP32 and the float64 reference. Every
    pitch is a multiple of 4, so the cp.async path (not the fallback) runs on sm_80+."""
    assert len(ASYNC) >= 3
    M, N, K = 1100, 1000, 900
    rng = np.random.default_rng(11 + 2 * ta + tb)
    a, b, bv, pre, scale = gemm_case(rng, M, N, K, ta, tb, bias=True)
    A, B, BV = dev(a), dev(b), dev(bv)
    ref32 = host(cp.matmul(A.T if ta else A, B.T if tb else B) + BV)
    for variant in ASYNC:
        got = host(_cuda.matmul(A, B, ta, tb, BV, ACTS["linear"], poisoned((M, N)), variant))
        check_gemm(got, pre, scale, "linear", K)
        assert np.linalg.norm(got - ref32) / np.linalg.norm(ref32) < 1e-5, _cuda.gemm_variants()[variant]


# ------------------------------------------------------------- activations
SIZES = [1, 2, 3, 4, 5, 7, 1023, 4099, (1 << 20) + 3]


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("offset", [0, 1])
def test_act_forward_backward(act, n, offset):
    rng = np.random.default_rng(n + offset)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    X = dev(x, offset)
    out = poisoned(n, offset)
    assert _cuda.act_forward(X, ACTS[act], out) is out
    y = host(out)
    ref = act64(x.astype(np.float64), act)
    if act in ("linear", "relu"):
        np.testing.assert_array_equal(y, ref.astype(np.float32))
    else:
        np.testing.assert_allclose(y, ref, rtol=2e-6, atol=2e-7)
    # Backward from the forward output, in the float32 operation order of the CPU
    # and NumPy kernels: bit-exact.
    dy = rng.standard_normal(n).astype(np.float32)
    dx = poisoned(n, 1 - offset)
    _cuda.act_backward(dev(dy, offset), out, ACTS[act], dx)
    one = np.float32(1)
    want = {"linear": dy, "relu": np.where(y > 0, dy, np.float32(0)),
            "sigmoid": dy * (y * (one - y)), "tanh": dy * ((one - y) * (one + y))}[act]
    np.testing.assert_array_equal(host(dx), want)


def test_act_forward_in_place_and_special_values():
    x = np.array([np.nan, -np.inf, np.inf, -1e30, 1e30, -100, 100, -0.0, 0.0, 1e-40, -1e-40, 3],
                 dtype=np.float32)
    for act in ACTS:
        X = dev(x)
        _cuda.act_forward(X, ACTS[act], X)  # in place
        y = host(X)
        assert np.isnan(y[0]), f"{act} must propagate NaN"
        assert not np.isnan(y[1:]).any(), f"{act} produced NaN from finite/infinite input: {y}"
    X = dev(x)
    _cuda.act_forward(X, ACTS["sigmoid"], X)
    y = host(X)
    assert y[1] == 0 and y[2] == 1 and y[3] == 0 and y[4] == 1  # no overflow for large |x|


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 5), (32, 64), (7, 129), (1000, 4), (2, 4097)])
@pytest.mark.parametrize("offset", [0, 1])
def test_bias_act(act, rows, cols, offset):
    rng = np.random.default_rng(rows * cols + offset)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    b = rng.standard_normal(cols).astype(np.float32)
    out = poisoned((rows, cols), offset)
    assert _cuda.bias_act(dev(x, offset), dev(b, offset), ACTS[act], out) is out
    pre = x + b  # float32, as every backend rounds it
    np.testing.assert_allclose(host(out), act64(pre.astype(np.float64), act), rtol=2e-6, atol=2e-7)


# -------------------------------------------------------------------- loss
def _ws():
    return cp.empty(_cuda.mse_workspace_len(), dtype=cp.float64)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 1000, 4097, (1 << 20) + 3])
def test_mse(n):
    rng = np.random.default_rng(n)
    p = rng.standard_normal(n).astype(np.float32)
    t = rng.standard_normal(n).astype(np.float32)
    ref = float(np.mean((p.astype(np.float64) - t) ** 2))
    ws = _ws()
    P, T = dev(p), dev(t)
    got = _cuda.mse(P, T, None, ws)
    assert isinstance(got, float)
    assert got == pytest.approx(ref, rel=1e-6)
    out = poisoned(1)
    assert _cuda.mse(P, T, out, ws) is out
    assert host(out)[0] == np.float32(got)
    # The unaligned (scalar) load path adds the same terms in the same order.
    assert _cuda.mse(dev(p, 1), dev(t, 3), None, ws) == got
    g = poisoned(n, 1)
    scale = 2.0 / n
    assert _cuda.mse_grad(P, T, scale, g) is g
    np.testing.assert_array_equal(host(g), np.float32(scale) * (p - t))


def test_mse_is_deterministic():
    n = 1 << 24
    rng = np.random.default_rng(24)
    P = dev(rng.standard_normal(n).astype(np.float32))
    T = dev(rng.standard_normal(n).astype(np.float32))
    ws = _ws()
    outs = [poisoned(1) for _ in range(3)]
    vals = [_cuda.mse(P, T, None, ws) for _ in range(3)]
    for o in outs:
        _cuda.mse(P, T, o, ws)
    assert vals[0] == vals[1] == vals[2]
    bits = {host(o).view(np.uint32)[0] for o in outs}
    assert len(bits) == 1, f"float32 results differ between runs: {bits}"
    ref = float(np.mean((host(P).astype(np.float64) - host(T)) ** 2))
    assert vals[0] == pytest.approx(ref, rel=1e-6)


def test_mse_workspace_is_checked():
    P = dev(np.ones(10, np.float32))
    with pytest.raises(ValueError, match="workspace"):
        _cuda.mse(P, P)
    with pytest.raises(ValueError, match="workspace"):
        _cuda.mse(P, P, None, cp.empty(3, dtype=cp.float64))
    with pytest.raises(TypeError, match="float64"):
        _cuda.mse(P, P, None, cp.empty(_cuda.mse_workspace_len(), dtype=cp.float32))


# ----------------------------------------------- softmax and cross-entropy
XENT = {"binary": 0, "categorical": 1, "sparse": 2}
# Rows of every length the kernels treat differently: one element, shorter than a
# warp, warp rows (<= 1024 columns) and block rows (> 1024), and row counts past one
# wave of blocks so the row loops stride.
ROW_SHAPES = [(1, 1), (3, 5), (7, 129), (33, 1000), (2, 1025), (3, 10000), (1000, 3), (70000, 2),
              (1100, 1031)]


def softmax64(z: np.ndarray) -> np.ndarray:
    return reference.softmax(z)


def xent64(z: np.ndarray, t: np.ndarray, kind: str):
    """(loss, act(z) - t) in float64; t holds one index per row for 'sparse'."""
    return reference.crossentropy(z, t, kind), reference.crossentropy_grad(z, t, kind)


def xent_target(rng, kind, rows, cols):
    if kind == "binary":
        return (rng.random((rows, cols)) > 0.5).astype(np.float32)
    labels = rng.integers(0, cols, rows)
    if kind == "sparse":
        return labels.astype(np.float32).reshape(rows, 1)
    p = rng.random((rows, cols)).astype(np.float32)  # probability rows, not only one-hot
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("rows,cols", ROW_SHAPES)
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_softmax(rows, cols, scale):
    rng = np.random.default_rng(rows * 7 + cols)
    x = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    X = dev(x)
    out = poisoned((rows, cols), 1)
    assert _cuda.softmax(X, out) is out
    y = host(out)
    ref = softmax64(x)
    assert np.isfinite(y).all()
    err = np.abs(y - ref)
    assert err.max() <= 1e-6 + 1e-6 * ref.max(), f"max error {err.max():.3g}"
    np.testing.assert_allclose(y.sum(axis=1, dtype=np.float64), 1.0, rtol=1e-6)
    _cuda.softmax(X, X)  # in place: the same bits
    np.testing.assert_array_equal(host(X), y)


@pytest.mark.parametrize("rows,cols", ROW_SHAPES)
def test_softmax_backward(rows, cols):
    rng = np.random.default_rng(rows + cols * 3)
    y = softmax64(rng.standard_normal((rows, cols)) * 3).astype(np.float32)
    dy = rng.standard_normal((rows, cols)).astype(np.float32)
    Dy, Y = dev(dy), dev(y)
    out = poisoned((rows, cols))
    assert _cuda.softmax_backward(Dy, Y, out) is out
    got = host(out)
    d = (dy.astype(np.float64) * y).sum(axis=1, keepdims=True)
    ref = y * (dy - d)
    # float(d), dy - d and the product are each rounded once
    bound = 4 * U32 * np.abs(y) * (np.abs(dy) + np.abs(d)) + 1e-37
    assert (np.abs(got - ref) <= bound).all(), f"max err/bound {np.max(np.abs(got - ref) / bound):.3g}"
    _cuda.softmax_backward(Dy, Y, Dy)  # in place over dy
    np.testing.assert_array_equal(host(Dy), got)


@pytest.mark.parametrize("kind", list(XENT))
@pytest.mark.parametrize("rows,cols", [(1, 1), (5, 3), (64, 10), (7, 1025), (3, 10000), (5000, 10),
                                       (70000, 1)])
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_xent_value_and_grad(kind, rows, cols, scale):
    if kind != "binary" and cols == 1 and rows > 1:
        cols = 2  # a softmax over one class is always 1: test two
    rng = np.random.default_rng(rows * 31 + cols + int(scale))
    z = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    t = xent_target(rng, kind, rows, cols)
    ref_loss, ref_d = xent64(z, t, kind)
    g_scale = 1.0 / (z.size if kind == "binary" else rows)
    Z, T, ws = dev(z), dev(t), _ws()
    g = poisoned((rows, cols), 1)
    value = _cuda.xent(Z, T, XENT[kind], g_scale, g, None, ws)
    assert isinstance(value, float) and np.isfinite(value)
    assert abs(value - ref_loss) <= 1e-6 * max(1.0, abs(ref_loss)), (value, ref_loss)
    got = host(g)
    ref = np.float32(g_scale) * ref_d
    tt = t if kind != "sparse" else np.eye(cols)[t.reshape(-1).astype(np.int64)]
    # act(z) rounded to float (sigmoid: a few ulp), the difference and the scaling
    bound = 8 * U32 * g_scale * (np.abs(ref_d + tt) + np.abs(tt)) + 1e-37
    assert (np.abs(got - ref) <= bound).all(), f"max err/bound {np.max(np.abs(got - ref) / bound):.3g}"
    # the value alone, and into a device element: the same reduction, the same bits
    assert _cuda.xent(Z, T, XENT[kind], g_scale, None, None, ws) == value
    out = poisoned(1)
    assert _cuda.xent(Z, T, XENT[kind], g_scale, None, out, ws) is out
    assert host(out)[0] == np.float32(value)


@pytest.mark.parametrize("kind,shape", [("binary", (1 << 12, 1 << 10)), ("categorical", (4096, 1000)),
                                        ("sparse", (4096, 1000)), ("sparse", (256, 5000))])
def test_xent_is_deterministic(kind, shape):
    rng = np.random.default_rng(99)
    z = (rng.standard_normal(shape) * 5).astype(np.float32)
    Z, T, ws = dev(z), dev(xent_target(rng, kind, *shape)), _ws()
    outs = [poisoned(1) for _ in range(3)]
    vals = [_cuda.xent(Z, T, XENT[kind], 1.0, None, None, ws) for _ in range(3)]
    for o in outs:
        _cuda.xent(Z, T, XENT[kind], 1.0, None, o, ws)
    assert vals[0] == vals[1] == vals[2]
    assert len({host(o).view(np.uint32)[0] for o in outs}) == 1
    # logits minus the row max is rounded to float before exp, as cpu::xent does
    assert vals[0] == pytest.approx(xent64(z, host(T), kind)[0], rel=1e-6)


@pytest.mark.parametrize("cols", [6, 2000])
def test_xent_sparse_bad_labels_give_nan_and_zero_gradient(cols):
    rng = np.random.default_rng(cols)
    labels = np.array([0, cols, -1, 2.5, np.nan, 1e30, -1e30, np.inf, cols - 1, -0.0, 1], np.float32)
    good = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1], bool)
    rows = len(labels)
    z = (rng.standard_normal((rows, cols)) * 10).astype(np.float32)
    Z, ws = dev(z), _ws()
    g = poisoned((rows, cols))
    value = _cuda.xent(Z, dev(labels.reshape(rows, 1)), XENT["sparse"], 1.0 / rows, g, None, ws)
    assert np.isnan(value)
    got = host(g)
    assert np.all(got[~good] == 0)
    t = np.where(good, labels, 0).astype(np.float32)
    ref = np.float32(1.0 / rows) * xent64(z, t, "sparse")[1]
    np.testing.assert_allclose(got[good], ref[good], rtol=1e-5, atol=1e-8)
    # only good labels: finite again (no error left behind by the bad reads it did not make)
    ok = _cuda.xent(dev(z[good]), dev(t[good].reshape(-1, 1)), XENT["sparse"], 1.0, None, None, ws)
    assert ok == pytest.approx(xent64(z[good], t[good], "sparse")[0], rel=1e-6)


# ---------------------------------------------------- metric accumulators
def confusion64(p, t, classes, sparse, threshold):
    """cpu::confusion_update in NumPy: argmax (first maximum) or p > threshold for one
    column; sparse labels truncated toward zero; rows outside [0, classes) skipped."""
    pred = (p[:, 0] > threshold).astype(np.int64) if p.shape[1] == 1 else p.argmax(axis=1)
    if sparse:
        lab = t.reshape(-1).astype(np.float64)
        ok = (lab > -1) & (lab < classes)
        truth = np.where(ok, np.trunc(np.where(ok, lab, 0)), -1).astype(np.int64)
    elif t.shape[1] == 1:
        truth = (t[:, 0] > 0.5).astype(np.int64)
    else:
        truth = t.argmax(axis=1)
    keep = (truth >= 0) & (truth < classes)
    counts = np.zeros((classes, classes))
    np.add.at(counts, (truth[keep], pred[keep]), 1.0)
    return counts


@pytest.mark.parametrize("case", ["sparse", "onehot", "binary_logits", "binary_probs", "ties", "many_rows",
                                  "wide"])
def test_confusion_update(case):
    rng = np.random.default_rng(len(case))
    rows, classes = 1000, 7
    sparse, threshold = False, 0.5
    if case == "sparse":
        p = rng.standard_normal((rows, classes)).astype(np.float32)
        t = rng.integers(0, classes, rows).astype(np.float32)
        t[:6] = [-1, classes, 2.7, -0.5, 100, 6]  # out of range skipped, fractions truncated
        sparse = True
    elif case in ("onehot", "ties", "many_rows", "wide"):
        if case == "many_rows":
            rows, classes = 100_003, 3
        if case == "wide":
            rows, classes = 50, 1100
        p = rng.standard_normal((rows, classes)).astype(np.float32)
        if case == "ties":  # equal maxima: the first one counts, as np.argmax
            p = rng.integers(0, 3, (rows, classes)).astype(np.float32)
        t = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, rows)]
    else:
        classes = 2
        p = rng.standard_normal((rows, 1)).astype(np.float32)
        if case == "binary_logits":
            threshold = 0.0
        else:
            p = 1 / (1 + np.exp(-p))
        t = (rng.random((rows, 1)) > 0.5).astype(np.float32)
    start = rng.integers(0, 5, (classes, classes)).astype(np.float64)
    counts = dev(start)
    P, T = dev(p), dev(t)
    for _ in range(2):
        _cuda.confusion_update(counts, P, T, classes, sparse, threshold)
    np.testing.assert_array_equal(host(counts), start + 2 * confusion64(p, t, classes, sparse, threshold))


def test_confusion_update_skips_nan_labels():
    p = np.eye(3, dtype=np.float32)
    counts = dev(np.zeros((3, 3)))
    _cuda.confusion_update(counts, dev(p), dev(np.array([0, np.nan, 2], np.float32)), 3, True)
    np.testing.assert_array_equal(host(counts), np.diag([1.0, 0.0, 1.0]))


@pytest.mark.parametrize("n", [1, 5, 1000, (1 << 20) + 3])
def test_error_sums_update(n):
    rng = np.random.default_rng(n)
    p = rng.standard_normal(n).astype(np.float32)
    t = rng.standard_normal(n).astype(np.float32)
    d = p.astype(np.float64) - t
    sums = dev(np.array([1.5, 2.5]))
    P, T = dev(p), dev(t)
    _cuda.error_sums_update(sums, P, T)
    got = host(sums)
    np.testing.assert_allclose(got, [1.5 + np.abs(d).sum(), 2.5 + (d * d).sum()], rtol=1e-12)
    again = dev(np.array([1.5, 2.5]))
    _cuda.error_sums_update(again, P, T)
    np.testing.assert_array_equal(host(again).view(np.uint64), got.view(np.uint64))


def test_classification_bindings_check_arguments():
    Z = dev(np.zeros((4, 3), np.float32))
    T = dev(np.zeros((4, 3), np.float32))
    ws = _ws()
    with pytest.raises(ValueError, match="workspace"):
        _cuda.xent(Z, T, 1)
    with pytest.raises(ValueError, match="kind"):
        _cuda.xent(Z, T, 3, 1.0, None, None, ws)
    with pytest.raises(ValueError, match="one class index per row"):
        _cuda.xent(Z, T, 2, 1.0, None, None, ws)
    with pytest.raises(ValueError, match="same shape"):
        _cuda.xent(Z, dev(np.zeros((4, 2), np.float32)), 1, 1.0, None, None, ws)
    with pytest.raises(ValueError, match="share memory"):
        _cuda.xent(Z, T, 1, 1.0, Z, None, ws)
    with pytest.raises(ValueError, match="grad has shape"):
        _cuda.xent(Z, T, 1, 1.0, poisoned((3, 4)), None, ws)
    with pytest.raises(ValueError, match="workspace has"):
        _cuda.xent(Z, T, 1, 1.0, None, None, cp.empty(3, dtype=cp.float64))
    with pytest.raises(ValueError, match="exactly one element"):
        _cuda.xent(Z, T, 1, 1.0, None, poisoned(2), ws)
    with pytest.raises(ValueError, match="itself or not share memory"):
        _cuda.softmax(Z[:3], Z[1:])
    with pytest.raises(ValueError, match="classes x classes"):
        _cuda.confusion_update(dev(np.zeros(4)), Z, T, 3, False)
    with pytest.raises(TypeError, match="float64"):
        _cuda.confusion_update(dev(np.zeros((3, 3), np.float32)), Z, T, 3, False)
    with pytest.raises(ValueError, match="columns"):
        _cuda.confusion_update(dev(np.zeros((4, 4))), Z, T, 4, False)
    with pytest.raises(ValueError, match="2 entries"):
        _cuda.error_sums_update(dev(np.zeros(3)), Z, T)


# ------------------------------------------------------------------ reduce
@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 7), (7, 1), (32, 64), (1000, 33), (3, 1025),
                                       (70000, 3)])
def test_sum_rows(rows, cols):
    rng = np.random.default_rng(rows + cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    X = dev(x)
    out = poisoned(cols)
    assert _cuda.sum_rows(X, out) is out
    got = host(out)
    ref = x.sum(axis=0, dtype=np.float64)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.sqrt(rows))
    again = host(_cuda.sum_rows(X, poisoned(cols)))
    np.testing.assert_array_equal(got.view(np.uint32), again.view(np.uint32))


# --------------------------------------------------------------- optimizers
@pytest.mark.parametrize("n", [1, 5, 1027, 100_003])
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_update_matches_numpy_backend(n, offset, momentum, nesterov):
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(np.float32)
    v = (rng.standard_normal(n) * 0.1).astype(np.float32)
    W, V = dev(w, offset), dev(v, offset)
    ref = NumpyBackend()
    for _ in range(3):
        g = rng.standard_normal(n).astype(np.float32)
        _cuda.sgd_update(W, dev(g, offset), V if momentum else None, 0.01, momentum, nesterov)
        ref.sgd_update(w, g, v if momentum else None, 0.01, momentum, nesterov)
    np.testing.assert_array_equal(host(W), w)
    if momentum:
        np.testing.assert_array_equal(host(V), v)


@pytest.mark.parametrize("n", [1, 5, 1027, 100_003])
@pytest.mark.parametrize("offset", [0, 1])
def test_adam_update_matches_numpy_backend(n, offset):
    rng = np.random.default_rng(n + 17)
    w = rng.standard_normal(n).astype(np.float32)
    m = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    W, Mm, V = dev(w, offset), dev(m, offset), dev(v, offset)
    ref = NumpyBackend()
    w64, m64, v64 = w.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    for step in range(1, 4):
        g = rng.standard_normal(n).astype(np.float32)
        _cuda.adam_update(W, dev(g, offset), Mm, V, 1e-3, 0.9, 0.999, 1e-7, step)
        ref.adam_update(w, g, m, v, 1e-3, 0.9, 0.999, 1e-7, step)
        m64 += (g - m64) * 0.1
        v64 += (g.astype(np.float64) ** 2 - v64) * 0.001
        w64 -= 1e-3 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step) * m64 / (np.sqrt(v64) + 1e-7)
    np.testing.assert_array_equal(host(W), w)
    np.testing.assert_array_equal(host(Mm), m)
    np.testing.assert_array_equal(host(V), v)
    np.testing.assert_allclose(host(W), w64, rtol=1e-5, atol=1e-6)


# --------------------------------------------- argument checks of the binding
class _Iface:
    """An object exposing a modified __cuda_array_interface__ of a CuPy array."""

    def __init__(self, arr, **changes):
        self._arr = arr  # keeps the memory alive
        self.__cuda_array_interface__ = {**arr.__cuda_array_interface__, **changes}


def test_binding_rejects_bad_arrays():
    A = dev(np.ones((4, 4), np.float32))
    out = poisoned((4, 4))
    with pytest.raises(TypeError, match="float32"):
        _cuda.matmul(A.astype(cp.float64), A, out=out)
    with pytest.raises(TypeError, match="CUDA device array"):
        _cuda.matmul(np.ones((4, 4), np.float32), A, out=out)
    with pytest.raises(ValueError, match="C-contiguous"):
        _cuda.matmul(dev(np.ones((4, 8), np.float32))[:, ::2], A, out=out)
    with pytest.raises(ValueError, match="C-contiguous"):
        _cuda.matmul(A.T[:, :3], A[:3], out=poisoned((4, 4)))
    with pytest.raises(ValueError, match="inner dimensions"):
        _cuda.matmul(A, dev(np.ones((3, 4), np.float32)), out=out)
    with pytest.raises(ValueError, match="out has shape"):
        _cuda.matmul(A, A, out=poisoned((4, 5)))
    with pytest.raises(ValueError, match="bias"):
        _cuda.matmul(A, A, bias=dev(np.ones(3, np.float32)), out=out)
    with pytest.raises(ValueError, match="share memory"):
        _cuda.matmul(A, A, out=A)
    with pytest.raises(ValueError, match="variant"):
        _cuda.matmul(A, A, out=out, variant=len(VARIANTS))
    with pytest.raises(ValueError, match="activation"):
        _cuda.act_forward(A, 17, out)
    with pytest.raises(ValueError, match="read-only"):
        _cuda.act_forward(A, 1, _Iface(out, data=(out.data.ptr, True)))
    host_buf = np.ones(16, np.float32)
    fake = _Iface(A, data=(host_buf.ctypes.data, False))
    with pytest.raises(ValueError, match="device memory"):
        _cuda.act_forward(fake, 1, out)
    with pytest.raises(ValueError, match="same shape"):
        _cuda.act_backward(A, dev(np.ones(16, np.float32)), 1, out)
    with pytest.raises(ValueError, match="momentum"):
        _cuda.sgd_update(A, A.copy(), None, 0.1, 0.9, False)


def test_binding_allocates_out_with_cupy():
    A = dev(np.eye(3, dtype=np.float32))
    got = _cuda.matmul(A, A)
    assert isinstance(got, cp.ndarray) and got.dtype == cp.float32
    np.testing.assert_array_equal(host(got), np.eye(3, dtype=np.float32))
    assert host(_cuda.sum_rows(A)).tolist() == [1, 1, 1]


def test_kernels_run_on_the_given_stream():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 200)).astype(np.float32)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        A = cp.asarray(a)
        out = cp.full((300, 300), cp.nan, dtype=cp.float32)
        _cuda.matmul(A, A, False, True, out=out, stream=s.ptr)
        s.synchronize()
    np.testing.assert_allclose(cp.asnumpy(out), a.astype(np.float64) @ a.T, rtol=1e-4, atol=1e-3)


def test_torch_cuda_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(65, 33, device="cuda", generator=g)
    b = torch.randn(33, 17, device="cuda", generator=g)
    out = torch.full((65, 17), float("nan"), device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    _cuda.matmul(a, b, out=out, stream=stream)
    torch.cuda.synchronize()
    torch.testing.assert_close(out, a @ b, rtol=1e-4, atol=1e-4)


# --------------------------------------------------- fusednn.ops with CuPy
@pytest.fixture
def on_cuda():
    prev = fusednn.get_backend().name
    fusednn.set_backend("cuda")
    yield fusednn.get_backend()
    fusednn.set_backend(prev)


def test_ops_return_cupy_and_convert_inputs(on_cuda):
    rng = np.random.default_rng(11)
    a = rng.standard_normal((40, 30))
    b = rng.standard_normal((30, 20))
    A64 = cp.asarray(a)                     # float64: converted once by ops
    Bnc = cp.asarray(np.asfortranarray(b)).astype(cp.float32)[:, :]  # F-order: passed transposed
    Bstrided = cp.asarray(np.repeat(b, 2, axis=1).astype(np.float32))[:, ::2]  # non-contiguous
    for B in (Bnc, Bstrided):
        got = ops.matmul(A64, B)
        assert isinstance(got, cp.ndarray) and got.dtype == cp.float32
        np.testing.assert_allclose(host(got), a @ b, rtol=1e-4, atol=1e-4)
    r = ops.relu(cp.asarray(a)[:, ::3])
    assert isinstance(r, cp.ndarray) and r.dtype == cp.float32
    np.testing.assert_array_equal(host(r), np.maximum(a[:, ::3], 0).astype(np.float32))
    p, t = a[:20, :20].astype(np.float32), b[:20, :20].T.astype(np.float32)
    m = ops.mse(cp.asarray(p), cp.asarray(t))
    assert isinstance(m, float)
    assert m == pytest.approx(np.mean((p.astype(np.float64) - t) ** 2), rel=1e-6)


def test_ops_reject_numpy_cupy_mix(on_cuda):
    a = np.ones((3, 3), np.float32)
    with pytest.raises(TypeError, match="mix"):
        ops.matmul(a, cp.asarray(a))
    with pytest.raises(TypeError, match="mix"):
        ops.mse(cp.asarray(a), a)


def test_ops_linear_and_grads_on_device(on_cuda):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 10)).astype(np.float32)
    w = rng.standard_normal((10, 64)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    y = ops.linear(cp.asarray(x), cp.asarray(w), cp.asarray(b), activation="relu")
    ref = np.maximum(x.astype(np.float64) @ w + b, 0)
    np.testing.assert_allclose(host(y), ref, rtol=1e-5, atol=1e-5)
    g = ops.sum_rows(y)
    np.testing.assert_allclose(host(g), host(y).sum(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-5)
    d = ops.relu_grad(cp.ones_like(y), y)
    np.testing.assert_array_equal(host(d), (host(y) > 0).astype(np.float32))
