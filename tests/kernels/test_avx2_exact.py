"""The AVX2 kernels that promise the portable loops' exact arithmetic (sum_rows,
regularize, the softmax cross-entropy's lanes): the same bits with and without
``force_portable``, on sizes around their vector widths and on awkward values."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import backends
from fusednn.backends import XENT_KINDS

pytestmark = pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")


@pytest.fixture
def k():
    k = backends.native("cpu")
    if not k.cpu_features()["avx2"]:
        pytest.skip("this CPU has no AVX2: only the portable kernels run")
    yield k
    k.force_portable(False)


def _both(k, fn):
    k.force_portable(True)
    portable = fn()
    k.force_portable(False)
    return portable, fn()


def _values(rng, shape):
    x = (rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 1e3], shape)).astype(np.float32)
    flat = x.reshape(-1)
    for i, v in enumerate([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40]):
        if flat.size > 6 * i + 3:
            flat[6 * i + 3] = v
    return x


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 17), (3, 4), (5, 15), (7, 16), (200, 100), (9, 33), (64, 10),
                                       (2, 1030)])
def test_sum_rows_same_bits(k, rows, cols):
    x = _values(np.random.default_rng(rows * 7 + cols), (rows, cols))
    portable, fast = _both(k, lambda: k.sum_rows(x, None))
    np.testing.assert_array_equal(portable, fast)


@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 16, 31, 6400, 6413])
@pytest.mark.parametrize("l1,l2", [(0.0, 1e-4), (0.01, 0.0), (0.003, 0.25), (0.0, 0.0)])
def test_regularize_same_bits(k, n, l1, l2):
    rng = np.random.default_rng(n)
    w = _values(rng, (n,))
    g0 = rng.standard_normal(n).astype(np.float32)

    def run():
        g, loss = g0.copy(), np.array([0.5], np.float32)
        k.regularize(w, g, l1, l2, loss)
        return g, loss

    (gp, lp), (gf, lf) = _both(k, run)
    np.testing.assert_array_equal(gp, gf)
    np.testing.assert_array_equal(lp, lf)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 3755, 6413])
@pytest.mark.parametrize("l1,l2", [(0.0, 1e-4), (0.01, 0.0), (0.003, 0.25)])
@pytest.mark.parametrize("into", ["grad0", "grad1", "new"])
def test_weighted_sum_regularize_is_the_sum_then_regularize(k, n, l1, l2, into):
    """The replicas' one-pass update: the bits of c0*g0 + c1*g1 in float32 followed by
    regularize, on both paths, whichever buffer receives the sum."""
    rng = np.random.default_rng(n + 3)
    w, g0, g1 = _values(rng, (n,)), _values(rng, (n,)), _values(rng, (n,))
    c0, c1 = np.float32(100 / 197), np.float32(97 / 197)
    ref = (c0 * g0 + c1 * g1).astype(np.float32)
    ref_loss = np.array([0.5], np.float32)
    k.regularize(w, ref, l1, l2, ref_loss)

    def run():
        a, b = g0.copy(), g1.copy()
        g = a if into == "grad0" else b if into == "grad1" else np.full(n, np.nan, np.float32)
        loss = np.array([0.5], np.float32)
        k.weighted_sum_regularize(w, g, a, b, c0, c1, l1, l2, loss)
        return g, loss

    for g, loss in _both(k, run):
        np.testing.assert_array_equal(g, ref)
        np.testing.assert_array_equal(loss, ref_loss)
    if n > 1:  # a shifted view would read values the pass already wrote
        a = np.ones(n + 1, np.float32)
        with pytest.raises(ValueError, match="overlaps"):
            k.weighted_sum_regularize(w, a[1:], a[:-1], g1.copy(), c0, c1, l1, l2)


@pytest.mark.parametrize("kind", ["categorical", "sparse"])
@pytest.mark.parametrize("cols", [2, 5, 10, 16, 32])
def test_softmax_xent_lanes_same_bits_as_portable(k, kind, cols):
    rng = np.random.default_rng(cols)
    rows = 29
    z = (rng.standard_normal((rows, cols)) * 8).astype(np.float32)
    t = (rng.integers(0, cols, (rows, 1)).astype(np.float32) if kind == "sparse"
         else rng.dirichlet(np.ones(cols), rows).astype(np.float32))

    def run():
        g = np.empty_like(z)
        return k.xent(z, t, XENT_KINDS[kind], 1 / rows, g, None), g

    (vp, gp), (vf, gf) = _both(k, run)
    # the portable build takes exp in double, the AVX2 one in float: close, not equal
    np.testing.assert_allclose(gf, gp, rtol=1e-5, atol=1e-7)
    assert vf == pytest.approx(vp, rel=1e-6)


@pytest.mark.parametrize("rows,cols,outs", [(1, 1, 1), (3, 4, 1), (200, 100, 1), (7, 7, 1), (5, 8, 1), (9, 9, 1),
                                         (2, 16, 1), (4, 17, 1), (31, 48, 1), (6, 130, 1), (0, 5, 1), (200, 48, 10),
                                         (7, 8, 2), (1, 16, 15), (33, 24, 3), (5, 40, 10), (0, 16, 4),
                                         (9, 12, 10), (6, 16, 16), (3, 4, 5)])
@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "linear", "elu"])
@pytest.mark.parametrize("with_db", [True, False])
def test_hidden_grad_is_the_three_kernels(k, rows, cols, outs, act, with_db):
    """A hidden layer's gradient from the layer above (a binary classifier's or regressor's
    one unit, or a few classes): the bits of matmul, act_backward and sum_rows, on both
    paths, in the one-pass shapes (k = 1; k < 16 with whole 8-column vectors) and the
    others (the three kernels themselves, as for elu), and the float64 result."""
    from fusednn.backends.base import ACTIVATIONS
    code = ACTIVATIONS[act]
    rng = np.random.default_rng(rows * 131 + cols * 7 + outs)
    dz, w = _values(rng, (rows, outs)), _values(rng, (cols, outs))
    y = rng.standard_normal((rows, cols)).astype(np.float32)
    y = {"relu": np.maximum(y, 0), "sigmoid": 1 / (1 + np.exp(-y)), "tanh": np.tanh(y)}.get(act, y).astype(np.float32)
    if y.size > 2:
        y.reshape(-1)[1] = np.nan

    def fused():
        db = np.full(cols, np.nan, np.float32) if with_db else None
        return k.hidden_grad(dz, w, y, code, db), db

    def unfused():
        g = k.act_backward(k.matmul(dz, w, False, True), y, code)
        return g, k.sum_rows(g, None)

    for (g, db), (g_ref, db_ref) in zip(_both(k, fused), _both(k, unfused)):
        np.testing.assert_array_equal(g, g_ref)
        if with_db:
            np.testing.assert_array_equal(db, db_ref)
    if act in ("relu", "linear"):  # and the float64 arithmetic, where the values are finite
        with np.errstate(all="ignore"):
            want = (dz.astype(np.float64) @ w.T.astype(np.float64)) * (y > 0 if act == "relu" else 1)
        ok = np.isfinite(want) & np.isfinite(g)
        scale = np.abs(dz).astype(np.float64) @ np.abs(w.T).astype(np.float64)
        assert np.all(np.abs(g[ok] - want[ok]) <= 1e-6 * scale[ok] + np.finfo(np.float32).tiny)


def test_hidden_grad_rejects_bad_shapes_and_overlap(k):
    y = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="dz has shape"):
        k.hidden_grad(np.ones(5, np.float32), np.ones(3, np.float32), y, 1)
    with pytest.raises(ValueError, match="w has shape"):
        k.hidden_grad(np.ones(4, np.float32), np.ones((3, 2), np.float32), y, 1)
    with pytest.raises(ValueError, match="w has shape"):
        k.hidden_grad(np.ones((4, 2), np.float32), np.ones(3, np.float32), y, 1)
    with pytest.raises(ValueError, match="must not share memory with y"):
        k.hidden_grad(np.ones(4, np.float32), np.ones(3, np.float32), y, 1, None, y)
    with pytest.raises(TypeError, match="dz must have dtype float32"):
        k.hidden_grad(np.ones(4), np.ones(3, np.float32), y, 1)
    with pytest.raises(ValueError, match="dz must be C-contiguous"):
        k.hidden_grad(np.arange(8, dtype=np.float32)[::2], np.ones(3, np.float32), y, 1)
    got = k.hidden_grad(np.arange(4, dtype=np.float32).reshape(4, 1), np.ones((3, 1), np.float32), y, 0)
    np.testing.assert_array_equal(got, np.outer(np.arange(4), np.ones(3)).astype(np.float32))
