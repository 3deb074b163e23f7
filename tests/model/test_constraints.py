"""Keras weight constraints (keras.constraints): the projection kernel on every backend
against Keras' formulas in float64 (odd shapes, size 1, both axes, a bias), bad input
at the binding, the constraint holding after every optimizer step, the fused cpu
trainer equal to the per-op path bit for bit, and configs through save/load."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import constraints, keras
from fusednn.backends import backend

EPS = 1e-7


def keras_ref(w: np.ndarray, name: str, axis, **kw) -> np.ndarray:
    """Keras 3's constraint formulas, in float64 (keras/src/constraints/constraints.py)."""
    w = w.astype(np.float64)
    if name == "non_neg":
        return np.maximum(w, 0)
    norms = np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))
    if name == "max_norm":
        desired = np.clip(norms, 0, kw["max_value"])
    elif name == "unit_norm":
        return w / (EPS + norms)
    else:
        desired = kw["rate"] * np.clip(norms, kw["min_value"], kw["max_value"]) + (1 - kw["rate"]) * norms
    return w * (desired / (EPS + norms))


CASES = [("max_norm", constraints.MaxNorm, {"max_value": 0.7}),
         ("unit_norm", constraints.UnitNorm, {}),
         ("min_max_norm", constraints.MinMaxNorm, {"min_value": 0.5, "max_value": 0.9, "rate": 0.6}),
         ("non_neg", constraints.NonNeg, {})]


@pytest.mark.parametrize("name,cls,kw", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("shape,axis", [((7, 5), 0), ((7, 5), 1), ((7, 5), -1), ((33, 129), 0), ((1, 1), 0),
                                        ((3, 1), 0), ((1, 9), 1), ((11,), 0), ((4, 6), None), ((4, 6), (0, 1))])
def test_kernel_against_keras_formula_in_float64(backend_name, name, cls, kw, shape, axis):
    be = backend(backend_name)
    rng = np.random.default_rng(hash((name, shape, str(axis))) % 2**32)
    w = (rng.standard_normal(shape) * rng.uniform(0.1, 2.0, size=shape[-1:])).astype(np.float32)
    con = cls(**kw) if name == "non_neg" else cls(axis=axis, **kw)
    wd = be.asarray(w.copy())
    be.constrain(wd, con.kernel_spec(w.ndim))
    got = be.to_numpy(wd)
    ref = keras_ref(w, name, None if (axis is None or isinstance(axis, tuple) or w.ndim == 1) else axis, **kw)
    np.testing.assert_allclose(got, ref, rtol=3e-7, atol=1e-7)
    # the class is callable on arrays, as in Keras, and gives the same numbers
    np.testing.assert_allclose(np.asarray(be.to_numpy(con(be.asarray(w)))), got, rtol=3e-7, atol=1e-7)


def test_constraints_hold():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((20, 6)).astype(np.float32) * 3
    assert np.all(np.linalg.norm(constraints.MaxNorm(2.0)(w), axis=0) <= 2.0 + 1e-5)
    np.testing.assert_allclose(np.linalg.norm(constraints.UnitNorm()(w), axis=0), 1.0, rtol=1e-5)
    n = np.linalg.norm(constraints.MinMaxNorm(1.0, 1.5)(w * 0.01), axis=0)
    assert np.all((n >= 1.0 - 1e-5) & (n <= 1.5 + 1e-5))
    assert (constraints.NonNeg()(w) >= 0).all()
    small = np.full((4, 3), 0.1, np.float32)  # inside the max norm: unchanged (up to eps)
    np.testing.assert_allclose(constraints.MaxNorm(2.0)(small), small, rtol=1e-6)


def test_names_configs_and_bad_arguments():
    assert isinstance(constraints.get("max_norm"), constraints.MaxNorm)
    assert isinstance(constraints.get("NonNeg"), constraints.NonNeg)
    assert isinstance(constraints.get("unit_norm"), constraints.UnitNorm)
    assert isinstance(constraints.get("min_max_norm"), constraints.MinMaxNorm)
    assert constraints.get(None) is None and keras.constraints.max_norm is constraints.MaxNorm
    assert constraints.MaxNorm().get_config() == {"max_value": 2, "axis": 0}
    assert constraints.UnitNorm().get_config() == {"axis": 0}
    assert constraints.MinMaxNorm().get_config() == {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}
    assert constraints.NonNeg().get_config() == {}
    for con in (constraints.MaxNorm(3, axis=1), constraints.MinMaxNorm(0.1, 2.0, 0.5, axis=[0, 1]),
                constraints.NonNeg(), constraints.UnitNorm(axis=-1)):
        back = constraints.deserialize(constraints.serialize(con))
        assert type(back) is type(con) and back.get_config() == con.get_config()
    with pytest.raises(ValueError, match="unknown constraint 'maxnorm'"):
        constraints.get("maxnorm")
    with pytest.raises(ValueError, match="min_value <= max_value"):
        constraints.MinMaxNorm(2.0, 1.0)
    with pytest.raises(ValueError, match="finite number"):
        constraints.MaxNorm(float("nan"))
    with pytest.raises(ValueError, match="out of range"):
        constraints.MaxNorm(axis=2).kernel_spec(2)
    with pytest.raises(TypeError, match="plain function"):
        keras.layers.Dense(2, kernel_constraint=lambda w: w)


def test_binding_rejects_bad_arrays():
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    from fusednn import _cpu

    w = np.ones((4, 6), np.float32)
    with pytest.raises((TypeError, ValueError)):
        _cpu.constrain(w[:, ::2], 1, 0, 0.0, 1.0, 1.0)  # not contiguous: cannot project in place
    with pytest.raises((TypeError, ValueError)):
        _cpu.constrain(w.astype(np.float64), 1, 0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        _cpu.constrain(np.ones((2, 2, 2), np.float32), 1, 0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="unknown constraint kind"):
        _cpu.constrain(w, 9, 0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="axis code"):
        _cpu.constrain(w, 1, 5, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="min_value"):
        _cpu.constrain(w, 4, 0, 2.0, 1.0, 1.0)
    np.testing.assert_array_equal(w, 1.0)  # nothing half-written


def _model(kc="max_norm", bc=None, fused="auto", optimizer=None):
    fusednn.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.layers.Dense(12, activation="relu", input_shape=(5,), kernel_constraint=kc, bias_constraint=bc),
        keras.layers.Dense(3, kernel_constraint=constraints.UnitNorm(axis=1), bias_constraint="non_neg"),
    ])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(0.05), loss="mse", fused=fused)
    return model


def _data(n=93):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, 5))
    return x, np.tanh(x @ rng.standard_normal((5, 3))) * 4 - 1


@pytest.mark.parametrize("fused", ["auto", False])
def test_constraint_holds_after_every_step(host_backend_name, fused):
    x, y = _data()
    model = _model(kc=constraints.MaxNorm(0.8), bc=constraints.MinMaxNorm(0.2, 0.3), fused=fused)
    checked = []

    def check(step, losses):
        k0, b0, k1, b1 = model.get_weights()
        assert np.all(np.linalg.norm(k0.astype(np.float64), axis=0) <= 0.8 * (1 + 1e-6))
        assert 0.2 * (1 - 1e-6) <= np.linalg.norm(b0.astype(np.float64)) <= 0.3 * (1 + 1e-6)
        np.testing.assert_allclose(np.linalg.norm(k1.astype(np.float64), axis=1), 1.0, rtol=1e-6)
        assert (b1 >= 0).all()
        checked.append(step)

    if host_backend_name == "cpu" and fused == "auto":
        assert model.fused_reason is None  # the fused trainer, one step per run
    xd, yd = model._backend.asarray(x.astype(np.float32)), model._backend.asarray(y.astype(np.float32))
    model._train_epoch(xd, yd, np.arange(len(x)), 16, on_step=check, chunk=1)
    assert len(checked) == 6
    # the unconstrained run would break the max norm: the constraint did the work
    free = keras.Sequential([keras.layers.Dense(12, activation="relu", input_shape=(5,)), keras.layers.Dense(3)])
    free.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    free.set_weights(_model().get_weights())
    free.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert np.linalg.norm(free.get_weights()[0], axis=0).max() > 0.8


@pytest.mark.parametrize("make_opt", [lambda: keras.optimizers.Adam(0.05),
                                      lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                                      lambda: keras.optimizers.AdamW(0.05, use_ema=True, ema_overwrite_frequency=3)],
                         ids=["adam", "sgd", "adamw-ema"])
def test_fused_equals_per_op(make_opt):
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        x, y = _data()
        kw = dict(kc=constraints.MaxNorm(0.9), bc=constraints.MinMaxNorm(0.1, 0.4, rate=0.5))
        a = _model(**kw, optimizer=make_opt())
        b = _model(**kw, optimizer=make_opt(), fused=False)
        assert a.fused_reason is None
        fusednn.utils.set_random_seed(8)
        ha = a.fit(x, y, epochs=3, batch_size=16, verbose=0)
        fusednn.utils.set_random_seed(8)
        hb = b.fit(x, y, epochs=3, batch_size=16, verbose=0)
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ha.history["loss"], hb.history["loss"])
        if not a.optimizer.use_ema:  # (as in Keras, fit ends on the unconstrained moving averages with EMA)
            assert np.linalg.norm(a.get_weights()[0].astype(np.float64), axis=0).max() <= 0.9 * (1 + 1e-6)
    finally:
        fusednn.set_backend(prev)


def test_fused_reason_for_user_constraints_and_devices_without_them(monkeypatch):
    class Halve(constraints.Constraint):
        def __call__(self, w):
            return w * 0.5

    x, y = _data(20)
    model = _model(kc=Halve())
    model.fit(x, y, epochs=1, batch_size=20, verbose=0)  # runs per-op, applying the projection
    assert "Halve" in model.fused_reason and "not fused" in model.fused_reason
    if "cpu" in fusednn.backends.available():
        prev = fusednn.get_backend().name
        fusednn.set_backend("cpu")
        try:
            m = _model()
            monkeypatch.setattr(type(m.backend), "trainer_constraints", False)
            assert "does not apply weight constraints" in m.fused_reason
        finally:
            fusednn.set_backend(prev)


def test_trainer_binding_refuses_constraints_when_not_allowed():
    """A trainer spec with an unknown constraint kind is rejected before anything runs."""
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    from fusednn.training.fused import FusedTrainer

    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        m = _model()
        m.build((None, 5))
        t = FusedTrainer(m, 8)
        specs = t.specs
        specs[0]["W_constraint"] = {**specs[0]["W_constraint"], "kind": 7}
        with pytest.raises(ValueError, match="unknown constraint kind 7"):
            m.backend.make_trainer(specs, m.optimizer.kernel_spec(), "mse", 8, 0.0)
    finally:
        fusednn.set_backend(prev)


def test_saved_with_the_model(tmp_path):
    model = _model(kc=constraints.MaxNorm(1.5, axis=1), bc="unit_norm")
    cfg = model.layers[0].get_config()
    assert cfg["kernel_constraint"] == {"class_name": "MaxNorm", "config": {"max_value": 1.5, "axis": 1}}
    assert cfg["bias_constraint"] == {"class_name": "UnitNorm", "config": {"axis": 0}}
    assert "kernel_constraint" not in keras.layers.Dense(2).get_config()
    path = tmp_path / "m.npz"
    model.save(str(path))
    back = fusednn.load_model(str(path))
    assert back.layers[0].kernel_constraint.get_config() == {"max_value": 1.5, "axis": 1}
    assert isinstance(back.layers[1].bias_constraint, constraints.NonNeg)


@pytest.mark.parametrize("fused", ["auto", False])
def test_frozen_layer_is_not_projected(host_backend_name, fused):
    """Keras constrains only the variables its optimizer updates: a frozen Dense keeps
    weights that break its constraint."""
    x, y = _data(40)
    model = _model(kc=constraints.MaxNorm(0.05), fused=fused)
    before = model.layers[0].get_weights()
    assert np.linalg.norm(before[0], axis=0).max() > 0.05
    model.layers[0].trainable = False
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse", fused=fused)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(model.layers[0].get_weights(), before):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(model.layers[1].get_weights()[0].astype(np.float64), axis=1), 1.0,
                               rtol=1e-6)  # the trained layer's UnitNorm still holds


@pytest.mark.parametrize("cls", ["BatchNormalization", "LayerNormalization"])
def test_normalization_beta_gamma_constraints(host_backend_name, cls, tmp_path):
    x, y = _data(48)
    make = getattr(keras.layers, cls)
    fusednn.utils.set_random_seed(1)
    norm = make(gamma_initializer=keras.initializers.Constant(3.0), gamma_constraint=constraints.MaxNorm(1.0),
                beta_constraint="non_neg")
    model = keras.Sequential([keras.layers.Dense(6, input_shape=(5,)), norm, keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    # cpu: projected inside the fused step (tests/model/test_fused_step_penalties.py); numpy: per-op
    assert model.fused_reason is None if host_backend_name == "cpu" else "no fused trainer" in model.fused_reason
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    gamma, beta = norm.get_weights()[:2]
    assert np.linalg.norm(gamma.astype(np.float64)) <= 1.0 * (1 + 1e-6) and (beta >= 0).all()
    cfg = norm.get_config()
    assert cfg["gamma_constraint"] == {"class_name": "MaxNorm", "config": {"max_value": 1.0, "axis": 0}}
    assert "beta_constraint" not in make().get_config()
    model.save(str(tmp_path / "m.npz"))
    back = fusednn.load_model(str(tmp_path / "m.npz"))
    assert isinstance(back.layers[1].beta_constraint, constraints.NonNeg)
