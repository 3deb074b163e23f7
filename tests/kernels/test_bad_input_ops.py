"""Bad input at the ops boundary and at the raw binding: clear exceptions, no garbage."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import backends, ops


def test_shape_mismatch_names_both_shapes(host_backend_name):
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 2\)"):
        ops.matmul(np.ones((3, 4)), np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"\(4, 1\).*\(4,\)"):
        ops.mse(np.ones((4, 1)), np.ones(4))
    with pytest.raises(ValueError, match="same shape"):
        ops.relu_grad(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"b has shape \(3,\), expected \(2,\)"):
        ops.linear(np.ones((1, 4)), np.ones((4, 2)), np.ones(3))


def test_wrong_rank(host_backend_name):
    with pytest.raises(ValueError, match="2-D"):
        ops.matmul(np.ones(3), np.ones((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        ops.sum_rows(np.ones((2, 2, 2)))


@pytest.mark.parametrize("bad", [np.ones(3, np.complex64), np.array(["a", "b", "c"]),
                                 np.array([object(), 1, 2], dtype=object), "abc", [1, "x"]])
def test_non_real_inputs_raise_type_error(host_backend_name, bad):
    with pytest.raises(TypeError):
        ops.relu(bad)


def test_out_checks(host_backend_name):
    a = np.ones((2, 3), np.float32)
    b = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"out has shape \(2, 3\), expected \(2, 4\)"):
        ops.matmul(a, b, out=np.empty((2, 3), np.float32))
    with pytest.raises(TypeError, match="float32"):
        ops.matmul(a, b, out=np.empty((2, 4)))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.matmul(a, b, out=np.empty((4, 2), np.float32).T)
    sq = np.ones((3, 3), np.float32)
    with pytest.raises(ValueError, match="share memory"):
        ops.matmul(sq, sq, out=sq)
    x = np.arange(-3, 3, dtype=np.float32)
    assert ops.relu(x, out=x) is x  # elementwise in place is fine
    np.testing.assert_array_equal(x, [0, 0, 0, 0, 1, 2])


def test_unknown_activation_lists_valid_names(host_backend_name):
    with pytest.raises(ValueError, match="relu"):
        ops.activation(np.ones(2), "gelus")
    with pytest.raises(ValueError, match="sigmoid"):
        ops.linear(np.ones((1, 1)), np.ones((1, 1)), activation="swishh")


@pytest.fixture
def k():
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    return backends.native("cpu")


def test_binding_rejects_instead_of_converting(k):
    f32 = np.ones((2, 2), np.float32)
    out = np.empty((2, 2), np.float32)
    with pytest.raises(TypeError, match="a must have dtype float32, got float64"):
        k.matmul(np.ones((2, 2)), f32, out=out)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        k.matmul([[1.0, 2.0], [3.0, 4.0]], f32, out=out)
    with pytest.raises(ValueError, match="b must be C-contiguous"):
        k.matmul(f32, np.ones((2, 4), np.float32)[:, ::2], out=out)
    with pytest.raises(ValueError, match="inner dimensions"):
        k.matmul(f32, np.ones((3, 2), np.float32), out=out)
    ro = np.empty((2, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        k.matmul(f32, f32, out=ro)
    with pytest.raises(ValueError, match="bias has shape"):
        k.matmul(f32, f32, False, False, np.ones(3, np.float32), out=out)
    with pytest.raises(ValueError, match="activation code"):
        k.act_forward(f32, 17, out)
    with pytest.raises(ValueError, match=r"out has shape \(4,\), expected \(2, 2\)"):
        k.act_forward(f32, 1, np.empty(4, np.float32))
    with pytest.raises(ValueError, match="share memory"):
        k.matmul(f32, f32, out=f32)
    with pytest.raises(ValueError, match="step must be >= 1"):
        k.adam_update(f32, f32.copy(), f32.copy(), f32.copy(), 1e-3, 0.9, 0.999, 1e-7, 0)
    with pytest.raises(ValueError, match="one element"):
        k.mse(f32, f32, np.empty(2, np.float32))
    got = k.matmul(f32, f32)  # without out, the binding allocates the result
    assert got.dtype == np.float32 and got.shape == (2, 2) and (got == 2).all()
