"""Reduction kernel family: sum_rows (the bias gradient) on every device against the
float64 reference, with a per-column bound on the size of its terms."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import ops
from fusednn.bench import reference


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 600), (1000, 1), (33, 65), (5000, 513)])
def test_sum_rows(device, rows, cols):
    rng = np.random.default_rng(rows + cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    got = device.get(ops.sum_rows(device.put(x), out=device.poisoned(cols)))
    scale = reference.sum_rows(np.abs(x))
    assert np.all(np.abs(got - reference.sum_rows(x)) <= 1e-6 * scale)
    assert ops.bias_grad is ops.sum_rows
