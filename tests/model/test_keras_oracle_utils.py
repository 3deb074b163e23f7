"""keras.utils, initializers, constraints, Normalization and PReLU against Keras 3
itself (torch backend, CPU): the same inputs give the same outputs and configs."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # the oracle's backend: torch is a test dependency
pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
keras3 = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")
if keras3.backend.backend() != "torch":  # pragma: no cover - another backend was configured first
    pytest.skip(f"Keras runs on {keras3.backend.backend()!r}, this test needs the torch backend",
                allow_module_level=True)

import fusednn  # noqa: E402
from fusednn import keras  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _np(t):
    return keras3.ops.convert_to_numpy(t)


@pytest.mark.parametrize("labels,n", [([0, 2, 1], None), (np.array([[1], [3]]), 5), (np.zeros((2, 3), int), 2),
                                      (np.array([2.0, 0.0]), None), (4, 6)])
def test_to_categorical(labels, n):
    theirs, ours = keras3.utils.to_categorical(labels, n), keras.utils.to_categorical(labels, n)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("order", [1, 2, np.inf])
def test_normalize(order):
    x = np.random.default_rng(0).standard_normal((6, 4))
    x[2] = 0
    for xi in (x, x.astype(np.float32), x[:, :4].copy()):
        t, o = keras3.utils.normalize(xi, order=order), keras.utils.normalize(xi, order=order)
        assert o.dtype == t.dtype
        np.testing.assert_allclose(o, t, rtol=1e-6)
    np.testing.assert_allclose(keras.utils.normalize(x[:4], axis=None), keras3.utils.normalize(x[:4], axis=None))


INIT_CASES = [("RandomNormal", {"mean": 1.0, "stddev": 2.0, "seed": 3}), ("RandomUniform", {"seed": 1}),
              ("TruncatedNormal", {"stddev": 0.3}), ("Zeros", {}), ("Ones", {}), ("Constant", {"value": 2.5}),
              ("Identity", {"gain": 2.0}), ("Orthogonal", {"gain": 0.5, "seed": 7}),
              ("VarianceScaling", {"scale": 2.0, "mode": "fan_out", "distribution": "uniform", "seed": 2}),
              ("GlorotNormal", {"seed": 4}), ("GlorotUniform", {}), ("HeNormal", {}), ("HeUniform", {"seed": 9}),
              ("LecunNormal", {}), ("LecunUniform", {"seed": 0})]


@pytest.mark.parametrize("name,kw", INIT_CASES, ids=[c[0] for c in INIT_CASES])
def test_initializer_configs_and_names(name, kw):
    theirs, ours = getattr(keras3.initializers, name)(**kw), getattr(keras.initializers, name)(**kw)
    if name == "Identity":  # Keras 3.15's Identity.get_config() forgets gain; ours keeps it (its from_config takes it)
        assert theirs.get_config() == {} and ours.get_config() == kw
        assert type(theirs).from_config(ours.get_config()).gain == kw["gain"]
    else:
        # Keras 3.15 writes input_axes/output_axes even when None; ours only when set (older Keras loads it)
        ref = {k: v for k, v in theirs.get_config().items() if not (k.endswith("_axes") and v is None)}
        assert ours.get_config() == ref
        cls3 = type(theirs)
        assert cls3.from_config(ours.get_config()).get_config() == theirs.get_config()
    snake = {"RandomNormal": "random_normal", "LecunNormal": "lecun_normal", "HeUniform": "he_uniform",
             "Orthogonal": "orthogonal", "Identity": "identity", "Constant": "constant",
             "TruncatedNormal": "truncated_normal", "VarianceScaling": "variance_scaling"}.get(name)
    if snake:
        assert type(keras.initializers.get(snake)).__name__ == name  # Keras' get('constant') fails on its own


@pytest.mark.parametrize("name", ["Identity", "Zeros", "Ones", "Constant"])
def test_deterministic_initializers_equal(name):
    for shape in [(3, 5), (4, 4)]:
        np.testing.assert_array_equal(getattr(keras.initializers, name)()(shape),
                                      _np(getattr(keras3.initializers, name)()(shape)))


@pytest.mark.parametrize("name", ["LecunNormal", "HeUniform", "GlorotNormal", "TruncatedNormal", "Orthogonal"])
def test_random_initializers_same_distribution(name):
    """Different generators, same distribution: support and the first two moments agree."""
    shape = (300, 200)
    t = _np(getattr(keras3.initializers, name)(seed=1)(shape)).astype(np.float64)
    o = getattr(keras.initializers, name)(seed=1)(shape).astype(np.float64)
    assert abs(o.std() - t.std()) < 0.02 * t.std()
    assert abs(o.mean() - t.mean()) < 0.02 * t.std()
    if name != "Orthogonal":  # a bounded support (truncation, uniform limit): the extremes agree
        assert abs(np.abs(o).max() - np.abs(t).max()) < 0.02 * np.abs(t).max()


CON_CASES = [("MaxNorm", {"max_value": 0.8, "axis": 0}), ("MaxNorm", {"max_value": 1.5, "axis": 1}),
             ("NonNeg", {}), ("UnitNorm", {"axis": 0}), ("UnitNorm", {"axis": [0, 1]}),
             ("MinMaxNorm", {"min_value": 0.5, "max_value": 1.2, "rate": 0.7, "axis": 0})]


@pytest.mark.parametrize("name,kw", CON_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CON_CASES)])
def test_constraints_equal(name, kw):
    theirs, ours = getattr(keras3.constraints, name)(**kw), getattr(keras.constraints, name)(**kw)
    assert ours.get_config() == theirs.get_config()
    w = (np.random.default_rng(2).standard_normal((9, 5)) * [0.1, 1, 2, 0.5, 3]).astype(np.float32)
    np.testing.assert_allclose(ours(w), _np(theirs(keras3.ops.convert_to_tensor(w))), rtol=1e-6, atol=1e-7)


def test_constrained_training_steps_equal(host_backend_name):
    """Ten Adam steps on constrained variables: Keras' optimizer applies the constraint
    after each update, as the per-op path does."""
    rng = np.random.default_rng(0)
    w0 = [rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    grads = [[rng.standard_normal(w.shape).astype(np.float32) for w in w0] for _ in range(10)]
    kcons = [keras3.constraints.MaxNorm(1.0), keras3.constraints.NonNeg()]
    kvars = [keras3.Variable(w.copy(), dtype="float32") for w in w0]
    for v, c in zip(kvars, kcons):
        v.constraint = c
    kopt = keras3.optimizers.Adam(0.1)
    for gs in grads:
        kopt.apply([keras3.ops.convert_to_tensor(g) for g in gs], kvars)
    be = fusednn.get_backend()
    params = [be.asarray(w.copy()) for w in w0]
    cons = [keras.constraints.MaxNorm(1.0), keras.constraints.NonNeg()]
    opt = keras.optimizers.Adam(0.1)
    opt.build(be, params)
    for gs in grads:
        opt.apply([be.asarray(g) for g in gs])
        for p, c in zip(params, cons):
            be.constrain(p, c.kernel_spec(p.ndim))
    for p, v in zip(params, kvars):
        np.testing.assert_allclose(be.to_numpy(p), _np(v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [{"axis": -1}, {"axis": None}, {"axis": -1, "invert": True},
                                {"axis": None, "invert": True}])
def test_normalization_adapt_equal(host_backend_name, kw):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((50, 4)) * [1, 10, 0.1, 3] + [0, 50, -2, 1]).astype(np.float32)
    x[:, 3] = 1.0  # constant feature: Keras divides by max(sqrt(0), 1e-7)
    t = keras3.layers.Normalization(**kw)
    t.adapt(x)
    o = keras.layers.Normalization(**kw).adapt(x)
    probe = x[:7] if not kw.get("invert") else rng.standard_normal((7, 4)).astype(np.float32)
    if not kw.get("invert"):
        probe[:, 3] = 1.0  # off-training values of a constant feature blow up in both
    np.testing.assert_allclose(fusednn.get_backend().to_numpy(o(probe)), _np(t(probe)), rtol=2e-5, atol=2e-5)


def test_normalization_given_statistics_and_config():
    kw = {"axis": -1, "mean": [1.0, -2.0, 0.5], "variance": [4.0, 0.25, 1.0]}
    t, o = keras3.layers.Normalization(**kw), keras.layers.Normalization(**kw)
    x = np.random.default_rng(4).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(o(x), _np(t(x)), rtol=1e-6, atol=1e-6)
    tc, oc = t.get_config(), o.get_config()
    assert list(tc["axis"]) == oc["axis"] and tc["invert"] == oc["invert"]
    assert tc["mean"] == oc["mean"] and tc["variance"] == oc["variance"]
    s = keras3.layers.Normalization(mean=2.0, variance=9.0)
    np.testing.assert_allclose(keras.layers.Normalization(mean=2.0, variance=9.0)(x), _np(s(x)), rtol=1e-6)


def test_prelu_equal():
    x = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)
    for shared in (None, [1]):
        t = keras3.layers.PReLU(alpha_initializer=keras3.initializers.Constant(0.3), shared_axes=shared)
        o = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.3), shared_axes=shared)
        np.testing.assert_array_equal(o(x), _np(t(x)))
        assert [w.shape for w in o.get_weights()] == [tuple(w.shape) for w in t.get_weights()]
        tc, oc = t.get_config(), o.get_config()
        assert {k: tc[k] for k in ("shared_axes", "alpha_regularizer", "alpha_constraint")} == \
            {k: oc[k] for k in ("shared_axes", "alpha_regularizer", "alpha_constraint")}
    assert keras3.layers.PReLU().get_config()["alpha_initializer"]["class_name"] == \
        keras.layers.PReLU().get_config()["alpha_initializer"]["class_name"]


def test_prelu_training_matches_keras():
    """Five full-batch SGD steps of Dense -> PReLU -> Dense with MaxNorm kernels from the
    same weights: Keras' gradients of alpha and its constraint step, matched."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    y = rng.standard_normal((32, 2)).astype(np.float32)

    def layers(lib):
        return [lib.layers.Dense(5, kernel_constraint=lib.constraints.MaxNorm(0.6)),
                lib.layers.PReLU(alpha_initializer=lib.initializers.Constant(0.2)),
                lib.layers.Dense(2, bias_constraint="non_neg")]

    t = keras3.Sequential([keras3.Input(shape=(3,)), *layers(keras3)])
    o = keras.Sequential([keras.Input(shape=(3,)), *layers(keras)])
    o.set_weights(t.get_weights())
    t.compile(keras3.optimizers.SGD(0.2), "mse")
    o.compile(keras.optimizers.SGD(0.2), "mse")
    t.fit(x, y, epochs=5, batch_size=32, shuffle=False, verbose=0)
    o.fit(x, y, epochs=5, batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(o.get_weights(), t.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    assert not np.allclose(o.get_weights()[2], 0.2)
