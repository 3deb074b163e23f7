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
U32 = np.finfo(np.float32).eps


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
