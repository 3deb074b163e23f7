"""The activations beyond relu/sigmoid/tanh (elu, selu, leaky_relu, gelu exact and tanh,
swish/silu, softplus, softsign, hard_sigmoid, hard_swish/hard_silu, relu6, mish,
exponential) and log_softmax: forward against an independent float64 reference of
Keras 3's formulas, backward against finite differences, an accuracy sweep of the CPU
kernels on both SIMD paths, and Dense/Activation layers on the per-op and fused paths."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fusednn
from fusednn import backends, keras, ops

from helpers import numeric_grad

NEW = ["elu", "selu", "leaky_relu", "gelu", "gelu_tanh", "swish", "softplus", "softsign", "hard_sigmoid",
       "hard_swish", "relu6", "mish", "exponential"]
SMOOTH = ["elu", "selu", "gelu", "gelu_tanh", "swish", "softplus", "softsign", "mish", "exponential"]
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sig(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def ref(x, name):
    """Keras 3's definitions (keras/src/ops/nn.py), written out in float64; 1 + erf(z) and
    1 + tanh(u) are written as erfc(-z) and 2 sigmoid(2u), the same functions without the
    cancellation that would make the reference itself wrong for very negative inputs."""
    x = np.asarray(x, np.float64)
    sig = _sig
    with np.errstate(over="ignore"):
        return {
            "elu": lambda: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
            "selu": lambda: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0))),
            "leaky_relu": lambda: np.where(x >= 0, x, 0.2 * x),
            "gelu": lambda: 0.5 * x * _erfc(-x / np.sqrt(2)),
            "gelu_tanh": lambda: x * sig(2 * np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)),
            "swish": lambda: x * sig(x),
            "softplus": lambda: np.logaddexp(0, x),
            "softsign": lambda: x / (1 + np.abs(x)),
            "hard_sigmoid": lambda: np.clip(x / 6 + 0.5, 0, 1),
            "hard_swish": lambda: x * np.clip(x / 6 + 0.5, 0, 1),
            "relu6": lambda: np.clip(x, 0, 6),
            "mish": lambda: x * np.tanh(np.logaddexp(0, x)),
            "exponential": lambda: np.exp(x),
        }[name]()


def check_close(got, want, x, name, ulps=4.0, cond=2.0):
    """|got - want| <= ulps * eps32 * |want| + cond * eps32 * |x f'(x)| (+ FLT_MIN): a few
    roundings of the result plus the function's own sensitivity to one rounding of its
    argument (what any float32 evaluation of an inner expression like u(x) costs)."""
    x64 = np.asarray(x, np.float64)
    h = np.maximum(np.abs(x64) * 1e-6, 1e-9)
    with np.errstate(over="ignore", invalid="ignore"):
        slope = np.nan_to_num(np.abs((ref(x64 + h, name) - ref(x64 - h, name)) / (2 * h)), posinf=0.0)
    eps = np.finfo(np.float32).eps
    tol = ulps * eps * np.abs(want) + cond * eps * np.abs(x64) * slope + np.finfo(np.float32).tiny
    err = np.abs(np.asarray(got, np.float64) - want)
    bad = ~(err <= tol) & np.isfinite(want)
    assert not bad.any(), (f"{name}({x[bad][0]!r}) = {got[bad][0]!r}, want {want[bad][0]!r} "
                           f"({bad.sum()} bad of {bad.size})")


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("n", [1, 7, 1031])
def test_forward_matches_float64_reference(backend_name, name, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    got = fusednn.get_backend().to_numpy(ops.activation(fusednn.get_backend().asarray(x), name))
    check_close(got, ref(x, name), x, name)


@pytest.mark.parametrize("name", ["gelu", "mish", "elu", "hard_swish"])
def test_forward_converts_non_contiguous_and_float64(host_backend_name, name):
    rng = np.random.default_rng(5)
    base = rng.standard_normal((9, 14)) * 3
    x = base[:, ::2]  # non-contiguous float64 view
    got = ops.activation(x, name)
    assert got.dtype == np.float32 and got.shape == (9, 7)
    xf = x.astype(np.float32)
    check_close(got, ref(xf, name), xf, name)


@pytest.mark.parametrize("name", NEW)
def test_backward_finite_differences(backend_name, name):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 7)) * 2.5
    kinks = {"leaky_relu": [0], "hard_sigmoid": [-3, 3], "hard_swish": [-3, 3], "relu6": [0, 6], "elu": [0],
             "selu": [0]}.get(name, [])
    for k in kinks:  # keep finite differences off the kinks
        x[np.abs(x - k) < 0.05] = k + 0.3
    dy = rng.standard_normal((5, 7))
    num = numeric_grad(lambda z: float(np.sum(dy * ref(z, name))), x.copy())
    be = fusednn.get_backend()
    xb = be.asarray(x)
    y = ops.activation(xb, name)
    got = be.to_numpy(ops.activation_grad(be.asarray(dy), y, name, x=xb))
    np.testing.assert_allclose(got, num, rtol=2e-4, atol=2e-5)


def test_needs_input_activation_grad_requires_x():
    with pytest.raises(ValueError, match="forward input"):
        ops.activation_grad(np.ones(3), np.ones(3), "gelu")


def test_keras_aliases_and_gelu_default():
    x = np.linspace(-4, 4, 33, dtype=np.float32)
    np.testing.assert_array_equal(ops.activation(x, "silu"), ops.activation(x, "swish"))
    np.testing.assert_array_equal(ops.activation(x, "hard_silu"), ops.activation(x, "hard_swish"))
    np.testing.assert_array_equal(ops.gelu(x), ops.activation(x, "gelu"))  # exact, as keras.activations.gelu
    np.testing.assert_array_equal(ops.gelu(x, approximate=True), ops.activation(x, "gelu_tanh"))
    assert not np.array_equal(ops.gelu(x), ops.gelu(x, approximate=True))


def test_unknown_activation_lists_the_valid_names():
    with pytest.raises(ValueError, match="mish"):
        keras.layers.Dense(3, activation="mishh")


# ------------------------------------------------------------ CPU accuracy sweep
def sweep() -> np.ndarray:
    grid = np.linspace(-30, 30, 240_001, dtype=np.float32)
    wide = np.geomspace(1e-30, 1e4, 20_000).astype(np.float32)
    edges = np.array([0, 3, -3, 6, 20, 20.001, 88.7, 88.73, 89, -87.3, -103, -104, 0.4999, 0.5, 0.5001],
                     np.float32)
    return np.concatenate([grid, wide, -wide, edges, -edges])


@pytest.fixture(params=["avx2", "portable"])
def cpu_path(request):
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    k = backends.cpu._cpu
    if request.param == "avx2" and k.simd_path() != "avx2+fma":
        pytest.skip("this CPU has no AVX2+FMA")
    k.force_portable(request.param == "portable")
    yield k
    k.force_portable(False)


@pytest.mark.parametrize("name", NEW)
def test_cpu_accuracy_sweep(cpu_path, name):
    x = sweep()
    if name == "exponential":
        x = x[x < 88.7]  # beyond: inf, checked below
    got = cpu_path.act_forward(x, backends.ACTIVATIONS[name])
    check_close(got, ref(x, name), x, name)


@pytest.mark.parametrize("name", SMOOTH)
def test_cpu_backward_accuracy_sweep(cpu_path, name):
    """act'(x) * 1 against the float64 derivative (from the reference's own formula for
    the output-based ones), to a few roundings of the inputs."""
    x = np.linspace(-12, 12, 48_001, dtype=np.float32)
    x = x[x != 0]  # selu's kink
    code = backends.ACTIVATIONS[name]
    y = cpu_path.act_forward(x, code)
    saved = x if name in backends.NEEDS_INPUT else y
    got = cpu_path.act_backward(np.ones_like(x), saved, code).astype(np.float64)
    x64 = x.astype(np.float64)
    h = np.maximum(np.abs(x64) * 1e-7, 1e-8)
    want = (ref(x64 + h, name) - ref(x64 - h, name)) / (2 * h)
    # an output-based derivative also carries y's rounding (e.g. elu: y + 1 for y near -1)
    tol = 1e-5 * np.abs(want) + (4e-7 if name in backends.NEEDS_INPUT else 2e-7 * (1 + np.abs(y)))
    bad = np.abs(got - want) > tol
    assert not bad.any(), f"{name}'({x[bad][0]!r}) = {got[bad][0]!r}, want {want[bad][0]!r}"


def test_cpu_special_values(cpu_path):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 100.0], np.float32)
    for name in NEW:
        y = cpu_path.act_forward(x, backends.ACTIVATIONS[name])
        assert np.isnan(y[0]), name
    assert cpu_path.act_forward(np.float32([100.0]), backends.ACTIVATIONS["exponential"])[0] == np.inf
    assert cpu_path.act_forward(np.float32([-np.inf]), backends.ACTIVATIONS["elu"])[0] == -1.0


@pytest.mark.parametrize("name", NEW)
def test_matmul_epilogue_applies_any_activation(host_backend_name, name):
    rng = np.random.default_rng(2)
    a, w, b = rng.standard_normal((13, 9)), rng.standard_normal((9, 5)), rng.standard_normal(5)
    got = ops.linear(a, w, b, activation=name)
    z = (a.astype(np.float32).astype(np.float64) @ w.astype(np.float32) + b.astype(np.float32))
    np.testing.assert_allclose(got, ref(z, name), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ log_softmax
@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (3, 1000)])
def test_log_softmax_and_grad(backend_name, shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) * 5
    be = fusednn.get_backend()
    y = ops.log_softmax(be.asarray(x))
    x32 = x.astype(np.float32).astype(np.float64)
    want = x32 - np.log(np.exp(x32 - x32.max(1, keepdims=True)).sum(1, keepdims=True)) - x32.max(1, keepdims=True)
    np.testing.assert_allclose(be.to_numpy(y), want, rtol=1e-6, atol=2e-6)
    dy = rng.standard_normal(shape)
    if shape[1] <= 7:
        f = lambda z: float(np.sum(dy * (z - np.log(np.exp(z).sum(1, keepdims=True)))))  # noqa: E731
        num = numeric_grad(f, x.copy())
        got = be.to_numpy(ops.log_softmax_grad(be.asarray(dy), y))
        np.testing.assert_allclose(got, num, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------- layers
def _model(act, n_in=6, seed=3, fused="auto"):
    fusednn.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Dense(11, activation=act, input_shape=(n_in,)),
                              keras.layers.Dense(5, activation="tanh"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse", fused=fused)
    return model


def _fit(model, x, y):
    fusednn.utils.set_random_seed(11)
    return model.fit(x, y, epochs=2, batch_size=16, verbose=0)


@pytest.mark.parametrize("act", ["gelu", "swish", "elu", "mish", "hard_swish", "selu", "softplus"])
def test_dense_fused_equals_per_op_and_numpy(act):
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((75, 6)), rng.standard_normal((75, 2))
    prev = fusednn.get_backend().name
    try:
        fusednn.set_backend("cpu")
        a, b = _model(act), _model(act, fused=False)
        ha, hb = _fit(a, x, y), _fit(b, x, y)
        assert a.fused_reason is None and b.fused_reason is not None
        for wa, wb in zip(a.get_weights(), b.get_weights()):  # same kernels, same order: same bits
            np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ha.history["loss"], hb.history["loss"])
        fusednn.set_backend("numpy")
        c = _model(act)
        hc = _fit(c, x, y)
        for wa, wc in zip(a.get_weights(), c.get_weights()):
            np.testing.assert_allclose(wa, wc, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ha.history["loss"], hc.history["loss"], rtol=1e-5)
    finally:
        fusednn.set_backend(prev)


@pytest.mark.parametrize("act", ["gelu", "log_softmax", "leaky_relu"])
def test_activation_layer_gradient_matches_finite_differences(host_backend_name, act):
    """d loss / d kernel through an Activation layer, from the model's own backward pass."""
    fusednn.utils.set_random_seed(4)
    model = keras.Sequential([keras.layers.Dense(4, input_shape=(3,)), keras.layers.Activation(act),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))
    w = [np.asarray(v, np.float64) for v in model.get_weights()]

    def loss(w0):
        z = x @ w0 + w[1]
        h = z - np.log(np.exp(z).sum(1, keepdims=True)) if act == "log_softmax" else ref(z, act)
        return float(np.mean((h @ w[2] + w[3] - y) ** 2))

    num = numeric_grad(loss, w[0].copy())
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    got = fusednn.get_backend().to_numpy(model.layers[0].grads[0])
    np.testing.assert_allclose(got, num, rtol=1e-3, atol=1e-5)


def test_keras_activations_namespace(host_backend_name):
    x = np.linspace(-5, 5, 21, dtype=np.float32)
    for name in NEW:
        fn = keras.activations.get(name if name != "gelu_tanh" else "gelu")
        want = ops.activation(x, name if name != "gelu_tanh" else "gelu")
        np.testing.assert_array_equal(fn(x), want)
    np.testing.assert_array_equal(keras.activations.gelu(x, approximate=True), ops.activation(x, "gelu_tanh"))
    np.testing.assert_array_equal(keras.activations.relu(x, max_value=6.0), ops.relu6(x))
    with pytest.raises(ValueError, match="alpha=1.0"):
        keras.activations.elu(x, alpha=0.5)
    dense = keras.layers.Dense(3, activation=keras.activations.gelu)
    assert dense.activation == "gelu" and dense.get_config()["activation"] == "gelu"
    assert keras.layers.Activation(keras.activations.silu).activation == "silu"
    assert keras.activations.serialize(keras.activations.hard_silu) == "hard_silu"
    with pytest.raises(TypeError, match="activation must be a name"):
        keras.layers.Dense(3, activation=np.tanh)
