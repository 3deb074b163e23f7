"""The elementwise merge kernels of the fused trainer's graph blocks (fusednn/cpu_merge.h,
``_cpu.merge_binary`` / ``_cpu.merge_scale``) against NumPy's float32 operations, which
the per-op merge layers use: equal bit for bit (one rounding per operation), on
contiguous blocks and on column slices of wider arrays (a model input read in place from
the packed batch), sizes 1 and odd widths; bad input is refused at the binding."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import backends

pytestmark = pytest.mark.skipif("cpu" not in backends.available(), reason="the _cpu extension is not built")

OPS = {0: np.add, 1: np.subtract, 2: np.multiply}


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 7), (5, 1), (13, 37), (64, 64)])
@pytest.mark.parametrize("op", sorted(OPS))
def test_merge_binary_matches_numpy(rows, cols, op):
    k = backends.native("cpu")
    rng = np.random.default_rng(rows * 100 + cols + op)
    a = rng.normal(size=(rows, cols)).astype(np.float32)
    b = rng.normal(size=(rows, cols)).astype(np.float32)
    np.testing.assert_array_equal(k.merge_binary(a, b, op), OPS[op](a, b))
    # column slices of wider arrays (row strides 2*cols+3 and cols+1), into a given out
    wa = rng.normal(size=(rows, 2 * cols + 3)).astype(np.float32)
    wb = rng.normal(size=(rows, cols + 1)).astype(np.float32)
    out = np.full((rows, cols), np.nan, np.float32)
    k.merge_binary(wa, wb, op, a_col=cols + 2, b_col=1, cols=cols, out=out)
    np.testing.assert_array_equal(out, OPS[op](wa[:, cols + 2:2 * cols + 2], wb[:, 1:]))


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 5), (17, 33)])
@pytest.mark.parametrize("s", [-1.0, 1 / 3, 0.5])
def test_merge_scale_matches_numpy(rows, cols, s):
    k = backends.native("cpu")
    rng = np.random.default_rng(rows + cols)
    x = rng.normal(size=(rows, cols + 4)).astype(np.float32)
    s32 = np.float32(s)
    np.testing.assert_array_equal(k.merge_scale(x, s32), x * s32)
    np.testing.assert_array_equal(k.merge_scale(x, s32, x_col=3, cols=cols), x[:, 3:3 + cols] * s32)
    # float64 reference: one float32 rounding of the exact product
    ref = (x[:, :cols].astype(np.float64) * float(s32)).astype(np.float32)
    np.testing.assert_array_equal(k.merge_scale(x, s32, cols=cols), ref)


def test_merge_kernels_refuse_bad_input():
    k = backends.native("cpu")
    a = np.ones((4, 3), np.float32)
    with pytest.raises(TypeError):
        k.merge_binary(a.astype(np.float64), a, 0)
    with pytest.raises(ValueError, match="contiguous"):
        k.merge_binary(np.ones((4, 6), np.float32)[:, ::2], a, 0)
    with pytest.raises(ValueError, match="op must be"):
        k.merge_binary(a, a, 3)
    with pytest.raises(ValueError, match="outside"):
        k.merge_binary(a, a, 0, b_col=1)  # b's columns [1, 4) of 3
    with pytest.raises(ValueError, match="rows"):
        k.merge_binary(a, np.ones((5, 3), np.float32), 0)
    with pytest.raises(ValueError, match="expected"):
        k.merge_binary(a, a, 0, out=np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="outside"):
        k.merge_scale(a, 2.0, x_col=2, cols=2)
