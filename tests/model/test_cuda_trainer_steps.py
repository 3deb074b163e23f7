"""The CUDA fused trainer's newer steps, opt-in with FUSEDNN_CUDA_TRAINER_STEPS=1 until a
device has run them (csrc/cuda/steps_more.cu): PReLU, LayerNormalization, LeakyReLU/ELU/
ReLU with arguments, Softmax, GaussianNoise/GaussianDropout, a frozen BatchNormalization,
layer graphs (Concatenate/Add merges) and Dense weight constraints.

The gpu-marked tests (skipped without a device) hold the fused cuda trainer to the per-op
cuda path and to the fused cpu trainer within float32 rounding, and the Gaussian factor
kernel to the CPU's Philox normals bit for bit. The host tests check the opt-in switch:
without it the cuda backend advertises none of these and ``fused_reason`` says how to opt
in; the graph and persistent paths decline them either way."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras
from fusednn.backends import cuda as cuda_backend
from fusednn.backends import cuda_paths
from fusednn.training import fused as fused_mod

from model_refs import rel_diff

L = keras.layers

#: the capabilities FUSEDNN_CUDA_TRAINER_STEPS=1 turns on together
FLAGS = ("trainer_steps", "trainer_steps_more", "trainer_prelu", "trainer_layernorm", "trainer_merges",
         "trainer_frozen_batchnorm", "trainer_constraints")
OPT_IN = "opt in with FUSEDNN_CUDA_TRAINER_STEPS=1 (not yet run on a device)"


def _frozen_bn():
    bn = L.BatchNormalization(momentum=0.9)
    bn.trainable = False
    return bn


#: name -> the layers between the input and the softmax output (a chain of Dense blocks and steps)
CHAINS = {
    "layernorm": lambda: [L.Dense(12), L.LayerNormalization(), L.Dense(9, activation="relu")],
    "prelu": lambda: [L.Dense(12), L.PReLU(alpha_initializer=keras.initializers.Constant(0.2)), L.Dense(9)],
    "prelu_shared": lambda: [L.Dense(12), L.PReLU(alpha_initializer=keras.initializers.Constant(0.2),
                                                  shared_axes=[1]), L.Dense(9)],
    "leaky_elu": lambda: [L.Dense(12), L.LeakyReLU(0.2), L.Dense(9), L.ELU(0.7)],
    "relu_args": lambda: [L.Dense(12), L.ReLU(max_value=1.5, negative_slope=0.05, threshold=0.1), L.Dense(9)],
    "softmax": lambda: [L.Dense(12), L.Softmax(), L.Dense(9), L.Activation("softmax")],
    "gaussian": lambda: [L.Dense(12), L.GaussianNoise(0.3, seed=3), L.Dense(9), L.GaussianDropout(0.2, seed=4)],
    "frozen_bn": lambda: [L.Dense(12), _frozen_bn(), L.Dense(9, activation="tanh")],
    "constraints": lambda: [L.Dense(12, kernel_constraint=keras.constraints.MaxNorm(0.4),
                                    bias_constraint=keras.constraints.NonNeg()),
                            L.Dense(9, kernel_constraint=keras.constraints.UnitNorm(axis=1)),
                            L.Dense(7, kernel_constraint=keras.constraints.MinMaxNorm(0.2, 0.5, rate=0.7, axis=0))],
}


def _chain_model(name, fused):
    fusednn.utils.set_random_seed(0)
    layers = [L.InputLayer(input_shape=(6,))] + CHAINS[name]() + [L.Dense(3, activation="softmax")]
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", fused=fused)
    return model


def _graph_model(name, fused):
    fusednn.utils.set_random_seed(0)
    inp = keras.Input((6,))
    a = L.Dense(8, activation="relu")(inp)
    b = L.Dropout(0.2, seed=5)(L.Dense(8)(inp))
    merged = L.Concatenate()([a, b, inp]) if name == "concat" else L.Add()([a, b, L.Dense(8)(a)])
    h = L.Dense(9, activation="tanh")(merged)
    model = keras.Model(inp, L.Dense(3, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", fused=fused)
    return model


def _trailing_model(name, fused):
    """Steps after the last Dense: the loss reads the last step's output (mse on one-hot rows)."""
    fusednn.utils.set_random_seed(0)
    model = keras.Sequential([L.InputLayer(input_shape=(6,)), L.Dense(12, activation="relu"),
                              L.Dense(3, use_bias=False), L.LayerNormalization(), L.LeakyReLU(0.1)])
    model.compile(keras.optimizers.Adam(0.01), "mse", fused=fused)
    return model


CASES = [(_chain_model, n) for n in CHAINS] + [(_graph_model, n) for n in ("concat", "add")] + \
    [(_trailing_model, "trailing")]


def _fit(build, name, backend, fused):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((120, 6)).astype(np.float32)
    y = rng.integers(0, 3, 120)
    if build is _trailing_model:
        y = np.eye(3, dtype=np.float32)[y]
    prev = fusednn.get_backend().name
    fusednn.set_backend(backend)
    try:
        model = build(name, fused)
        if fused:
            assert model.fused_reason is None, model.fused_reason
        fusednn.utils.set_random_seed(2)
        hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history  # a short last batch of 8
        assert (model._fused is not None) == fused
        return hist["loss"], model.get_weights()
    finally:
        fusednn.set_backend(prev)


def _opt_in(monkeypatch):
    for flag in FLAGS:
        monkeypatch.setattr(cuda_backend.CudaBackend, flag, True)
    monkeypatch.setattr(cuda_backend.CudaBackend, "trainer_opt_in", "")


@pytest.mark.gpu
@pytest.mark.parametrize("build,name", CASES, ids=[n for _, n in CASES])
def test_fused_cuda_matches_per_op_cuda_and_fused_cpu(monkeypatch, build, name):
    """Unverified in the session that wrote it (no GPU there)."""
    _opt_in(monkeypatch)
    monkeypatch.setenv("FUSEDNN_CUDA_TRAINER_STEPS", "1")
    fused_loss, fused_w = _fit(build, name, "cuda", True)
    per_op_loss, per_op_w = _fit(build, name, "cuda", False)
    assert all(np.isfinite(fused_loss))
    np.testing.assert_allclose(fused_loss, per_op_loss, rtol=1e-4)
    assert max(rel_diff(a, b) for a, b in zip(fused_w, per_op_w)) < 1e-4
    if "cpu" in fusednn.available_backends():
        cpu_loss, cpu_w = _fit(build, name, "cpu", True)
        np.testing.assert_allclose(fused_loss, cpu_loss, rtol=1e-4)
        assert max(rel_diff(a, b) for a, b in zip(fused_w, cpu_w)) < 1e-4


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=pytest.mark.skipif(
    "cpu" not in fusednn.available_backends(), reason="the cpu backend is not built")),
    pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("rows,cols,add_one", [(7, 5, False), (33, 3, True), (1, 1, True), (64, 257, False)])
def test_gaussian_factor_kernel_is_the_cpus_draw_bit_for_bit(monkeypatch, backend, rows, cols, add_one):
    """The fused step's factor (the kernel) against the host Philox normals the per-op path
    uses (fusednn.layers.philox, the cpu kernel's twin), at the step counter it drew."""
    _opt_in(monkeypatch)
    prev = fusednn.get_backend().name
    fusednn.set_backend(backend)
    try:
        be = fusednn.get_backend()
        layer = (L.GaussianDropout(0.3, seed=11) if add_one else L.GaussianNoise(0.7, seed=11))
        model = keras.Sequential([L.InputLayer(input_shape=(4,)), L.Dense(cols), layer, L.Dense(2)])
        model.compile("sgd", "mse", fused=True)
        rng = np.random.default_rng(0)
        model.fit(rng.standard_normal((rows, 4)).astype(np.float32), rng.standard_normal((rows, 2)).astype(np.float32),
                  batch_size=rows, epochs=3, verbose=0)
        step = model._fused.specs[0]["post"][0]
        assert int(step["counter"][0]) == 3
        want = np.empty((rows, cols), np.float32)
        from fusednn.layers import philox

        z = np.float32(step["scale"]) * philox.normal(rows, cols, step["seed"], 2)
        want[...] = np.float32(1) + z if add_one else z
        np.testing.assert_array_equal(be.to_numpy(step["M"]), want)
    finally:
        fusednn.set_backend(prev)


# ---- host tests: the opt-in switch and the fast paths' refusal --------------------------


def test_cuda_backend_advertises_the_new_steps_only_with_the_opt_in():
    on = cuda_backend.CudaBackend.trainer_steps
    assert on == (__import__("os").environ.get("FUSEDNN_CUDA_TRAINER_STEPS", "") == "1")
    for flag in FLAGS:
        assert getattr(cuda_backend.CudaBackend, flag) is on, flag
    assert cuda_backend.CudaBackend.trainer_opt_in == ("" if on else OPT_IN)


class _Cuda:
    """The cuda backend's capability attributes without a device (the class attributes as
    they are without FUSEDNN_CUDA_TRAINER_STEPS=1)."""
    name = "cuda"
    trainer_opt_in = OPT_IN
    trainer_opt_in_flags = FLAGS

    def __getattr__(self, key):
        if key in FLAGS:
            return False
        raise AttributeError(key)


class _Model:
    backend = _Cuda()


@pytest.mark.parametrize("name", list(CHAINS))
def test_fused_reason_says_how_to_opt_in(name):
    layers = fused_mod._program(_chain_model(name, "auto"))  # built layers of the active backend
    why = fused_mod._opt_in_reason(_Model(), fused_mod._steps_reason(_Model(), layers), fused_mod._steps_reason,
                                   layers) or \
        fused_mod._constraints_reason(_Model(), layers)
    if name == "frozen_bn":  # refused in unsupported_reason (trainable=False), a plain BN step here
        assert why is not None and "BatchNormalization" in why and why.endswith(OPT_IN)
        return
    assert why is not None and "cuda" in why and why.endswith(OPT_IN), why


def test_the_opt_in_hint_only_where_the_opt_in_would_fuse():
    """A reason the opt-in does not change (a layer no trainer fuses) carries no hint, and a
    backend without the hint (cpu, cuda opted in) gets the bare reason."""
    layers = [L.Dense(4), L.Activation("log_softmax"), L.Dense(3)]
    why = fused_mod._opt_in_reason(_Model(), fused_mod._steps_reason(_Model(), layers), fused_mod._steps_reason,
                                   layers)
    assert why is not None and "log_softmax" in why and OPT_IN not in why
    bare = type("B", (), {"name": "cuda", "trainer_opt_in": "", "trainer_steps": False})()
    model, layers = type("M", (), {"backend": bare})(), [L.Dense(4), L.Dropout(0.1), L.Dense(3)]
    why = fused_mod._opt_in_reason(model, fused_mod._steps_reason(model, layers), fused_mod._steps_reason, layers)
    assert why is not None and "Dropout" in why and "opt in" not in why


def test_fused_reason_of_a_real_model_names_the_opt_in(monkeypatch):
    """The whole unsupported_reason chain on a model of the active backend, made to look like the
    cuda backend without the opt-in (the flags it would have)."""
    model = _chain_model("layernorm", "auto")
    be = model.backend
    monkeypatch.setattr(type(be), "name", "cuda", raising=False)
    monkeypatch.setattr(type(be), "has_trainer", True, raising=False)
    for flag in FLAGS:
        monkeypatch.setattr(type(be), flag, False, raising=False)
    monkeypatch.setattr(type(be), "trainer_opt_in", OPT_IN, raising=False)
    monkeypatch.setattr(type(be), "trainer_opt_in_flags", FLAGS, raising=False)
    why = fused_mod.unsupported_reason(model)
    assert why is not None and "LayerNormalization" in why and why.endswith(OPT_IN), why
    graph = _graph_model("add", "auto")
    why = fused_mod.unsupported_reason(graph)
    assert why is not None and "layer graphs" in why and why.endswith(OPT_IN), why
    frozen = _chain_model("frozen_bn", "auto")
    why = fused_mod.unsupported_reason(frozen)
    assert why is not None and "trainable=False" in why and why.endswith(OPT_IN), why
    constrained = _chain_model("constraints", "auto")
    why = fused_mod.unsupported_reason(constrained)
    assert why is not None and "constraints" in why and why.endswith(OPT_IN), why


def _spec(**extra):
    return {"W": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32), "act": 1, **extra}


ADAM = {"kind": cuda_paths.KINDS["adam"], "flags": 0}


@pytest.mark.parametrize("env", [{"FUSEDNN_CUDA_PERSISTENT": "1"}, {"FUSEDNN_CUDA_GRAPH": "1"}])
@pytest.mark.parametrize("extra,word", [
    ({"src": [-1]}, "merges"),
    ({"W_constraint": {"kind": 1, "axis": 0, "min_value": 0.0, "max_value": 1.0, "rate": 1.0}}, "constraints"),
    ({"b_constraint": {"kind": 2, "axis": 2, "min_value": 0.0, "max_value": 0.0, "rate": 1.0}}, "constraints"),
    ({"post": [{"kind": "layernorm"}]}, "Dense layers"),
    ({}, None),
])
def test_graph_and_persistent_paths_decline_the_new_steps(env, extra, word):
    layers = [_spec(**extra), {**_spec(), "W": np.zeros((3, 2), np.float32), "b": None}]
    mode, reason = cuda_paths.choose_mode(layers, ADAM, "mse", 8, lambda **kw: "", 1 << 20, env)
    if word is None:  # the plain chain still takes the requested path
        assert mode != "ops" and reason == ""
    else:
        assert mode == "ops" and word in reason
