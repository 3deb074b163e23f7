"""The fused cpu trainer's act_param, softmax and Gaussian noise steps (fusednn/cpu_steps_more.h):
LeakyReLU, ELU, ReLU with arguments, Softmax, GaussianNoise and GaussianDropout. The kernels
against the float64 formulas and finite differences, the native normals bit-identical to the
NumPy twin (layers/philox.py), the fused trainer equal to the per-op path bit for bit (both
call the same kernels), the numpy backend to float32 rounding, bad parameters rejected at the
binding, and the CUDA trainer declining these steps with a reason."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras

from helpers import numeric_grad

L = keras.layers
HAS_CPU = "cpu" in fusednn.backends.available()
needs_cpu = pytest.mark.skipif(not HAS_CPU, reason="cpu backend not built")

# (layer, float64 formula) of the parameterised activations
ACTS = [
    (lambda: L.LeakyReLU(), lambda x: np.where(x >= 0, x, 0.3 * x)),
    (lambda: L.LeakyReLU(negative_slope=0.2), lambda x: np.where(x >= 0, x, 0.2 * x)),
    (lambda: L.ELU(), lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))),
    (lambda: L.ELU(alpha=0.4), lambda x: np.where(x > 0, x, 0.4 * np.expm1(np.minimum(x, 0)))),
    (lambda: L.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.25),
     lambda x: np.minimum(np.where(x >= 0.25, x, 0.1 * (x - 0.25)), 1.0)),
    (lambda: L.ReLU(max_value=0.5), lambda x: np.minimum(np.maximum(x, 0), 0.5)),
]
IDS = ["leaky", "leaky0.2", "elu", "elu0.4", "relu-args", "relu6ish"]


def _x(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    # away from the kinks (0, the threshold 0.25, the caps 0.5 and 1) for the finite differences
    for k in (0.0, 0.25, 0.5, 1.0):
        x[np.abs(x - k) < 1e-2] = 0.7
    return x


@pytest.mark.parametrize("make,f", ACTS, ids=IDS)
@pytest.mark.parametrize("shape", [(7, 5), (1, 1), (33, 130)])
def test_act_param_against_float64(backend_name, make, f, shape):
    """Forward to float32 rounding of the float64 formula and backward against finite
    differences, on every backend (cpu: the native kernel)."""
    layer = make()
    layer.build(shape[1])
    from fusednn.backends import backend

    be = backend(backend_name)
    layer.backend = be
    x = _x(shape)
    buf = layer.make_buffers(shape[0])
    y = be.to_numpy(layer.forward(be.asarray(x.astype(np.float32)), buf))
    np.testing.assert_allclose(y, f(x.astype(np.float32).astype(np.float64)), rtol=2e-7, atol=1e-7)
    dy = np.random.default_rng(1).standard_normal(shape)
    dx = be.to_numpy(layer.backward(be.asarray(dy.astype(np.float32)), buf, True))
    if shape[0] * shape[1] <= 64:  # finite differences are O(n^2): the small shapes
        ref = numeric_grad(lambda v: float((f(v) * dy).sum()), x.copy())
    else:  # elementwise: the derivative of each element from a central difference of its own
        h = 1e-6
        ref = dy * (f(x + h) - f(x - h)) / (2 * h)
    np.testing.assert_allclose(dx, ref, rtol=1e-4, atol=1e-5)


@needs_cpu
def test_native_normals_bit_identical_to_numpy_twin():
    from fusednn import _cpu
    from fusednn.layers import philox

    for rows, cols, seed, step in [(37, 13, 0, 0), (1, 1, 5, 3), (64, 129, 2**64 - 1, 2**40 + 3)]:
        m = np.empty((rows, cols), np.float32)
        _cpu.gaussian_factor(m, seed, step, 1.0, False)
        np.testing.assert_array_equal(m, philox.normal(rows, cols, seed, step))
        _cpu.gaussian_factor(m, seed, step, 0.3, True)
        np.testing.assert_array_equal(m, np.float32(1) + np.float32(0.3) * philox.normal(rows, cols, seed, step))
    z = philox.normal(200, 100, 9, 1).astype(np.float64)  # a sanity check that they are normals
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02


@needs_cpu
def test_binding_rejects_bad_parameters():
    from fusednn import _cpu

    x = np.ones((3, 4), np.float32)
    y = np.empty_like(x)
    with pytest.raises(ValueError, match="negative_slope"):
        _cpu.act_param_forward(x, y, 0, slope=-0.1)
    with pytest.raises(ValueError, match="max_value"):
        _cpu.act_param_forward(x, y, 0, max_value=-1.0)
    with pytest.raises(ValueError, match="threshold"):
        _cpu.act_param_forward(x, y, 0, threshold=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        _cpu.act_param_forward(x, y, 1, alpha=float("inf"))
    with pytest.raises(ValueError, match="kind"):
        _cpu.act_param_forward(x, y, 2)
    with pytest.raises((TypeError, ValueError)):
        _cpu.act_param_forward(x.astype(np.float64), y, 0)
    with pytest.raises((TypeError, ValueError)):
        _cpu.act_param_forward(x, np.empty((4, 3), np.float32), 0)
    with pytest.raises((TypeError, ValueError)):
        _cpu.act_param_backward(x, x[:, ::2], y[:, :2], y[:, :2], 0)
    with pytest.raises(ValueError):
        _cpu.act_param_backward(x, x, x, x, 0)  # dx overlaps x
    with pytest.raises(ValueError, match="scale"):
        _cpu.gaussian_factor(y, 1, 0, -1.0, False)
    with pytest.raises((TypeError, ValueError)):
        _cpu.gaussian_factor(np.empty((3, 4)), 1, 0, 1.0, False)


def _bad_step_trainer(step: dict):
    """A one-block trainer spec with ``step`` after a hidden Dense block (for the binding checks)."""
    from fusednn.backends import backend

    be = backend("cpu")
    batch, cols = 4, 3
    specs = [{"W": np.zeros((2, cols), np.float32), "b": np.zeros(cols, np.float32), "act": 0,
              "A": be.empty((batch, cols)), "G": be.empty((batch, cols)), "dW": be.empty((2, cols)),
              "db": be.empty((cols,)), "W_s1": None, "b_s1": None,
              "post": [{**step, "Y": be.empty((batch, cols)), "G": be.empty((batch, cols))}]},
             {"W": np.zeros((cols, 1), np.float32), "b": np.zeros(1, np.float32), "act": 0,
              "A": be.empty((batch, 1)), "G": be.empty((batch, 1)), "dW": be.empty((cols, 1)),
              "db": be.empty((1,))}]
    return be.make_trainer(specs, keras.optimizers.SGD(0.1).kernel_spec(), "mse", batch, 0.0)


@needs_cpu
def test_trainer_binding_rejects_bad_steps():
    counter = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="negative_slope"):
        _bad_step_trainer({"kind": "act_param", "act_kind": 0, "slope": -1.0, "alpha": 1.0, "max_value": None,
                           "threshold": 0.0})
    with pytest.raises(ValueError, match="max_value"):
        _bad_step_trainer({"kind": "act_param", "act_kind": 0, "slope": 0.0, "alpha": 1.0, "max_value": -2.0,
                           "threshold": 0.0})
    with pytest.raises(ValueError, match="kind"):
        _bad_step_trainer({"kind": "act_param", "act_kind": 7, "slope": 0.0, "alpha": 1.0, "max_value": None,
                           "threshold": 0.0})
    with pytest.raises(ValueError, match="scale"):
        _bad_step_trainer({"kind": "gaussian_noise", "scale": float("nan"), "seed": 1, "counter": counter,
                           "M": np.empty((4, 3), np.float32)})
    with pytest.raises(ValueError, match="counter"):
        _bad_step_trainer({"kind": "gaussian_dropout", "scale": 0.5, "seed": 1, "counter": np.zeros(1, np.int32),
                           "M": np.empty((4, 3), np.float32)})
    with pytest.raises(ValueError, match="M"):
        _bad_step_trainer({"kind": "gaussian_dropout", "scale": 0.5, "seed": 1, "counter": counter,
                           "M": np.empty((4, 2), np.float32)})


def _model(hidden, fused, opt="adam"):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([L.Dense(9, input_shape=(5,)), *hidden(), L.Dense(6), L.Softmax(), L.Dense(2)])
    m.compile(opt, "mse", fused=fused)
    return m


HIDDEN = {
    "leaky": lambda: [L.LeakyReLU(), L.GaussianNoise(0.3, seed=3)],
    "elu": lambda: [L.ELU(alpha=0.5), L.GaussianDropout(0.3, seed=4), L.BatchNormalization()],
    "activation-softmax": lambda: [L.ELU(), L.Activation("softmax")],
    "relu-args": lambda: [L.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.2), L.Dropout(0.2, seed=1),
                          L.GaussianNoise(0.1, seed=5), L.GaussianDropout(0.2, seed=6), L.LeakyReLU(0.2)],
}


@needs_cpu
@pytest.mark.parametrize("name", list(HIDDEN))
def test_fused_equals_per_op_bit_for_bit(name, monkeypatch):
    from fusednn.backends import backend

    made = []  # the fused run must build a native trainer with these steps
    real = type(backend("cpu")).make_trainer
    monkeypatch.setattr(type(backend("cpu")), "make_trainer",
                        lambda self, specs, *a: made.append([s["kind"] for sp in specs for s in sp.get("post", [])])
                        or real(self, specs, *a))
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((50, 5)), rng.standard_normal((50, 2))
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        out = []
        for fused in (True, False):
            m = _model(HIDDEN[name], fused)
            if fused:
                assert m.fused_reason is None
            keras.utils.set_random_seed(3)
            h = m.fit(x, y, epochs=3, batch_size=16, verbose=0)  # 50 rows: a last batch of 2
            counters = [int(layer.counter[0]) for layer in m.layers if hasattr(layer, "counter")]
            out.append((h.history["loss"], m.get_weights(), counters, m.predict(x, verbose=0)))
        assert out[0][0] == out[1][0]
        for a, b in zip(out[0][1], out[1][1]):
            np.testing.assert_array_equal(a, b)
        assert out[0][2] == out[1][2] and all(c == 12 for c in out[0][2])  # 4 steps x 3 epochs
        assert made and "softmax" in made[0] and len(made[0]) == len(HIDDEN[name]()) + 1, made
        np.testing.assert_array_equal(out[0][3], out[1][3])
    finally:
        fusednn.set_backend(prev)


@needs_cpu
def test_cpu_matches_numpy_reference():
    """The cpu backend (fused) against the numpy backend (per-op formulas, host normals) to
    float32 rounding: the same noise, the same training."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 2))
    prev = fusednn.get_backend().name
    res = []
    try:
        for be in ("cpu", "numpy"):
            fusednn.set_backend(be)
            m = _model(HIDDEN["relu-args"], "auto", opt="sgd")
            keras.utils.set_random_seed(3)
            h = m.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
            res.append((h.history["loss"], m.get_weights()))
    finally:
        fusednn.set_backend(prev)
    np.testing.assert_allclose(res[0][0], res[1][0], rtol=1e-4)
    for a, b in zip(res[0][1], res[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fused_reasons():
    """cpu: fused; a backend without the steps (cuda) says why (CUDA trainer declines them)."""
    prev = fusednn.get_backend().name
    try:
        if HAS_CPU:
            fusednn.set_backend("cpu")
            for layer in (L.LeakyReLU(0.1), L.ELU(), L.Softmax(), L.ReLU(max_value=6.0), L.GaussianNoise(0.1),
                          L.GaussianDropout(0.2), L.Activation("softmax")):
                m = keras.Sequential([L.Dense(3, input_shape=(2,)), layer, L.Dense(1)])
                m.compile("adam", "mse")
                assert m.fused_reason is None, m.fused_reason
        from fusednn.training import fused

        class NoMore:  # a backend with layer steps but without these (the cuda one today)
            name, trainer_steps, trainer_steps_more = "cuda", True, False

        class Model:
            backend = NoMore()

        for layer, word in ((L.LeakyReLU(), "LeakyReLU"), (L.ReLU(threshold=0.5), "ReLU layers with"),
                            (L.Softmax(), "Softmax"), (L.GaussianNoise(0.1), "GaussianNoise"),
                            (L.GaussianDropout(0.1), "GaussianDropout"), (L.ELU(), "ELU")):
            why = fused._steps_reason(Model(), [L.Dense(2), layer, L.Dense(1)])
            assert why is not None and word in why and "cuda" in why
        why = fused._steps_reason(Model(), [L.Dense(2), L.Activation("softmax"), L.Dense(1)])
        assert why is not None and "softmax Activation" in why
    finally:
        fusednn.set_backend(prev)
