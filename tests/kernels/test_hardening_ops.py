"""Regression tests for the hostile-input defects of issue 13 that live in fusednn.ops
and the kernels' bindings: partial overlap of ``out`` (7), undefined float-to-int
casts and zero-column logits (10), scalars, thread counts and aliased optimizer state
(11). Each failed before its fix."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import backends, ops
from fusednn.backends.numpy import act_forward_np

ELEMENTWISE = ["relu", "sigmoid", "tanh"]


# ---------------------------------------------------------------- defect 7: out overlap
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_partial_overlap_is_refused(host_backend_name, name):
    buf = np.linspace(-3, 3, 10, dtype=np.float32)
    before = buf.copy()
    with pytest.raises(ValueError, match="itself or not share memory"):
        getattr(ops, name)(buf[:-1], out=buf[1:])
    np.testing.assert_array_equal(buf, before)  # nothing half-written
    with pytest.raises(ValueError, match="itself or not share memory"):
        getattr(ops, name)(buf[1:], out=buf[:-1])


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_exactly_in_place_matches_numpy(host_backend_name, name):
    x = np.linspace(-3, 3, 37, dtype=np.float32)
    ref = act_forward_np(x.copy(), np.empty_like(x), name)
    assert getattr(ops, name)(x, out=x) is x
    np.testing.assert_allclose(x, ref, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_grad_overlap(host_backend_name, name):
    buf = np.linspace(0.1, 0.9, 12, dtype=np.float32)
    y = np.linspace(0.2, 0.8, 11, dtype=np.float32)
    with pytest.raises(ValueError, match="itself or not share memory"):
        ops.activation_grad(buf[:-1], y, name, out=buf[1:])
    with pytest.raises(ValueError, match="itself or not share memory"):
        ops.activation_grad(y, buf[1:], name, out=buf[:-1])
    dy = buf[:-1].copy()
    ref = ops.activation_grad(dy.copy(), y, name)
    assert ops.activation_grad(dy, y, name, out=dy) is dy
    np.testing.assert_allclose(dy, ref, rtol=1e-6)


def test_row_ops_overlap(host_backend_name):
    rng = np.random.default_rng(0)
    buf = rng.standard_normal(5 * 4 + 4).astype(np.float32)
    x, shifted = buf[:20].reshape(5, 4), buf[4:].reshape(5, 4)
    for call in (lambda: ops.softmax(x, out=shifted),
                 lambda: ops.softmax_grad(x, np.full((5, 4), 0.25, np.float32), out=shifted),
                 lambda: ops.mse_grad(x, np.zeros((5, 4), np.float32), out=shifted)):
        with pytest.raises(ValueError, match="itself or not share memory"):
            call()
    # exactly in place is the same as out of place
    z = rng.standard_normal((5, 4)).astype(np.float32)
    ref = ops.softmax(z)
    assert ops.softmax(z, out=z) is z
    np.testing.assert_allclose(z, ref, rtol=1e-6)
    p, t = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)
    ref = ops.mse_grad(p, t)
    np.testing.assert_allclose(ops.mse_grad(p, t, out=p), ref, rtol=1e-6)


def test_crossentropy_grad_must_not_share_memory(host_backend_name):
    z = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    with pytest.raises(ValueError, match="must not share memory with logits"):
        ops.crossentropy_grad(z, t, "categorical", out=z)
    with pytest.raises(ValueError, match="must not share memory with target"):
        ops.crossentropy_grad(z, t, "categorical", out=t)


@pytest.mark.parametrize("pair", ["m_is_v", "param_is_grad", "m_overlaps_v"])
def test_adam_refuses_aliased_state_on_every_backend(host_backend_name, pair):
    """cpu and numpy used to disagree on adam_update(m is v) (numpy ran it, giving a
    different step than with separate moments); now both refuse any sharing."""
    p = np.ones(6, np.float32)
    g = np.full(6, 0.5, np.float32)
    buf = np.zeros(7, np.float32)
    m, v = np.zeros(6, np.float32), np.zeros(6, np.float32)
    if pair == "m_is_v":
        v = m
    elif pair == "param_is_grad":
        g = p
    else:
        m, v = buf[:6], buf[1:]
    with pytest.raises(ValueError, match="must not share memory"):
        ops.adam_update(p, g, m, v, step=1)
    np.testing.assert_array_equal(p, 1.0)


def test_sgd_refuses_aliased_velocity(host_backend_name):
    p = np.ones(4, np.float32)
    g = np.full(4, 0.5, np.float32)
    with pytest.raises(ValueError, match="must not share memory"):
        ops.sgd_update(p, g, g, learning_rate=0.1, momentum=0.9)


def test_cpu_binding_itself_refuses_partial_overlap():
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    k = backends.cpu._cpu
    buf = np.linspace(-1, 1, 9, dtype=np.float32)
    with pytest.raises(ValueError, match="itself or not share memory"):
        k.act_forward(buf[:-1], 2, buf[1:])
    with pytest.raises(ValueError, match="itself or not share memory"):
        k.mse_grad(buf[:-1], np.zeros(8, np.float32), 1.0, buf[1:])
    m = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="m must not share memory with grad"):
        k.adam_update(np.ones(3, np.float32), m, m, np.zeros(3, np.float32), 1e-3, 0.9, 0.999, 1e-7, 1)


# ------------------------------------------------- defect 10: UB casts, zero-column logits
def test_xent_binding_rejects_zero_column_logits():
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    k = backends.cpu._cpu
    for kind, t in ((1, np.zeros((3, 0), np.float32)), (2, np.zeros(3, np.float32))):
        with pytest.raises(ValueError, match="at least one column"):
            k.xent(np.zeros((3, 0), np.float32), t, kind)


@pytest.mark.parametrize("label", [np.nan, np.inf, -np.inf, 1e30, -1e30, 2.5, -1.0, 3.0])
def test_sparse_xent_bad_labels_give_nan_on_every_backend(host_backend_name, label):
    z = np.zeros((2, 3), np.float32)
    t = np.array([1.0, label], np.float32)
    assert np.isnan(ops.crossentropy(z, t, "sparse"))
    g = ops.crossentropy_grad(z, t, "sparse")
    np.testing.assert_array_equal(g[1], 0.0)  # no gradient from a bad index
    np.testing.assert_allclose(g[0], [1 / 6, -1 / 3, 1 / 6], rtol=1e-6)


def test_confusion_update_skips_nan_and_huge_labels(host_backend_name):
    be = fusednn.get_backend()
    counts = np.zeros(4)
    pred = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]], np.float32)
    t = np.array([0.0, np.nan, 1e30, 1.0], np.float32)
    be.confusion_update(counts, pred, t, 2, True)
    np.testing.assert_array_equal(counts.reshape(2, 2), [[1, 0], [0, 1]])


# ----------------------------------------------------------- defect 11: scalars, threads
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_ops_on_python_scalars_are_0d_like_numpy(host_backend_name, name):
    for s in (0.5, -2, np.float64(0.25), np.array(1.5)):
        got = getattr(ops, name)(s)
        assert got.shape == np.shape(s) == ()
        np.testing.assert_allclose(got, act_forward_np(np.float32(s), np.empty((), np.float32), name), rtol=1e-6)
    assert ops.activation_grad(0.5, 0.25, name).shape == ()
    assert ops.mse_grad(0.5, 0.25).shape == ()
    assert ops.mse(0.5, 0.25) == pytest.approx(0.0625)


@pytest.mark.parametrize("n", [2**40, 2**31, 0, -1, 10**6])
def test_set_num_threads_refusal_leaves_setting(n):
    before = fusednn.get_num_threads()
    with pytest.raises(ValueError, match="number of threads"):
        fusednn.set_num_threads(n)
    assert fusednn.get_num_threads() == before
    if "cpu" in backends.available():
        assert backends.cpu._cpu.num_threads() == before
