"""Regularizers and constraints of the fused cpu trainer's step weights (issue 11):
BatchNormalization/LayerNormalization ``gamma_regularizer``/``beta_regularizer`` and
``gamma_constraint``/``beta_constraint``, PReLU ``alpha_regularizer``/``alpha_constraint``.
The step adds the penalty to its loss and gradients after its block's Dense penalties
(the per-op path's model order) and projects the weight after its update
(fusednn/layer_steps.h post_regularize/post_constrain), so the fused trainer equals the
per-op path bit for bit; the numpy backend agrees to float32 rounding; Keras 3 itself
reports the same loss for a regularized BatchNormalization model."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import constraints, keras, regularizers

from helpers import assert_fits_like_keras, keras3_on_torch, on_backend

L = keras.layers
HAS_CPU = "cpu" in fusednn.backends.available()
needs_cpu = pytest.mark.skipif(not HAS_CPU, reason="cpu backend not built")

REGS = {"l1": lambda f: keras.regularizers.L1(f), "l2": lambda f: keras.regularizers.L2(f),
        "l1l2": lambda f: keras.regularizers.L1L2(l1=f, l2=2 * f)}
CONS = {"max_norm": lambda: keras.constraints.MaxNorm(0.8), "non_neg": lambda: "non_neg",
        "unit_norm": lambda: keras.constraints.UnitNorm(), "min_max_norm": lambda: keras.constraints.MinMaxNorm(
            0.5, 1.5, rate=0.7)}
# gamma starts away from 1 and alpha away from 0 so that every penalty and projection acts
GAMMA0 = keras.initializers.RandomUniform(0.3, 2.0, seed=3)
BETA0 = keras.initializers.RandomNormal(0.0, 0.5, seed=4)


def _norm_layer(kind, **kw):
    if kind == "prelu":
        return L.PReLU(alpha_initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=5), **kw)
    cls = L.BatchNormalization if kind == "bn" else L.LayerNormalization
    return cls(gamma_initializer=GAMMA0, beta_initializer=BETA0, **kw)


def _layers(kind, **kw):
    # the penalised step between Dense blocks that carry their own kernel penalty (order matters)
    return [L.Dense(7, kernel_regularizer=keras.regularizers.L2(0.01)), _norm_layer(kind, **kw),
            L.Dense(5, activation="tanh"), _norm_layer(kind, **kw), L.Dense(2, bias_regularizer="l1")]


def _fit(layers, fused, opt=lambda: keras.optimizers.Adam(0.02), epochs=3, weighted=True, model=None):
    keras.utils.set_random_seed(5)
    m = model or keras.Sequential([keras.Input((6,)), *layers()])
    m.compile(opt(), "mse", fused=fused)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    y = rng.standard_normal((50, 2)).astype(np.float32)
    w = rng.uniform(0.2, 2.0, 50).astype(np.float32) if weighted else None
    keras.utils.set_random_seed(9)
    h = m.fit(x, y, batch_size=16, epochs=epochs, verbose=0, sample_weight=w)  # last batch: 2 rows
    return m, h.history["loss"]


def _same(a, b, weighted=True):
    """fused (a) == per-op (b): every weight (moving statistics too) bit for bit; the
    losses too (with sample weights to float32 rounding: the fused trainer's weighted loss
    record sums in another order, for every fused model)."""
    (ma, la), (mb, lb) = a, b
    assert ma.fused_reason is None and ma._fused is not None
    assert mb._fused is None
    if weighted:
        np.testing.assert_allclose(la, lb, rtol=1e-6)
    else:
        assert la == lb
    for u, v in zip(ma.get_weights(), mb.get_weights()):
        np.testing.assert_array_equal(u, v)


@pytest.fixture
def cpu():
    if not HAS_CPU:
        pytest.skip("cpu backend not built")
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    yield
    fusednn.set_backend(prev)


@pytest.mark.parametrize("reg", list(REGS))
@pytest.mark.parametrize("kind", ["bn", "ln", "prelu"])
def test_regularizers_fused_equal_per_op(cpu, kind, reg):
    kw = {"alpha_regularizer": REGS[reg](0.05)} if kind == "prelu" else \
        {"gamma_regularizer": REGS[reg](0.05), "beta_regularizer": REGS[reg](0.03)}
    fused = _fit(lambda: _layers(kind, **kw), "auto")
    _same(fused, _fit(lambda: _layers(kind, **kw), False))
    # the penalty counted: not the loss of the same model without it
    assert fused[1] != _fit(lambda: _layers(kind), "auto")[1]


@pytest.mark.parametrize("con", list(CONS))
@pytest.mark.parametrize("kind,weight", [("bn", "gamma"), ("bn", "beta"), ("ln", "gamma"), ("ln", "beta"),
                                         ("prelu", "alpha")])
def test_constraints_fused_equal_per_op(cpu, kind, weight, con):
    kw = {f"{weight}_constraint": CONS[con]()}
    fused = _fit(lambda: _layers(kind, **kw), "auto")
    _same(fused, _fit(lambda: _layers(kind, **kw), False))
    w = np.asarray(getattr(fused[0].layers[1], weight), np.float64)
    if con == "non_neg":
        assert (w >= 0).all()
    elif con == "unit_norm":
        assert np.linalg.norm(w) == pytest.approx(1.0, rel=1e-6)
    elif con == "max_norm":
        assert np.linalg.norm(w) <= 0.8 * (1 + 1e-6)


@pytest.mark.parametrize("opt", [lambda: keras.optimizers.SGD(0.05, momentum=0.9, clipnorm=0.5),
                                 lambda: keras.optimizers.AdamW(0.01, weight_decay=0.05, global_clipnorm=0.3,
                                                                use_ema=True)],
                         ids=["sgd-clipnorm", "adamw-global-clipnorm-ema"])
def test_everything_at_once_with_other_optimizers(cpu, opt):
    """All penalties and constraints together, no sample weights (the loss bit for bit),
    under clipping, weight decay and EMA."""
    def layers():
        return [L.Dense(7), _norm_layer("bn", gamma_regularizer="l2", beta_regularizer=REGS["l1l2"](0.02),
                                        gamma_constraint=CONS["max_norm"](), beta_constraint="non_neg"),
                L.Dense(5), _norm_layer("prelu", alpha_regularizer="l1", alpha_constraint=CONS["min_max_norm"]()),
                _norm_layer("ln", gamma_regularizer="l1", beta_constraint=CONS["unit_norm"]()), L.Dense(2)]
    _same(_fit(layers, "auto", opt, weighted=False), _fit(layers, False, opt, weighted=False), weighted=False)


def test_frozen_batchnorm_gets_no_penalty_or_projection(cpu):
    """Keras: a frozen layer's weights are not regularized or constrained (trainable
    weights only); the fused frozen step (inference mode) skips them as per-op does."""
    def model():
        m = keras.Sequential([keras.Input((6,)), *_layers("bn", gamma_regularizer="l2", beta_constraint="non_neg")])
        m.layers[1].trainable = False
        return m
    a = _fit(None, "auto", model=model())
    _same(a, _fit(None, False, model=model()))
    assert (np.asarray(a[0].layers[1].beta) < 0).any()  # not projected: it is frozen


def test_functional_graph_in_block_order(cpu):
    """A layer graph (a skip connection) with penalised steps: fused == per-op; a graph
    whose penalties would be summed in another order than model order says why."""
    def graph():
        inp = keras.Input((6,))
        h = _norm_layer("bn", gamma_regularizer="l2", beta_regularizer="l1")(L.Dense(6)(inp))
        g = _norm_layer("prelu", alpha_regularizer="l2")(L.Dense(6, kernel_regularizer="l1")(h))
        return keras.Model(inp, L.Dense(2)(L.Add()([h, g])))
    _same(_fit(None, "auto", model=graph()), _fit(None, False, model=graph()))

    inp = keras.Input((6,))
    d1, d2 = L.Dense(4, name="d1"), L.Dense(4, name="d2", kernel_regularizer="l2")
    a, b = d1(inp), d2(inp)
    out = L.Dense(2)(L.Concatenate()([b, _norm_layer("bn", gamma_regularizer="l2")(a)]))
    m = keras.Model(inp, out)
    m.compile("adam", "mse")
    assert [layer.name for layer in m.layers][1:3] == ["d1", "d2"]  # d2 before d1's step in model order
    assert "block order" in m.fused_reason


def test_numpy_backend_agrees_to_float32_rounding():
    if not HAS_CPU:
        pytest.skip("cpu backend not built")
    prev = fusednn.get_backend().name
    out = {}
    try:
        for be in ("numpy", "cpu"):
            fusednn.set_backend(be)
            kw = {"gamma_regularizer": "l2", "beta_regularizer": "l1", "gamma_constraint": CONS["max_norm"]()}
            # SGD: Adam would blow the rounding noise of the Dense bias before a BatchNormalization
            # (its gradient is zero up to rounding) up to the learning rate
            m, losses = _fit(lambda: _layers("bn", **kw), "auto", lambda: keras.optimizers.SGD(0.05), epochs=2)
            assert (m.fused_reason is None) == (be == "cpu")
            out[be] = (losses, m.get_weights())
    finally:
        fusednn.set_backend(prev)
    np.testing.assert_allclose(out["numpy"][0], out["cpu"][0], rtol=1e-4)
    for a, b in zip(out["numpy"][1], out["cpu"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_reasons_where_not_fused(cpu):
    """A user constraint or a regularizer with its own penalty, and a backend without the
    capability (the cuda one), say why."""
    from fusednn.training import fused

    class Halve(constraints.Constraint):
        def __call__(self, w):
            return w * 0.5

    m = keras.Sequential([keras.Input((6,)), L.Dense(3), L.BatchNormalization(gamma_constraint=Halve()), L.Dense(1)])
    m.compile("adam", "mse")
    assert "Halve" in m.fused_reason and "Python projection" in m.fused_reason

    class Odd(regularizers.L2):
        def __call__(self, x):
            return 0.0

    m = keras.Sequential([keras.Input((6,)), L.Dense(3), L.LayerNormalization(beta_regularizer=Odd()), L.Dense(1)])
    m.compile("adam", "mse")
    assert "Odd" in m.fused_reason and "own penalty" in m.fused_reason

    class NoPenalties:  # a backend with these steps but without their penalties (the cuda one today)
        name, trainer_steps, trainer_prelu, trainer_layernorm, trainer_step_penalties = "cuda", True, True, True, False

    class Model:
        backend = NoPenalties()

    for layer in (L.BatchNormalization(gamma_regularizer="l2"), L.LayerNormalization(beta_constraint="non_neg"),
                  L.PReLU(alpha_regularizer="l1")):
        why = fused._steps_reason(Model(), [L.Dense(2), layer, L.Dense(1)])
        assert why is not None and "cuda" in why and type(layer).__name__ in why
    assert not fusednn.backends.base.Backend.trainer_step_penalties


def test_binding_checks_the_step_penalties(cpu):
    m, _ = _fit(lambda: _layers("bn", gamma_regularizer="l2"), "auto", epochs=1)
    t = m._fused
    step = t.specs[0]["post"][0]
    assert step["kind"] == "batchnorm" and step["gamma_l2"] == pytest.approx(0.01)

    def with_step(**kw):
        return [dict(t.specs[0], post=[dict(step, **kw)]), *t.specs[1:]]

    def make(specs):
        return m.backend.make_trainer(specs, m.optimizer.kernel_spec(), "mse", t.batch, 0.0)

    with pytest.raises(ValueError, match="gamma_l2 must be a finite number >= 0"):
        make(with_step(gamma_l2=-1.0))
    with pytest.raises(ValueError, match="alpha_l1 but no trainable alpha"):
        make(with_step(alpha_l1=0.1))
    with pytest.raises(ValueError, match="unknown constraint kind"):
        make(with_step(beta_constraint={"kind": 99, "axis": 2, "min_value": 0.0, "max_value": 1.0, "rate": 1.0}))


# ------------------------------------------------------------------ Keras 3 itself
def test_regularized_batchnorm_loss_matches_keras():
    """The reported loss (penalties included, as Keras reports it) and the weights after a
    few full-batch SGD epochs of Dense -> BatchNormalization(gamma L2, beta L1) -> Dense
    equal Keras 3's (torch backend) to float32 rounding."""
    keras3 = keras3_on_torch()
    if not HAS_CPU:
        pytest.skip("cpu backend not built")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = rng.standard_normal((32, 2)).astype(np.float32)

    def layers(lib):
        return [lib.layers.Dense(5), lib.layers.BatchNormalization(
                    gamma_regularizer=lib.regularizers.L2(0.1), beta_regularizer=lib.regularizers.L1(0.05),
                    gamma_constraint=lib.constraints.MaxNorm(2.0)),
                lib.layers.Dense(2)]

    t = keras3.Sequential([keras3.Input(shape=(4,)), *layers(keras3)])
    with on_backend("cpu"):
        o = keras.Sequential([keras.Input(shape=(4,)), *layers(keras)])
        w = t.get_weights()
        w[2] = rng.uniform(0.5, 1.5, 5).astype(np.float32)  # gamma and beta away from 1 and 0
        w[3] = rng.normal(size=5).astype(np.float32)
        t.set_weights(w)
        o.set_weights(w)
        t.compile(keras3.optimizers.SGD(0.1), "mse")
        o.compile(keras.optimizers.SGD(0.1), "mse")
        assert o.fused_reason is None
        assert_fits_like_keras(o, t, x, y, epochs=4)
