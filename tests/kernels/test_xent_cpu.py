"""The CPU softmax cross-entropy (the fused trainer's classification loss) against a
float64 reference: row widths around the 8-lane vector exponentials (1..17, the
10 classes of digits, wide rows), large logits, sparse labels; value and gradient."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import backends
from fusednn.backends import XENT_KINDS

from helpers import poisoned

pytestmark = pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")
U32 = float(np.finfo(np.float32).eps)  # (pytest.approx takes Python numbers only from pytest 9.2)


def _reference(z: np.ndarray, t: np.ndarray, kind: str) -> tuple[float, np.ndarray]:
    z = z.astype(np.float64)
    rows, cols = z.shape
    onehot = np.eye(cols)[t.reshape(-1).astype(np.int64)] if kind == "sparse" else t.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    loss = float((onehot * (lse - z)).sum() / rows)
    return loss, np.exp(z - lse) - onehot


@pytest.mark.parametrize("kind", ["categorical", "sparse"])
@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 2), (5, 7), (4, 8), (6, 9), (200, 10), (3, 15), (2, 16),
                                       (7, 17), (3, 1025)])
@pytest.mark.parametrize("spread", [1.0, 60.0])
def test_softmax_xent_value_and_gradient(kind, rows, cols, spread):
    k = backends.native("cpu")
    rng = np.random.default_rng(rows * 131 + cols + int(spread))
    z = (rng.standard_normal((rows, cols)) * spread).astype(np.float32)
    labels = rng.integers(0, cols, rows)
    t = labels.astype(np.float32).reshape(-1, 1) if kind == "sparse" else np.eye(cols, dtype=np.float32)[labels]
    scale = 1.0 / rows
    g = poisoned((rows, cols))
    value = k.xent(z, t, XENT_KINDS[kind], scale, g, None)
    ref_loss, ref_d = _reference(z, t, kind)
    assert abs(value - ref_loss) <= 1e-6 * max(1.0, abs(ref_loss))
    onehot = np.eye(cols)[labels]
    # the probability to a few ulp, then the difference and the scaling rounded once each
    bound = 8 * U32 * scale * (np.abs(ref_d + onehot) + np.abs(onehot)) + 1e-37
    assert np.all(np.abs(g - scale * ref_d) <= bound)
    assert k.xent(z, t, XENT_KINDS[kind], scale, None, None) == pytest.approx(value, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("kind", ["categorical", "sparse"])
@pytest.mark.parametrize("cols", [2, 3, 7, 8, 9, 10, 16, 17, 31, 32, 33])
def test_rows_in_vector_lanes_match_one_row_at_a_time(kind, cols):
    """Blocks of eight rows run with the rows in the vector lanes (up to 32 classes); a
    single row runs the row loop. Both must give the same bits: each row's gradient,
    and the loss, here with logits that overflow, underflow, a NaN and soft targets."""
    k = backends.native("cpu")
    rows = 21  # two lane blocks and a tail of five rows
    rng = np.random.default_rng(cols)
    z = (rng.standard_normal((rows, cols)) * rng.choice([0.1, 5.0, 90.0], (rows, 1))).astype(np.float32)
    z[3, cols // 2] = 120.0
    z[4, :] = -200.0
    z[5, 0] = np.nan
    if kind == "sparse":
        t = rng.integers(0, cols, (rows, 1)).astype(np.float32)
    else:
        t = rng.dirichlet(np.ones(cols), rows).astype(np.float32)
    scale = 1.0 / rows
    g = poisoned((rows, cols))
    k.xent(z, t, XENT_KINDS[kind], scale, g, None)
    for r in range(rows):
        gr = poisoned((1, cols))
        k.xent(z[r:r + 1], t[r:r + 1], XENT_KINDS[kind], scale, gr, None)
        np.testing.assert_array_equal(g[r], gr[0], err_msg=f"row {r}")
    # the loss without the NaN row: the same per-row values summed in row order
    ok = np.ones(rows, bool)
    ok[5] = False
    zz, tt = z[ok], t[ok]
    total = 0.0
    for r in range(zz.shape[0]):
        total += k.xent(zz[r:r + 1], tt[r:r + 1], XENT_KINDS[kind], 1.0, None, None)
    assert k.xent(zz, tt, XENT_KINDS[kind], scale, None, None) == total / zz.shape[0]
    assert np.isnan(k.xent(z, t, XENT_KINDS[kind], scale, None, None))


def test_bad_sparse_label_in_a_lane_block():
    """A bad label in a block of eight rows: that row (only) has a zero gradient and the loss is NaN."""
    k = backends.native("cpu")
    rng = np.random.default_rng(0)
    z = rng.standard_normal((16, 10)).astype(np.float32)
    t = rng.integers(0, 10, (16, 1)).astype(np.float32)
    t[2, 0] = 10.0
    g = poisoned((16, 10))
    assert np.isnan(k.xent(z, t, XENT_KINDS["sparse"], 1 / 16, g, None))
    assert np.all(g[2] == 0)
    for r in (0, 1, 3, 8, 15):
        gr = poisoned((1, 10))
        k.xent(z[r:r + 1], t[r:r + 1], XENT_KINDS["sparse"], 1 / 16, gr, None)
        np.testing.assert_array_equal(g[r], gr[0])


@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 1), (8, 1), (9, 1), (200, 1), (3, 5), (331, 3)])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_binary_value_and_gradient(rows, cols, soft):
    """The binary cross-entropy on logits (an output layer of one sigmoid unit, or
    multi-label): vector lanes of 8 and a scalar tail, logits up to ±100 (saturated
    sigmoids, e^-|z| underflowing), hard and soft labels; the mean loss and
    scale * (sigmoid(z) - t) against float64 to a few float32 ulp; NaN propagates."""
    k = backends.native("cpu")
    rng = np.random.default_rng(rows * 7 + cols + soft)
    z = (rng.standard_normal((rows, cols)) * rng.choice([0.1, 3.0, 30.0], (rows, 1))).astype(np.float32)
    z.flat[:: max(1, z.size // 3)] = 100.0
    z.flat[1:: max(1, z.size // 3)] = -100.0
    t = (rng.random((rows, cols)) if soft else rng.integers(0, 2, (rows, cols))).astype(np.float32)
    scale = 1.0 / z.size
    g = poisoned(z.shape)
    value = k.xent(z, t, XENT_KINDS["binary"], scale, g, None)
    zd, td = z.astype(np.float64), t.astype(np.float64)
    ref = float(np.mean(np.maximum(zd, 0) - zd * td + np.log1p(np.exp(-np.abs(zd)))))
    assert value == pytest.approx(ref, rel=4 * U32, abs=1e-9)
    want = scale * (1.0 / (1.0 + np.exp(-zd)) - td)
    assert np.all(np.abs(g - want) <= 4 * U32 * scale + 4 * U32 * np.abs(want))
    z[0, 0] = np.nan
    assert np.isnan(k.xent(z, t, XENT_KINDS["binary"], scale, g, None)) and np.isnan(g[0, 0])


def test_sigmoid_binary_huge_targets_stay_finite():
    """z·t past float32's range (hostile targets) is formed in double, as the portable
    loop does: the mean stays the finite float64 value instead of overflowing to -inf."""
    k = backends.native("cpu")
    z = np.full((16, 1), 0.25, np.float32)
    t = np.full((16, 1), 3e38, np.float32)
    zd, td = z.astype(np.float64), t.astype(np.float64)
    ref = float(np.mean(np.maximum(zd, 0) - zd * td + np.log1p(np.exp(-np.abs(zd)))))
    assert k.xent(z, t, XENT_KINDS["binary"], 1 / 16, None, None) == pytest.approx(ref, rel=4 * U32)
