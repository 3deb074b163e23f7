"""The focal cross-entropies (BinaryFocalCrossentropy, CategoricalFocalCrossentropy):
values against a float64 reimplementation of Keras 3's formulas and against Keras 3
itself (torch backend), gradients against finite differences and torch autograd through
Keras, native kernels against the NumPy backend on odd shapes, names, configs, sample
weights, and training in the fused trainer against the per-op path."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fusednn
from fusednn import keras, losses

from helpers import numeric_grad

LO, HI = float(np.float32(1e-7)), float(np.float32(1) - np.float32(1e-7))  # Keras' float32 clip bounds

BINARY_CFGS = [
    {},
    {"gamma": 0.0},
    {"gamma": 0.5, "apply_class_balancing": True, "alpha": 0.3},
    {"from_logits": True, "label_smoothing": 0.1},
    {"from_logits": True, "apply_class_balancing": True, "gamma": 3.0},
]
CATEGORICAL_CFGS = [
    {},
    {"gamma": 0.0, "alpha": 1.0},
    {"gamma": 1.5, "alpha": 0.6, "label_smoothing": 0.2},
    {"from_logits": True},
    {"from_logits": True, "label_smoothing": 0.05, "gamma": 0.7},
]
CASES = [("binary", c) for c in BINARY_CFGS] + [("categorical", c) for c in CATEGORICAL_CFGS]
IDS = [f"{k}-{i}" for i, (k, _) in enumerate(CASES)]


def make(kind, cfg):
    cls = losses.BinaryFocalCrossentropy if kind == "binary" else losses.CategoricalFocalCrossentropy
    return cls(**cfg)


def reference(kind, t, p, cfg):
    """Per-sample losses written from keras/src/losses/losses.py (binary_focal_crossentropy,
    categorical_focal_crossentropy), in float64."""
    t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)
    gamma, alpha, s = cfg.get("gamma", 2.0), cfg.get("alpha", 0.25), cfg.get("label_smoothing", 0.0)
    if kind == "binary":
        if s:
            t = t * (1.0 - s) + 0.5 * s
        if cfg.get("from_logits"):
            p = 1 / (1 + np.exp(-p))
        pc = np.clip(p, LO, HI)
        bce = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
        p_t = t * p + (1 - t) * (1 - p)
        focal = np.power(1.0 - p_t, gamma) * bce
        if cfg.get("apply_class_balancing"):
            focal = (t * alpha + (1 - t) * (1 - alpha)) * focal
        return focal.mean(axis=-1)
    if s:
        t = t * (1.0 - s) + s / t.shape[-1]
    if cfg.get("from_logits"):
        e = np.exp(p - p.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
    out = np.clip(p / p.sum(axis=-1, keepdims=True), LO, HI)
    return (np.power(1.0 - out, gamma) * alpha * (-t * np.log(out))).sum(axis=-1)


def data(kind, cfg, shape, seed=0):
    """float32-representable inputs away from the clip bounds (the kernels and the
    references are then smooth there): probabilities, or logits with from_logits."""
    rng = np.random.default_rng(seed)
    if cfg.get("from_logits"):
        p = rng.standard_normal(shape) * 2
    elif kind == "binary":
        p = rng.uniform(0.02, 0.98, shape)
    else:
        p = rng.uniform(0.05, 1.0, shape)  # rows normalised by the loss
    if kind == "binary":
        t = rng.integers(0, 2, shape).astype(np.float64)
        t[:, -1:] = rng.uniform(0, 1, (shape[0], 1))  # soft targets too
    else:
        t = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    return p.astype(np.float32).astype(np.float64), t.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("kind,cfg", CASES, ids=IDS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (129, 5)])
def test_value_matches_keras_formula(backend_name, kind, cfg, shape):
    if kind == "categorical" and shape[1] == 1:
        shape = (1, 2)
    p, t = data(kind, cfg, shape)
    got = make(kind, cfg)(t, p)
    assert got == pytest.approx(float(np.mean(reference(kind, t, p, cfg))), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("kind,cfg", CASES, ids=IDS)
def test_gradient_matches_finite_differences(host_backend_name, kind, cfg):
    p, t = data(kind, cfg, (5, 4), seed=1)
    loss = make(kind, cfg)
    be = fusednn.get_backend()
    grad = be.empty(p.shape)
    loss.gradient(be, be.asarray(p), be.asarray(t), grad)
    want = numeric_grad(lambda q: float(np.mean(reference(kind, t, q, cfg))), p.copy())
    np.testing.assert_allclose(be.to_numpy(grad), want, rtol=2e-5, atol=1e-8)


@pytest.mark.parametrize("kind,cfg", CASES, ids=IDS)
@pytest.mark.parametrize("shape", [(1, 2), (33, 7), (1000, 3)])
def test_native_matches_numpy_backend(kind, cfg, shape):
    pytest.importorskip("fusednn._cpu")
    p, t = data(kind, cfg, shape, seed=2)
    out = {}
    for name in ("numpy", "cpu"):
        be = fusednn.backends.backend(name)
        grad, value = be.empty(p.shape), be.zeros((1,))
        loss = make(kind, cfg)
        be.loss_grad(loss.fn, be.asarray(p), be.asarray(t), grad, value, loss.kernel_param)
        out[name] = (float(be.to_numpy(value)[0]), be.to_numpy(grad))
    assert out["cpu"][0] == pytest.approx(out["numpy"][0], rel=1e-6)
    np.testing.assert_allclose(out["cpu"][1], out["numpy"][1], rtol=1e-5, atol=1e-9)


def test_saturated_and_clipped_inputs_stay_finite(host_backend_name):
    """Outputs at 0 and 1 (a saturated sigmoid) are clipped as in Keras: a finite loss and
    gradient for gamma 0 and >= 1 (only the focal factor's derivative passes the clip),
    and for gamma 0 or 2 a zero gradient where the prediction is exactly right."""
    be = fusednn.get_backend()
    p = np.array([[0.0, 1.0, 1.0, 0.0, 0.5]], np.float32)
    t = np.array([[0.0, 1.0, 0.0, 1.0, 1.0]], np.float32)
    for cfg in ({}, {"gamma": 0.0}, {"gamma": 1.0, "apply_class_balancing": True}):
        loss = losses.BinaryFocalCrossentropy(**cfg)
        assert loss(t, p) == pytest.approx(float(reference("binary", t, p, cfg)[0]), rel=1e-6)
        grad = be.empty(p.shape)
        loss.gradient(be, be.asarray(p), be.asarray(t), grad)
        g = be.to_numpy(grad)
        assert np.isfinite(g).all()
        if cfg.get("gamma", 2.0) != 1.0:  # (gamma = 1 keeps d(1 - p_t)/dp times the clipped bce there)
            assert (g[0, :2] == 0).all()
        if cfg.get("gamma") == 0.0:  # plain (weighted) cross-entropy: nothing passes the clip
            assert (g[0, :4] == 0).all()
    z = np.array([[60.0, -60.0, 60.0]], np.float32)  # sigmoid(z) rounds to 1 / underflows
    t = np.array([[1.0, 0.0, 0.0]], np.float32)
    loss = losses.BinaryFocalCrossentropy(from_logits=True)
    assert np.isfinite(loss(t, z))
    c = losses.CategoricalFocalCrossentropy(from_logits=True)
    assert np.isfinite(c(np.array([[0.0, 1.0, 0.0]]), np.array([[80.0, -80.0, 0.0]], np.float32)))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        losses.BinaryFocalCrossentropy()(np.zeros((4, 2)), np.zeros((4, 3)))
    for bad in ({"gamma": -1.0}, {"label_smoothing": 1.5}, {"axis": 0}, {"alpha": float("nan")},
                {"reduction": "sum"}, {"dtype": "float16"}):
        with pytest.raises(ValueError):
            losses.BinaryFocalCrossentropy(**bad)
    with pytest.raises(ValueError, match="scalar alpha"):
        losses.CategoricalFocalCrossentropy(alpha=[0.2, 0.3, 0.5])


def test_names_configs_and_functional_forms():
    assert type(losses.get("binary_focal_crossentropy")) is losses.BinaryFocalCrossentropy
    assert type(losses.get("BinaryFocalCrossentropy")) is losses.BinaryFocalCrossentropy
    assert type(losses.get("categorical_focal_crossentropy")) is losses.CategoricalFocalCrossentropy
    assert type(losses.get(keras.losses.binary_focal_crossentropy)) is losses.BinaryFocalCrossentropy
    assert type(losses.get(keras.losses.categorical_focal_crossentropy)) is losses.CategoricalFocalCrossentropy
    b = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.4, gamma=1.5, from_logits=True,
                                             label_smoothing=0.1, name="bf")
    assert b.get_config() == {"name": "bf", "reduction": "sum_over_batch_size", "from_logits": True,
                              "label_smoothing": 0.1, "axis": -1, "apply_class_balancing": True, "alpha": 0.4,
                              "gamma": 1.5}
    c = keras.losses.CategoricalFocalCrossentropy(alpha=0.5, gamma=1.0, label_smoothing=0.2)
    assert c.get_config() == {"name": "categorical_focal_crossentropy", "reduction": "sum_over_batch_size",
                              "from_logits": False, "label_smoothing": 0.2, "axis": -1, "alpha": 0.5, "gamma": 1.0}
    for loss in (b, c):
        again = losses.deserialize(losses.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
        assert again.kernel_param == loss.kernel_param
    p, t = data("binary", {}, (6, 3))
    np.testing.assert_allclose(keras.losses.binary_focal_crossentropy(t, p, gamma=1.5),
                               reference("binary", t, p, {"gamma": 1.5}), rtol=1e-6)
    p, t = data("categorical", {"from_logits": True}, (6, 4))
    per = keras.losses.categorical_focal_crossentropy(t, p, from_logits=True, alpha=0.5)
    assert per.shape == (6,) and per.dtype == np.float32
    np.testing.assert_allclose(per, reference("categorical", t, p, {"from_logits": True, "alpha": 0.5}), rtol=1e-6)


def test_sample_weights_weigh_each_row(host_backend_name):
    """evaluate(sample_weight=) and the per-op fit: sum(w_i * l_i) / n as in Keras."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    y = np.eye(3)[rng.integers(0, 3, 40)].astype(np.float32)
    w = rng.uniform(0, 2, 40).astype(np.float32)
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=keras.losses.CategoricalFocalCrossentropy(gamma=1.0))
    pred = model.predict(x, verbose=0).astype(np.float64)
    want = float(np.sum(w * reference("categorical", y, pred, {"gamma": 1.0})) / 40)
    assert model.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("kind,cfg", [CASES[2], CASES[3], CASES[7], CASES[8]], ids=[IDS[2], IDS[3], IDS[7], IDS[8]])
def test_fused_trainer_matches_per_op_path(kind, cfg):
    """The fused native trainer (loss kernel inside the epoch, sample weights too) against
    the per-op path on the NumPy reference backend: same weights and losses after three
    epochs, and the same weighted evaluate."""
    pytest.importorskip("fusednn._cpu")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((70, 5)).astype(np.float32)
    classes = 1 if kind == "binary" else 4
    y = (rng.integers(0, 2, (70, 1)) if kind == "binary" else np.eye(4)[rng.integers(0, 4, 70)]).astype(np.float32)
    out_act = "linear" if cfg.get("from_logits") else ("sigmoid" if kind == "binary" else "softmax")
    w = rng.uniform(0.0, 2.0, 70)
    runs = {}
    for backend, fused in (("numpy", False), ("cpu", True)):
        fusednn.set_backend(backend)
        try:
            keras.utils.set_random_seed(7)
            model = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(8, activation="tanh"),
                                      keras.layers.Dense(classes, activation=out_act)])
            model.compile(optimizer=keras.optimizers.Adam(0.01), loss=make(kind, cfg), fused=fused)
            if fused:
                assert model.fused_reason is None
            hist = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, sample_weight=w, verbose=0)
            runs[backend] = (hist.history["loss"] + [model.evaluate(x, y, sample_weight=w, verbose=0)],
                             model.get_weights())
        finally:
            fusednn.set_backend("cpu")
    np.testing.assert_allclose(runs["cpu"][0], runs["numpy"][0], rtol=1e-5)
    for a, b in zip(runs["cpu"][1], runs["numpy"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ---- Keras 3 itself (torch backend) as the oracle
@pytest.fixture(scope="module")
def keras3():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="PyTorch is not installed")
    k = pytest.importorskip("keras", reason="Keras 3 is not installed")
    if k.backend.backend() != "torch":  # pragma: no cover - another backend was configured first
        pytest.skip(f"Keras runs on {k.backend.backend()!r}, this test needs the torch backend")
    return k


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("kind,cfg", CASES, ids=IDS)
def test_value_and_gradient_match_real_keras(host_backend_name, keras3, kind, cfg):
    import torch

    p, t = data(kind, cfg, (17, 3), seed=5)
    p32, t32 = p.astype(np.float32), t.astype(np.float32)
    cls = getattr(keras3.losses, "BinaryFocalCrossentropy" if kind == "binary" else "CategoricalFocalCrossentropy")
    pt = torch.tensor(p32, requires_grad=True)
    theirs = cls(**cfg)(torch.tensor(t32), pt)
    theirs.backward()
    ours = make(kind, cfg)
    assert ours(t32, p32) == pytest.approx(float(theirs.detach()), rel=1e-5)
    be = fusednn.get_backend()
    grad = be.empty(p32.shape)
    ours.gradient(be, be.asarray(p32), be.asarray(t32), grad)
    np.testing.assert_allclose(be.to_numpy(grad), pt.grad.numpy(), rtol=1e-4, atol=1e-7)
    fn = getattr(keras3.losses, f"{kind}_focal_crossentropy")
    per_theirs = keras3.ops.convert_to_numpy(fn(t32, p32, **cfg))
    per_ours = getattr(keras.losses, f"{kind}_focal_crossentropy")(t32, p32, **cfg)
    np.testing.assert_allclose(per_ours, per_theirs, rtol=1e-5, atol=1e-7)
    assert make(kind, cfg).get_config() == cls(**cfg).get_config()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("cfg", [{}, {"gamma": 0.0}, {"gamma": 1.0, "apply_class_balancing": True, "alpha": 0.7}])
def test_saturated_outputs_match_real_keras(host_backend_name, keras3, cfg):
    """At and beyond the clip bounds (outputs 0, 1, 1e-9, 1 - 1e-9) the loss and the
    gradient that passes the clip are Keras' (torch autograd)."""
    import torch

    p = np.array([[0.0, 1.0, 1.0, 0.0, 1e-9, 1 - 1e-9, 0.3], [1e-9, 1 - 1e-9, 0.5, 1.0, 0.0, 0.9, 1.0]], np.float32)
    t = np.array([[0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]], np.float32)
    pt = torch.tensor(p, requires_grad=True)
    theirs = keras3.losses.BinaryFocalCrossentropy(**cfg)(torch.tensor(t), pt)
    theirs.backward()
    ours = losses.BinaryFocalCrossentropy(**cfg)
    assert ours(t, p) == pytest.approx(float(theirs.detach()), rel=1e-5)
    be = fusednn.get_backend()
    grad = be.empty(p.shape)
    ours.gradient(be, be.asarray(p), be.asarray(t), grad)
    np.testing.assert_allclose(be.to_numpy(grad), pt.grad.numpy(), rtol=1e-4, atol=1e-7)


def test_ops_functions_take_the_focal_arguments(host_backend_name):
    from fusednn import ops

    p, t = data("binary", {}, (9, 2), seed=6)
    cfg = {"gamma": 1.5, "alpha": 0.4, "apply_class_balancing": True, "label_smoothing": 0.1}
    assert ops.loss(p, t, "binary_focal_crossentropy") == pytest.approx(float(np.mean(reference("binary", t, p, {}))),
                                                                        rel=1e-6)
    assert ops.loss(p, t, "binary_focal_crossentropy", **cfg) == pytest.approx(
        float(np.mean(reference("binary", t, p, cfg))), rel=1e-6)
    g = ops.loss_grad(p, t, "binary_focal_crossentropy", **cfg)
    be = fusednn.get_backend()
    want = be.empty(p.shape)
    losses.BinaryFocalCrossentropy(**cfg).gradient(be, be.asarray(p), be.asarray(t), want)
    np.testing.assert_array_equal(be.to_numpy(g), be.to_numpy(want))
    with pytest.raises(ValueError, match="apply_class_balancing"):
        ops.loss(p, t, "categorical_focal_crossentropy", apply_class_balancing=True)
    with pytest.raises(ValueError, match="gamma"):
        ops.loss(p, t, "binary_focal_crossentropy", gamma=-1.0)


def test_saved_model_keeps_the_focal_loss(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    y = np.eye(3)[rng.integers(0, 3, 20)].astype(np.float32)
    m = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss=keras.losses.CategoricalFocalCrossentropy(alpha=0.5, gamma=1.0,
                                                                              label_smoothing=0.1))
    m.fit(x, y, epochs=1, verbose=0)
    m.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert type(again.loss) is losses.CategoricalFocalCrossentropy
    assert again.loss.get_config() == m.loss.get_config()
    assert again.evaluate(x, y, verbose=0) == m.evaluate(x, y, verbose=0)
