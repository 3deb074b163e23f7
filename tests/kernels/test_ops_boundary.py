"""fusednn.ops at its boundary on the host devices: what it converts (lists, float64,
ints, bools, float16, non-contiguous views) and empty inputs."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import ops


def test_ops_accept_lists_float64_ints_and_views(host_device):
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


def test_empty_inputs(host_device):
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
