"""LayerNormalization as a fused trainer step (issue 11): the kernels against the float64
formula (odd shapes, one feature, one row), finite-difference gradients, the bindings'
checks, and the fused cpu trainer against the per-op path (which calls the same kernels:
the same numbers bit for bit) with several optimizers, clipping and center/scale off."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras

from helpers import numeric_grad

HAS_CPU = "cpu" in fusednn.backends.available()
needs_cpu = pytest.mark.skipif(not HAS_CPU, reason="cpu backend not built")
EPS = 1e-3


@pytest.fixture(autouse=True)
def _restore_backend():
    """Tests here switch backends; leave the one that was active."""
    previous = fusednn.get_backend().name
    yield
    fusednn.set_backend(previous)


def _ref(x, gamma, beta, eps=EPS):
    """The float64 formula: each row normalised over its columns (biased variance)."""
    m, v = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    h = (x - m) / np.sqrt(v + eps)
    return h * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta), h, 1 / np.sqrt(v[:, 0] + eps)


def _ref_backward(dy, x, gamma, eps=EPS):
    """dx, dgamma, dbeta of sum(dy * y) in float64 (the closed form)."""
    _, h, inv = _ref(x, None, None, eps)
    g = dy * (1.0 if gamma is None else gamma)
    dx = inv[:, None] * (g - g.mean(axis=1, keepdims=True) - h * (g * h).mean(axis=1, keepdims=True))
    return dx, (dy * h).sum(axis=0), dy.sum(axis=0)


def _arrays(shape, seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * 3 + 5).astype(np.float32)  # a large mean: the two-pass variance matters
    gamma = rng.normal(size=shape[1]).astype(np.float32)
    beta = rng.normal(size=shape[1]).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    return x, gamma, beta, dy


def _run(be, x, gamma, beta, dy):
    rows, cols = x.shape
    y, h, inv = np.full_like(x, np.nan), np.full_like(x, np.nan), np.full(rows, np.nan, np.float32)
    be.layernorm_forward(x, gamma, beta, EPS, y, h, inv)
    dx = np.full_like(x, np.nan)
    dg = None if gamma is None else np.full(cols, np.nan, np.float32)
    db = None if beta is None else np.full(cols, np.nan, np.float32)
    be.layernorm_backward(dy, h, inv, gamma, dx, dg, db)
    return y, h, inv, dx, dg, db


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (7, 1), (5, 3), (33, 17)])
@pytest.mark.parametrize("affine", [True, False])
def test_kernels_against_float64(host_backend_name, shape, affine):
    be = fusednn.get_backend()
    x, gamma, beta, dy = _arrays(shape, sum(shape))
    if not affine:
        gamma = beta = None
    y, h, inv, dx, dg, db = _run(be, x, gamma, beta, dy)
    x64 = x.astype(np.float64)
    ry, rh, rinv = _ref(x64, gamma, beta)
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, rh, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(inv, rinv, rtol=1e-6)
    rdx, rdg, rdb = _ref_backward(dy.astype(np.float64), x64, gamma)
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-4)
    if affine:
        np.testing.assert_allclose(dg, rdg, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(db, rdb, rtol=1e-6, atol=1e-6)
    if shape[1] == 1:  # one feature: xhat = 0, y = beta, no gradient reaches x
        np.testing.assert_array_equal(h, 0)
        np.testing.assert_array_equal(dx, 0)


@needs_cpu
@pytest.mark.parametrize("shape", [(1, 1), (9, 13), (64, 40)])
def test_cpu_kernel_equals_numpy_reference(shape):
    """The C++ kernel and the NumPy reference do the same float32 steps; the row sums in
    double may round apart only in the last float32 bit (NumPy sums pairwise)."""
    x, gamma, beta, dy = _arrays(shape, 3)
    cpu = _run(fusednn.backends.backend("cpu"), x, gamma, beta, dy)
    ref = _run(fusednn.backends.backend("numpy"), x, gamma, beta, dy)
    for a, b in zip(cpu, ref):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 4), (3, 5)])
def test_gradients_by_finite_differences(host_backend_name, shape):
    be = fusednn.get_backend()
    rng = np.random.default_rng(7)
    x, gamma, beta = rng.normal(size=shape), rng.normal(size=shape[1]), rng.normal(size=shape[1])
    w = rng.normal(size=shape)  # loss = sum(w * y)

    def loss(x_=x, g_=gamma, b_=beta):
        return float((w * _ref(x_, g_, b_)[0]).sum())

    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    _, _, _, dx, dg, db = _run(be, f32(x), f32(gamma), f32(beta), f32(w))
    np.testing.assert_allclose(dx, numeric_grad(lambda v: loss(x_=v), x.copy()), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(dg, numeric_grad(lambda v: loss(g_=v), gamma.copy()), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(db, numeric_grad(lambda v: loss(b_=v), beta.copy()), rtol=1e-3, atol=1e-4)


@needs_cpu
def test_bindings_reject_bad_input():
    k = fusednn._cpu
    x = np.ones((4, 3), np.float32)
    y, h, inv = np.empty((4, 3), np.float32), np.empty((4, 3), np.float32), np.empty(4, np.float32)
    with pytest.raises(ValueError, match="invstd"):  # one value per row, not per column
        k.layernorm_forward(x, None, None, EPS, y, h, np.empty(3, np.float32))
    with pytest.raises(ValueError, match="gamma"):
        k.layernorm_forward(x, np.ones(4, np.float32), None, EPS, y, h, inv)
    with pytest.raises((TypeError, ValueError), match="x"):  # float64 is not converted silently
        k.layernorm_forward(x.astype(np.float64), None, None, EPS, y, h, inv)
    with pytest.raises((TypeError, ValueError)):  # not C-contiguous
        k.layernorm_forward(np.ones((3, 4), np.float32).T, None, None, EPS, y, h, inv)
    with pytest.raises(ValueError):
        k.layernorm_forward(x, None, None, EPS, np.empty((4, 2), np.float32), h, inv)
    with pytest.raises(ValueError, match="epsilon"):
        k.layernorm_forward(x, None, None, 0.0, y, h, inv)
    with pytest.raises(ValueError, match="xhat"):
        k.layernorm_forward(x, None, None, EPS, y, x, inv)
    k.layernorm_forward(x, None, None, EPS, y, h, inv)
    with pytest.raises(ValueError, match="dy"):  # dx must not alias dy
        k.layernorm_backward(y, h, inv, None, y, None, None)
    with pytest.raises(ValueError, match="dbeta"):
        k.layernorm_backward(y, h, inv, None, np.empty_like(y), None, np.empty(4, np.float32))
    # in place: y may be x itself
    x2 = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    out = np.empty_like(x2)
    k.layernorm_forward(x2, None, None, EPS, out, h, inv)
    k.layernorm_forward(x2, None, None, EPS, x2, h, inv)
    np.testing.assert_array_equal(x2, out)


# ---------------------------------------------------------------- models
def _model(fused, opt, center=True, scale=True, **kw):
    fusednn.utils.set_random_seed(1)
    L = keras.layers
    m = keras.Sequential([L.Dense(16, activation="relu", input_shape=(10,)),
                          L.LayerNormalization(center=center, scale=scale, **kw), L.Dropout(0.2, seed=3),
                          L.Dense(7), L.LayerNormalization(epsilon=1e-2, center=center, scale=not scale),
                          L.Activation("tanh"), L.Dense(1)])
    m.compile(opt(), "mse", fused=fused)
    return m


def _fit(m, epochs=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 10)).astype(np.float32)
    y = (x[:, :1] * 2 + np.sin(x[:, 1:2])).astype(np.float32)
    fusednn.utils.set_random_seed(11)
    h = m.fit(x, y, epochs=epochs, batch_size=16, verbose=0)  # 5 steps, the last of 6 rows
    return h.history["loss"], m.get_weights(), np.asarray(m.predict(x, verbose=0))


OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(learning_rate=0.01),
    "sgd_momentum": lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
    "sgd_clipnorm": lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, clipnorm=0.05),
    "adamw_global_clipnorm": lambda: keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.05,
                                                             global_clipnorm=0.3),
}


# every optimizer with both parameters; the center/scale variants with two of them (CI time)
CASES = [(opt, True, True) for opt in sorted(OPTIMIZERS)] + \
    [(opt, c, s) for opt in ("adam", "sgd_clipnorm") for c, s in ((False, True), (True, False), (False, False))]


@needs_cpu
@pytest.mark.parametrize("opt,center,scale", CASES)
def test_fused_equals_per_op(opt, center, scale):
    """gamma/beta through the same optimizer rows as BatchNormalization's (state, decay,
    per-variable and global clipping): the fused trainer and the per-op path agree bit for bit."""
    fusednn.set_backend("cpu")
    a, b = _model(True, OPTIMIZERS[opt], center, scale), _model(False, OPTIMIZERS[opt], center, scale)
    assert a.fused_reason is None
    ra, rb = _fit(a), _fit(b)
    assert [w.shape for w in ra[1]] == [w.shape for w in rb[1]]
    assert len(a.layers[1].weights) == int(center) + int(scale)
    np.testing.assert_array_equal(ra[0], rb[0])
    for wa, wb in zip(ra[1], rb[1]):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(ra[2], rb[2])
    if center and scale:  # and the parameters did train
        gamma, beta = a.layers[1].get_weights()
        assert not np.array_equal(gamma, 1) and not np.array_equal(beta, 0)


@needs_cpu
def test_fused_matches_numpy_backend():
    """The NumPy reference backend (per-op) trains the same model to float32 rounding."""
    out = {}
    for name in ("numpy", "cpu"):
        fusednn.set_backend(name)
        m = _model("auto", OPTIMIZERS["adam"])
        if name == "cpu":
            assert m.fused_reason is None
        out[name] = _fit(m, epochs=2)
    np.testing.assert_allclose(out["numpy"][0], out["cpu"][0], rtol=1e-4)
    for wn, wc in zip(out["numpy"][1], out["cpu"][1]):
        np.testing.assert_allclose(wn, wc, rtol=1e-3, atol=1e-4)


@needs_cpu
def test_constraints_projected_in_the_fused_step():
    """beta/gamma constraints are projected after the fused step's update (as for
    BatchNormalization; more cases in test_fused_step_penalties.py), as the per-op path does."""
    fusednn.set_backend("cpu")
    kw = dict(gamma_constraint=keras.constraints.MaxNorm(1.0), beta_constraint="non_neg")
    m = _model("auto", OPTIMIZERS["adam"], **kw)
    assert m.fused_reason is None
    got = _fit(m, epochs=1)
    gamma, beta = m.layers[1].get_weights()
    assert np.linalg.norm(gamma.astype(np.float64)) <= 1 + 1e-6 and (beta >= 0).all()
    want = _fit(_model(False, OPTIMIZERS["adam"], **kw), epochs=1)
    np.testing.assert_array_equal(got[0], want[0])
    for a, b in zip(got[1], want[1]):
        np.testing.assert_array_equal(a, b)


@needs_cpu
def test_trainer_binding_checks_the_step():
    """The trainer's binding checks the step's buffers (invstd: one value per row)."""
    fusednn.set_backend("cpu")
    m = _model(True, OPTIMIZERS["adam"])
    _fit(m, epochs=1)
    from fusednn.training.fused import FusedTrainer
    with pytest.raises(ValueError, match="invstd"):
        orig = m.layers[1].fused_step
        m.layers[1].fused_step = lambda be, batch: {**orig(be, batch), "invstd": be.empty((m.layers[1].input_dim,))}
        FusedTrainer(m, 5)  # 16 features, 5 rows


def test_cuda_declines_layernorm_steps():
    """The CUDA trainer's LayerNormalization kernels (csrc/cuda/steps_more.cu) have not run on a
    device: the backend offers them only with FUSEDNN_CUDA_TRAINER_STEPS=1, so without it a
    cuda model with one trains per-op."""
    from fusednn.backends import cuda as cuda_backend
    from fusednn.training.fused import _steps_reason

    assert cuda_backend.CudaBackend.trainer_layernorm == cuda_backend.CudaBackend.trainer_steps

    class FakeModel:  # the reason is a function of the backend's flags alone
        backend = type("B", (), {"name": "cuda", "trainer_steps": True, "trainer_prelu": False,
                                 "trainer_layernorm": False})()

    L = keras.layers
    layers = [L.Dense(4, input_shape=(3,)), L.LayerNormalization(name="ln"), L.Dense(1)]
    why = _steps_reason(FakeModel(), layers)
    assert why is not None and "LayerNormalization" in why and "'ln'" in why


@needs_cpu
def test_functional_graph_with_layernorm_fused_equals_per_op():
    """A layer graph (residual Add) with LayerNormalization steps runs fused too."""
    fusednn.set_backend("cpu")
    L = keras.layers

    def make(fused):
        fusednn.utils.set_random_seed(2)
        inp = keras.Input(shape=(10,))
        h = L.LayerNormalization()(L.Dense(8, activation="relu")(inp))
        r = L.LayerNormalization(scale=False)(L.Dense(8)(h))
        out = L.Dense(1)(L.Add()([h, r]))
        m = keras.Model(inp, out)
        m.compile(keras.optimizers.Adam(0.01), "mse", fused=fused)
        return m

    a, b = make(True), make(False)
    assert a.fused_reason is None
    ra, rb = _fit(a, epochs=2), _fit(b, epochs=2)
    np.testing.assert_array_equal(ra[0], rb[0])
    for wa, wb in zip(ra[1], rb[1]):
        np.testing.assert_array_equal(wa, wb)


@needs_cpu
def test_frozen_layernorm_declined_with_reason():
    fusednn.set_backend("cpu")
    m = _model("auto", OPTIMIZERS["adam"])
    m.layers[1].trainable = False
    m.compile(keras.optimizers.Adam(0.01), "mse")
    assert "LayerNormalization" in m.fused_reason and "trainable=False" in m.fused_reason
    before = m.layers[1].get_weights()
    _fit(m, epochs=1)
    for w0, w1 in zip(before, m.layers[1].get_weights()):
        np.testing.assert_array_equal(w0, w1)
