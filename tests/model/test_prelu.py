"""PReLU: forward against the float64 formula, the input and alpha gradients against
finite differences, the kernels on every backend against float64, shared alpha, its
regularizer and constraint (per-op), the fused cpu trainer equal to the per-op path
bit for bit, config and save/load."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras

from helpers import numeric_grad


def _x(seed=0, shape=(7, 5)):
    x = np.random.default_rng(seed).standard_normal(shape)
    x[np.abs(x) < 1e-2] = 0.5  # keep away from the kink at 0 for the finite differences
    return x


@pytest.mark.parametrize("shared", [None, [1], -1])
def test_forward_and_gradients(host_backend_name, shared):
    x = _x()
    layer = keras.layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.1, 0.4, seed=2),
                               shared_axes=shared)
    layer.build(5)
    be = layer.backend
    alpha = layer.get_weights()[0].astype(np.float64)
    assert alpha.shape == ((1,) if shared is not None else (5,))

    def f(xv, av):
        return np.where(xv > 0, xv, av * xv)

    buf = layer.make_buffers(7)
    y = be.to_numpy(layer.forward(be.asarray(x.astype(np.float32)), buf))
    np.testing.assert_allclose(y, f(x, alpha), rtol=1e-6, atol=1e-7)
    dy = np.random.default_rng(1).standard_normal((7, 5))
    dx = be.to_numpy(layer.backward(be.asarray(dy.astype(np.float32)), buf, True))
    dalpha = be.to_numpy(layer.grads[0]).astype(np.float64)
    np.testing.assert_allclose(dx, numeric_grad(lambda v: float((f(v, alpha) * dy).sum()), x.copy()),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dalpha, numeric_grad(lambda a: float((f(x, a) * dy).sum()), alpha.copy()),
                               rtol=1e-4, atol=1e-5)


def test_keras_defaults_name_and_config():
    fusednn.keras_backend.clear_session()
    layer = keras.layers.PReLU()
    assert layer.name == "p_re_lu"  # Keras' to_snake_case
    cfg = layer.get_config()
    assert cfg == {"name": "p_re_lu", "alpha_initializer": {"class_name": "Zeros", "config": {}},
                   "alpha_regularizer": None, "alpha_constraint": None, "shared_axes": None}
    layer.build(3)
    np.testing.assert_array_equal(layer.get_weights()[0], np.zeros(3, np.float32))
    back = keras.layers.PReLU.from_config(keras.layers.PReLU(alpha_regularizer="l2", alpha_constraint="non_neg",
                                                             shared_axes=1).get_config())
    assert back.shared_axes == [1] and back.alpha_regularizer.l2 == 0.01
    with pytest.raises(ValueError, match="shared_axes"):
        keras.layers.PReLU(shared_axes=[2])


def _model(fused="auto", **kw):
    fusednn.utils.set_random_seed(1)
    m = keras.Sequential([keras.layers.Dense(8, input_shape=(4,)), keras.layers.PReLU(**kw), keras.layers.Dense(1)])
    m.compile(keras.optimizers.Adam(0.05), "mse", fused=fused)
    return m


def test_trains_per_op_with_regularizer_and_constraint(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 4))
    y = np.maximum(x @ rng.standard_normal((4, 1)), 0) - 0.3 * np.maximum(-x[:, :1], 0)
    m = _model(alpha_initializer=keras.initializers.Constant(0.25), alpha_constraint=keras.constraints.MaxNorm(0.5))
    # cpu: projected inside the fused step (tests/model/test_fused_step_penalties.py); numpy: per-op
    assert m.fused_reason is None if m.backend.name == "cpu" else "no fused trainer" in m.fused_reason
    h = m.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    alpha = m.layers[1].get_weights()[0]
    assert not np.allclose(alpha, 0.25)  # alpha learned
    assert np.linalg.norm(alpha.astype(np.float64)) <= 0.5 * (1 + 1e-6)
    # the regularizer's penalty is part of the loss evaluate reports
    r = _model(alpha_initializer=keras.initializers.Constant(0.5), alpha_regularizer=keras.regularizers.L2(0.1))
    plain = _model(alpha_initializer=keras.initializers.Constant(0.5))
    diff = r.evaluate(x, y, verbose=0) - plain.evaluate(x, y, verbose=0)
    assert diff == pytest.approx(0.1 * 8 * 0.25, rel=1e-5)
    path = tmp_path / "p.npz"
    m.save(str(path))
    back = fusednn.load_model(str(path))
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


@pytest.mark.parametrize("shape,shared", [((7, 5), False), ((7, 5), True), ((1, 1), False), ((33, 130), False),
                                          ((33, 130), True), ((4, 1), True)])
def test_kernels_against_float64(backend_name, shape, shared):
    from fusednn.backends import backend

    be = backend(backend_name)
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[0] = 0.0  # the kink: dx = 0 there (Keras' convention)
    a = rng.uniform(-0.5, 0.5, size=(1 if shared else shape[1],)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y, dx, da = be.empty(shape), be.empty(shape), be.empty(a.shape)
    be.prelu_forward(be.asarray(x), be.asarray(a), y)
    be.prelu_backward(be.asarray(dy), be.asarray(x), be.asarray(a), dx, da)
    x64, a64, dy64 = x.astype(np.float64), a.astype(np.float64), dy.astype(np.float64)
    np.testing.assert_allclose(be.to_numpy(y), np.where(x64 > 0, x64, a64 * x64), rtol=1e-7, atol=0)
    np.testing.assert_allclose(be.to_numpy(dx), dy64 * np.where(x64 > 0, 1, np.where(x64 < 0, a64, 0)), rtol=1e-7)
    ref = (dy64 * np.minimum(x64, 0)).sum(axis=0)
    np.testing.assert_allclose(be.to_numpy(da), ref.sum(keepdims=True) if shared else ref, rtol=1e-6, atol=1e-6)


def test_binding_rejects_bad_input():
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    from fusednn import _cpu

    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="alpha must hold 1 or 4"):
        _cpu.prelu_forward(x, np.ones(3, np.float32), np.empty_like(x))
    with pytest.raises((TypeError, ValueError)):
        _cpu.prelu_forward(x, np.ones(4, np.float32), np.empty((4, 3), np.float32))
    with pytest.raises((TypeError, ValueError)):
        _cpu.prelu_backward(x, x[:, ::2], np.ones(2, np.float32), np.empty((3, 2), np.float32),
                            np.empty(2, np.float32))
    with pytest.raises(ValueError):
        _cpu.prelu_backward(x, x, np.ones(4, np.float32), x, np.empty(4, np.float32))  # dx overlaps x


@pytest.mark.parametrize("shared", [None, [1]])
@pytest.mark.parametrize("make_opt", [lambda: keras.optimizers.Adam(0.05),
                                      lambda: keras.optimizers.SGD(0.1, momentum=0.9, global_clipnorm=0.5),
                                      lambda: keras.optimizers.AdamW(0.05, clipnorm=0.3, use_ema=True)],
                         ids=["adam", "sgd-globalclip", "adamw-clip-ema"])
def test_fused_equals_per_op(shared, make_opt):
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        rng = np.random.default_rng(4)
        x = rng.standard_normal((77, 4))
        y = np.maximum(x @ rng.standard_normal((4, 2)), 0) - 0.3 * np.maximum(-x[:, :2], 0)

        def make(fused):
            fusednn.utils.set_random_seed(2)
            m = keras.Sequential([keras.layers.Dense(8, input_shape=(4,)),
                                  keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.1),
                                                     shared_axes=shared),
                                  keras.layers.Dropout(0.1, seed=3), keras.layers.Dense(2)])
            m.compile(make_opt(), "mse", fused=fused)
            return m

        a, b = make("auto"), make(False)
        assert a.fused_reason is None
        fusednn.utils.set_random_seed(6)
        ha = a.fit(x, y, epochs=3, batch_size=16, verbose=0)
        fusednn.utils.set_random_seed(6)
        hb = b.fit(x, y, epochs=3, batch_size=16, verbose=0)
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ha.history["loss"], hb.history["loss"])
        assert not np.allclose(a.layers[1].get_weights()[0], 0.1)  # alpha moved inside the fused trainer
    finally:
        fusednn.set_backend(prev)


def test_cuda_trainer_refuses_prelu_steps_and_reason():
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        m = _model(alpha_regularizer="l2")
        assert m.fused_reason is None  # a fused step penalty on cpu (test_fused_step_penalties.py)
        m = _model()
        assert m.fused_reason is None
        from fusednn.training.fused import FusedTrainer

        t = FusedTrainer(m, 4)
        assert t.specs[0]["post"][0]["kind"] == "prelu"
        bad = [dict(t.specs[0], post=[dict(t.specs[0]["post"][0], alpha=np.ones(3, np.float32))]), t.specs[1]]
        with pytest.raises(ValueError, match="alpha must hold 1 or 8"):
            m.backend.make_trainer(bad, m.optimizer.kernel_spec(), "mse", 4, 0.0)
    finally:
        fusednn.set_backend(prev)


def test_portable_and_avx2_kernels_give_the_same_bits():
    """prelu.cpp dispatches to the AVX2 copy of the same loops where the CPU has it: both
    must give identical results (the per-op and fused paths may run on either)."""
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    from fusednn import _cpu

    rng = np.random.default_rng(9)
    x = rng.standard_normal((37, 19)).astype(np.float32)
    x[0, :3] = 0.0
    dy = rng.standard_normal((37, 19)).astype(np.float32)
    out = {}
    alphas = (rng.uniform(-1, 1, 19).astype(np.float32), np.array([0.3], np.float32))
    try:
        for portable in (True, False):
            _cpu.force_portable(portable)
            for alpha in alphas:
                y, dx, da = np.empty_like(x), np.empty_like(x), np.empty_like(alpha)
                _cpu.prelu_forward(x, alpha, y)
                _cpu.prelu_backward(dy, x, alpha, dx, da)
                out.setdefault(alpha.size, []).append((y, dx, da))
    finally:
        _cpu.force_portable(False)
    for (a, b) in out.values():
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
