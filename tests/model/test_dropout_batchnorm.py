"""Dropout and BatchNormalization (issue 11): Philox masks identical on every host
backend, Keras' formulas in float64, finite-difference gradients, the fused trainer
against the per-op path, and saving the moving statistics."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras
from fusednn.backends import backend as get_be
from fusednn.layers import philox

from helpers import numeric_grad

HAS_CPU = "cpu" in fusednn.backends.available()
_PREVIOUS = fusednn.get_backend().name


@pytest.fixture(autouse=True)
def _restore_backend():
    """Tests here switch backends; leave the one that was active."""
    global _PREVIOUS
    _PREVIOUS = fusednn.get_backend().name
    yield
    fusednn.set_backend(_PREVIOUS)
HOST_BACKENDS = [n for n in ("numpy", "cpu") if n in fusednn.backends.available()]
needs_cpu = pytest.mark.skipif(not HAS_CPU, reason="cpu backend not built")


# ---------------------------------------------------------------- Philox
def test_philox_known_answers():
    """Random123's known-answer vectors for Philox4x32-10."""
    assert [int(v) for v in philox.philox4x32_10(0, 0, 0, 0, 0, 0)] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    m = 0xFFFFFFFF
    assert [int(v) for v in philox.philox4x32_10(m, m, m, m, m, m)] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    pi = philox.philox4x32_10(0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0)
    assert [int(v) for v in pi] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


@needs_cpu
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (33, 64), (3, 1)])
@pytest.mark.parametrize("bcast", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("portable", [False, True])
def test_cpu_mask_equals_numpy_bit_for_bit(shape, bcast, portable):
    """Both SIMD paths (AVX2: eight Philox blocks at a time) against the NumPy twin."""
    fusednn._cpu.force_portable(portable)
    try:
        _check_masks(shape, bcast)
    finally:
        fusednn._cpu.force_portable(False)


def _check_masks(shape, bcast):
    for seed, step, rate in ((0, 0, 0.5), (12345, 7, 0.3), (2**40 + 5, 2**33 + 1, 0.9), (2**64 - 1, 3, 0.01)):
        got = np.full(shape, np.nan, np.float32)
        fusednn._cpu.dropout_mask(got, rate, seed, step, *bcast)
        ref = philox.dropout_mask(*shape, rate, seed, step, *bcast)
        np.testing.assert_array_equal(got, ref)
        for be in HOST_BACKENDS:  # the backends' entry points too
            out = np.full(shape, np.nan, np.float32)
            get_be(be).dropout_mask(out, rate, seed, step, *bcast)
            np.testing.assert_array_equal(out, ref)


def test_mask_statistics_and_broadcast():
    m = philox.dropout_mask(200, 300, 0.25, 9, 0)
    assert set(np.unique(m)) == {np.float32(0), np.float32(1) / np.float32(0.75)}
    assert abs((m == 0).mean() - 0.25) < 0.01
    assert not np.array_equal(m, philox.dropout_mask(200, 300, 0.25, 9, 1))  # a new step, a new mask
    rows = philox.dropout_mask(50, 8, 0.5, 9, 0, row_b=True)
    assert (rows == rows[0]).all()
    cols = philox.dropout_mask(50, 8, 0.5, 9, 0, col_b=True)
    assert (cols == cols[:, :1]).all()


# ---------------------------------------------------------------- Dropout layer
def test_dropout_layer_semantics(host_backend_name):
    x = np.random.default_rng(0).normal(size=(9, 11)).astype(np.float32)
    layer = keras.layers.Dropout(0.4, seed=17)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)  # inference: identity
    y = np.asarray(layer(x, training=True))
    mask = philox.dropout_mask(9, 11, 0.4, 17, 0)
    np.testing.assert_array_equal(y, x * mask)
    assert layer.counter[0] == 1
    y2 = np.asarray(layer(x, training=True))
    np.testing.assert_array_equal(y2, x * philox.dropout_mask(9, 11, 0.4, 17, 1))
    whole = keras.layers.Dropout(0.5, noise_shape=(None, 1), seed=3)
    z = np.asarray(whole(x, training=True))
    kept = (z != 0).all(axis=1)
    np.testing.assert_allclose(z[kept], 2 * x[kept])
    assert (z[~kept] == 0).all()


def test_dropout_bad_arguments():
    for rate in (1.0, -0.1, "0.5", True, 2):
        with pytest.raises(ValueError, match="rate"):
            keras.layers.Dropout(rate)
    with pytest.raises(ValueError, match="noise_shape"):
        keras.layers.Dropout(0.5, noise_shape=(None, 1, 3))
    with pytest.raises(ValueError, match="seed"):
        keras.layers.Dropout(0.5, seed=-1)
    with pytest.raises(ValueError, match="noise_shape"):
        keras.Sequential([keras.layers.Dense(4, input_shape=(3,)), keras.layers.Dropout(0.5, noise_shape=(None, 3))]).build((None, 3))


# ---------------------------------------------------------------- BatchNormalization kernels
def _bn_ref(x, gamma, beta, eps):
    """Keras' training formula in float64: batch mean, biased variance."""
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta, mean, var


@pytest.mark.parametrize("shape", [(1, 3), (7, 5), (64, 33)])
def test_batchnorm_kernels_against_float64(host_backend_name, shape):
    be = fusednn.get_backend()
    rng = np.random.default_rng(1)
    x = (rng.normal(size=shape) * 3 + 5).astype(np.float32)
    gamma, beta = rng.normal(size=shape[1]).astype(np.float32), rng.normal(size=shape[1]).astype(np.float32)
    mm, mv = rng.normal(size=shape[1]).astype(np.float32), rng.uniform(0.5, 2, size=shape[1]).astype(np.float32)
    mm0, mv0 = mm.copy(), mv.copy()
    y, xhat, inv = np.empty(shape, np.float32), np.empty(shape, np.float32), np.empty(shape[1], np.float32)
    be.batchnorm_train(x, gamma, beta, 1e-3, mm, mv, 0.9, y, xhat, inv)
    ref, mean, var = _bn_ref(x.astype(np.float64), gamma, beta, 1e-3)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mm, mm0 * 0.9 + mean * 0.1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mv, mv0 * 0.9 + var * 0.1, rtol=1e-5, atol=1e-6)
    out = np.empty(shape, np.float32)
    be.batchnorm_infer(x, gamma, beta, mm, mv, 1e-3, out)
    np.testing.assert_allclose(out, (x - mm.astype(np.float64)) / np.sqrt(mv.astype(np.float64) + 1e-3) * gamma + beta,
                               rtol=1e-4, atol=1e-4)
    # without scale/center: gamma = 1, beta = 0, no moving statistics touched
    be.batchnorm_train(x, None, None, 1e-3, None, None, 0.9, y, xhat, inv)
    np.testing.assert_allclose(y, _bn_ref(x.astype(np.float64), 1.0, 0.0, 1e-3)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 3), (6, 4)])
def test_batchnorm_backward_finite_differences(host_backend_name, shape):
    """The kernel's gradients against central differences of the float64 formula."""
    be = fusednn.get_backend()
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape)
    gamma, beta = rng.normal(size=shape[1]), rng.normal(size=shape[1])
    w = rng.normal(size=shape)  # loss = sum(w * y)

    def loss(x_=x, g_=gamma, b_=beta):
        return float((w * _bn_ref(x_, g_, b_, 1e-3)[0]).sum())

    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    y, xhat, inv = np.empty(shape, np.float32), np.empty(shape, np.float32), np.empty(shape[1], np.float32)
    be.batchnorm_train(f32(x), f32(gamma), f32(beta), 1e-3, None, None, 0.99, y, xhat, inv)
    dx, dg, db = np.empty(shape, np.float32), np.empty(shape[1], np.float32), np.empty(shape[1], np.float32)
    be.batchnorm_backward(f32(w), xhat, inv, f32(gamma), dx, dg, db)
    np.testing.assert_allclose(dx, numeric_grad(lambda v: loss(x_=v), x.copy()), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(dg, numeric_grad(lambda v: loss(g_=v), gamma.copy()), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(db, numeric_grad(lambda v: loss(b_=v), beta.copy()), rtol=1e-3, atol=1e-4)


@needs_cpu
def test_batchnorm_bindings_reject_bad_input():
    k = fusednn._cpu
    x = np.ones((4, 3), np.float32)
    y, h, inv = np.empty((4, 3), np.float32), np.empty((4, 3), np.float32), np.empty(3, np.float32)
    with pytest.raises(ValueError, match="gamma"):
        k.batchnorm_train(x, np.ones(4, np.float32), None, 1e-3, None, None, 0.9, y, h, inv)
    with pytest.raises(ValueError, match="invstd"):
        k.batchnorm_train(x, None, None, 1e-3, None, None, 0.9, y, h, np.empty(2, np.float32))
    with pytest.raises(ValueError):
        k.batchnorm_train(x, None, None, 1e-3, None, None, 0.9, np.empty((4, 2), np.float32), h, inv)
    with pytest.raises(ValueError, match="rate"):
        k.dropout_mask(y, 1.0, 0, 0)
    with pytest.raises(ValueError):
        k.mul(x, np.ones((3, 4), np.float32), y)


# ---------------------------------------------------------------- models
def _model(fused, bias_before_bn=True, opt="adam", rate=0.3, noise_shape=None):
    fusednn.utils.set_random_seed(1)
    m = keras.Sequential([keras.layers.Dense(16, activation="relu", input_shape=(10,)),
                          keras.layers.BatchNormalization(), keras.layers.Dropout(rate, noise_shape=noise_shape, seed=5),
                          keras.layers.Dense(8, use_bias=bias_before_bn),
                          keras.layers.BatchNormalization(center=False, momentum=0.9),
                          keras.layers.Activation("tanh"), keras.layers.Dropout(0.2, seed=7), keras.layers.Dense(1)])
    m.compile(opt, "mse", fused=fused)
    return m


def _fit(m, epochs=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 10)).astype(np.float32)
    y = (x[:, :1] * 2 + np.sin(x[:, 1:2])).astype(np.float32)
    fusednn.utils.set_random_seed(11)
    h = m.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return h.history["loss"], m.get_weights(), np.asarray(m.predict(x, verbose=0))


@needs_cpu
@pytest.mark.parametrize("opt", ["adam", "sgd"])
@pytest.mark.parametrize("noise_shape", [None, (None, 1)])
def test_fused_equals_per_op_on_cpu(opt, noise_shape):
    fusednn.set_backend("cpu")
    try:
        a, b = _model(True, opt=opt, noise_shape=noise_shape), _model(False, opt=opt, noise_shape=noise_shape)
        assert a.fused_reason is None
        ra, rb = _fit(a), _fit(b)
    finally:
        fusednn.set_backend(_PREVIOUS)
    assert ra[0] == rb[0]  # same kernels in the same order: the same numbers
    for wa, wb in zip(ra[1], rb[1]):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(ra[2], rb[2])
    assert a.layers[2].counter[0] == b.layers[2].counter[0] == 15  # 5 steps x 3 epochs


@needs_cpu
@pytest.mark.parametrize("make_opt", [
    lambda: keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.01, global_clipnorm=0.5),
    lambda: keras.optimizers.RMSprop(learning_rate=0.01, momentum=0.9, clipnorm=0.3),
    lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True, use_ema=True),
    lambda: keras.optimizers.Nadam(learning_rate=0.01, clipvalue=0.1),
])
def test_fused_equals_per_op_with_keras_optimizers(make_opt):
    """BatchNormalization's gamma/beta go through the same optimizer step (state, decay,
    per-variable and global clipping in model order) on both paths."""
    fusednn.set_backend("cpu")
    try:
        a, b = _model(True, opt=make_opt()), _model(False, opt=make_opt())
        assert a.fused_reason is None
        ra, rb = _fit(a), _fit(b)
    finally:
        fusednn.set_backend(_PREVIOUS)
    np.testing.assert_array_equal(ra[0], rb[0])
    for wa, wb in zip(ra[1], rb[1]):
        np.testing.assert_array_equal(wa, wb)


@needs_cpu
def test_numpy_matches_cpu_training():
    out = {}
    for be in ("numpy", "cpu"):
        fusednn.set_backend(be)
        try:
            out[be] = _fit(_model("auto", bias_before_bn=False))
        finally:
            fusednn.set_backend(_PREVIOUS)
    np.testing.assert_allclose(out["numpy"][0], out["cpu"][0], rtol=1e-5)
    for wn, wc in zip(out["numpy"][1], out["cpu"][1]):
        np.testing.assert_allclose(wn, wc, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["numpy"][2], out["cpu"][2], rtol=1e-4, atol=1e-5)


def test_keras_weights_order_and_counts(host_backend_name, tmp_path):
    m = _model("auto")
    w = m.get_weights()
    # Dense(16): kernel, bias; BN(16): gamma, beta, moving_mean, moving_variance; ...
    assert [a.shape for a in w[:6]] == [(10, 16), (16,), (16,), (16,), (16,), (16,)]
    np.testing.assert_array_equal(w[4], 0)
    np.testing.assert_array_equal(w[5], 1)
    assert len(m.weights) == 2 + 2 + 2 + 1 + 2  # trainable: the moving statistics are not
    lines = []
    m.summary(print_fn=lines.append)
    assert "Non-trainable params: 48" in "\n".join(lines)  # 2*16 + 2*8
    _fit(m, epochs=1)
    moved = m.get_weights()
    assert not np.array_equal(moved[4], 0) and not np.array_equal(moved[5], 1)
    path = tmp_path / "bn.npz"
    m.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(moved, loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(5).normal(size=(6, 10)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(m.predict(x, verbose=0)), np.asarray(loaded.predict(x, verbose=0)))
    bn = loaded.layers[4]
    assert (bn.momentum, bn.center, bn.scale, bn.epsilon) == (0.9, False, True, 1e-3)
    assert loaded.layers[2].rate == 0.3 and loaded.layers[2].get_config()["seed"] == 5


def test_inference_uses_moving_statistics(host_backend_name):
    bn = keras.layers.BatchNormalization(momentum=0.5, epsilon=1e-3)
    x = np.random.default_rng(3).normal(size=(8, 4)).astype(np.float32) * 2 + 1
    bn(x, training=True)
    mm, mv = bn.get_weights()[2:]
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mm, 0.5 * x64.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(mv, 0.5 + 0.5 * x64.var(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(bn(x)), (x64 - mm) / np.sqrt(mv + 1e-3), rtol=1e-4, atol=1e-5)


@needs_cpu
def test_fused_reasons():
    fusednn.set_backend("cpu")
    try:
        assert _model("auto").fused_reason is None
        # steps before the first Dense run as an identity block (tests/model/test_leading_steps.py)
        m = keras.Sequential([keras.layers.Dropout(0.2, input_shape=(4,)), keras.layers.Dense(1)])
        m.compile("adam", "mse")
        assert m.fused_reason is None
        m = keras.Sequential([keras.layers.Dropout(0.2, input_shape=(4,)), keras.layers.BatchNormalization()])
        m.compile("adam", "mse")
        assert "without a Dense" in m.fused_reason
        # steps after the last Dense are fused (tests/model/test_trailing_steps.py)
        m = keras.Sequential([keras.layers.Dense(3, input_shape=(4,)), keras.layers.BatchNormalization()])
        m.compile("adam", "mse")
        assert m.fused_reason is None
    finally:
        fusednn.set_backend(_PREVIOUS)


def test_bad_batchnorm_arguments():
    with pytest.raises(ValueError, match="axis"):
        keras.layers.BatchNormalization(axis=0)
    with pytest.raises(ValueError, match="momentum"):
        keras.layers.BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        keras.layers.BatchNormalization(epsilon=0)


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [False, True])
def test_cuda_matches_cpu(monkeypatch, fused):
    """Unverified here (no GPU in this session): the per-op cuda path (host Philox masks,
    CuPy BatchNormalization) and the opt-in CUDA layer steps against the cpu backend."""
    from fusednn.backends import cuda as cuda_backend

    monkeypatch.setattr(cuda_backend.CudaBackend, "trainer_steps", True)
    out = {}
    for be in ("cpu", "cuda"):
        fusednn.set_backend(be)
        try:
            m = _model(fused, bias_before_bn=False)
            if fused:
                assert m.fused_reason is None
            out[be] = _fit(m)
        finally:
            fusednn.set_backend(_PREVIOUS)
    np.testing.assert_allclose(out["cuda"][0], out["cpu"][0], rtol=1e-4)
    for wg, wc in zip(out["cuda"][1], out["cpu"][1]):
        np.testing.assert_allclose(wg, wc, rtol=1e-3, atol=1e-4)
