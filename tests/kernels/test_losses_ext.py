"""The Keras losses beyond MSE and the cross-entropies (mae, mape, msle, Huber, LogCosh,
Hinge, SquaredHinge, CategoricalHinge, KLDivergence, Poisson, CosineSimilarity) and
label_smoothing: values against a float64 reimplementation of Keras 3's formulas,
gradients against finite differences, deterministic reductions, names and configs, and
training in the fused trainer against the NumPy backend and PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import backends, keras, losses, ops

from helpers import numeric_grad
from model_refs import rel_diff

EPS = 1e-7
ELEMENTWISE = ["mae", "mape", "msle", "huber", "log_cosh", "hinge", "squared_hinge", "poisson"]
ROWWISE = ["categorical_hinge", "kl_divergence", "cosine_similarity"]


def keras_loss(name, t, p, delta=1.0):
    """keras/src/losses/losses.py, per sample over the last axis, then Keras' default
    'sum_over_batch_size' reduction (the mean over samples), in float64."""
    t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)
    if name in ("hinge", "squared_hinge") and np.all((t == 0) | (t == 1)):
        t = 2 * t - 1
    if name == "mae":
        per = np.mean(np.abs(t - p), -1)
    elif name == "mape":
        per = 100 * np.mean(np.abs((t - p) / np.maximum(np.abs(t), EPS)), -1)
    elif name == "msle":
        per = np.mean((np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)) ** 2, -1)
    elif name == "huber":
        e = p - t
        per = np.mean(np.where(np.abs(e) <= delta, 0.5 * e * e, delta * np.abs(e) - 0.5 * delta * delta), -1)
    elif name == "log_cosh":
        x = p - t
        per = np.mean(x + np.logaddexp(0, -2 * x) - np.log(2.0), -1)
    elif name == "hinge":
        per = np.mean(np.maximum(1 - t * p, 0), -1)
    elif name == "squared_hinge":
        per = np.mean(np.maximum(1 - t * p, 0) ** 2, -1)
    elif name == "poisson":
        per = np.mean(p - t * np.log(p + EPS), -1)
    elif name == "categorical_hinge":
        per = np.maximum(np.max((1 - t) * p, -1) - np.sum(t * p, -1) + 1, 0)
    elif name == "kl_divergence":
        tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        per = np.sum(tc * np.log(tc / pc), -1)
    elif name == "cosine_similarity":
        norm = lambda v: v / np.sqrt(np.maximum(np.sum(v * v, -1, keepdims=True), EPS * EPS))  # noqa: E731
        per = -np.sum(norm(t) * norm(p), -1)
    return float(np.mean(per))


def data(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(shape)
    t = rng.standard_normal(shape)
    if name in ("msle", "poisson"):
        p, t = np.abs(p) + 0.1, np.abs(t)
    elif name in ("hinge", "squared_hinge"):
        t = rng.integers(0, 2, shape).astype(np.float64)
    elif name == "categorical_hinge":
        t = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    elif name == "kl_divergence":
        p, t = rng.dirichlet(np.ones(shape[1]), shape[0]), rng.dirichlet(np.ones(shape[1]), shape[0])
    return p.astype(np.float32).astype(np.float64), t.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("name", ELEMENTWISE + ROWWISE)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (129, 5)])
def test_value_matches_keras_formula(backend_name, name, shape):
    p, t = data(name, shape)
    be = fusednn.get_backend()
    got = ops.loss(be.asarray(p), be.asarray(t), name, delta=0.7)
    assert got == pytest.approx(keras_loss(name, t, p, delta=0.7), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", ELEMENTWISE + ROWWISE)
def test_gradient_matches_finite_differences(backend_name, name):
    p, t = data(name, (6, 4), seed=1)
    if name in ("mae", "mape", "huber"):
        p[np.abs(p - t) < 0.05] += 0.2  # off the kinks
    be = fusednn.get_backend()
    num = numeric_grad(lambda z: keras_loss(name, t, z, delta=0.7), p.copy())
    got = be.to_numpy(ops.loss_grad(be.asarray(p), be.asarray(t), name, delta=0.7))
    np.testing.assert_allclose(got, num, rtol=2e-4, atol=1e-6)


def test_hinge_keeps_signed_labels_and_converts_zero_one():
    p = np.array([[0.3], [-2.0], [0.9]], np.float32)
    signed = np.array([[1.0], [-1.0], [-1.0]], np.float32)
    zero_one = (signed + 1) / 2
    assert ops.loss(p, signed, "hinge") == pytest.approx(ops.loss(p, zero_one, "hinge"))
    assert ops.loss(p, signed, "hinge") == pytest.approx(keras_loss("hinge", signed, p), rel=1e-6)


def test_cosine_similarity_of_zero_rows_is_finite(host_backend_name):
    p = np.zeros((2, 3), np.float32)
    t = np.ones((2, 3), np.float32)
    assert ops.loss(p, t, "cosine_similarity") == 0.0
    assert np.all(np.isfinite(ops.loss_grad(p, t, "cosine_similarity")))


def test_reduction_does_not_depend_on_threads():
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    k = backends.cpu._cpu
    p, t = data("poisson", (70_001, 3), seed=2)  # positive: every loss is finite
    p32, t32 = p.astype(np.float32), t.astype(np.float32)
    n0 = k.num_threads()
    try:
        k.set_num_threads(1)
        one = [k.loss_grad(p32, t32, c) for c in range(11)]
        k.set_num_threads(2)
        two = [k.loss_grad(p32, t32, c) for c in range(11)]
    finally:
        k.set_num_threads(n0)
    assert one == two and all(np.isfinite(one))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="unknown loss"):
        ops.loss(np.ones((2, 2)), np.ones((2, 2)), "hinj")
    with pytest.raises(ValueError, match="same shape"):
        ops.loss(np.ones((2, 2)), np.ones((2, 3)), "mae")
    with pytest.raises(TypeError):
        ops.loss(np.ones((2, 2), complex), np.ones((2, 2)), "mae")
    with pytest.raises(ValueError, match="reduction"):
        keras.losses.MeanAbsoluteError(reduction="sum")
    with pytest.raises(ValueError, match="label_smoothing"):
        keras.losses.SparseCategoricalCrossentropy(label_smoothing=0.1)


@pytest.mark.parametrize("alias,cls", [("mae", "MeanAbsoluteError"), ("mean_absolute_percentage_error",
                                       "MeanAbsolutePercentageError"), ("msle", "MeanSquaredLogarithmicError"),
                                       ("huber", "Huber"), ("log_cosh", "LogCosh"), ("hinge", "Hinge"),
                                       ("squared_hinge", "SquaredHinge"), ("categorical_hinge", "CategoricalHinge"),
                                       ("kld", "KLDivergence"), ("poisson", "Poisson"),
                                       ("cosine_similarity", "CosineSimilarity"), ("Huber", "Huber")])
def test_names_classes_and_configs(alias, cls):
    loss = losses.get(alias)
    assert type(loss) is getattr(keras.losses, cls)
    again = losses.deserialize(losses.serialize(loss))
    assert type(again) is type(loss) and again.get_config() == loss.get_config()
    p, t = data(loss.fn, (4, 3))
    assert loss(t, p) == pytest.approx(keras_loss(loss.fn, t, p), rel=1e-6, abs=1e-9)


def test_huber_delta_and_label_smoothing_are_saved():
    h = losses.deserialize(losses.serialize(keras.losses.Huber(delta=2.5)))
    assert h.delta == 2.5
    c = losses.deserialize(losses.serialize(keras.losses.CategoricalCrossentropy(label_smoothing=0.2)))
    assert c.label_smoothing == 0.2


@pytest.mark.parametrize("kind,ls", [("binary", 0.1), ("categorical", 0.3)])
def test_label_smoothing_value_and_gradient(host_backend_name, kind, ls):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((6, 4))
    if kind == "binary":
        t = rng.integers(0, 2, (6, 4)).astype(np.float64)
        ts = t * (1 - ls) + 0.5 * ls
        f = lambda v: float(np.mean(np.logaddexp(0, v) - ts * v))  # noqa: E731
        loss = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=ls)
    else:
        t = np.eye(4)[rng.integers(0, 4, 6)]
        ts = t * (1 - ls) + ls / 4
        f = lambda v: float(np.mean(np.sum(ts * (np.log(np.exp(v).sum(1, keepdims=True)) - v), 1)))  # noqa: E731
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ls)
    assert loss(t, z) == pytest.approx(f(z), rel=1e-6)
    be = fusednn.get_backend()
    g = be.zeros(z.shape)
    loss.gradient(be, be.asarray(z), be.asarray(t), g, logits=True)
    np.testing.assert_allclose(be.to_numpy(g), numeric_grad(f, z.copy()), rtol=1e-4, atol=1e-6)


# -------------------------------------------------------------------- training
def _model(out_units, out_act, seed=3, hidden="tanh"):
    fusednn.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Dense(9, activation=hidden, input_shape=(5,)),
                              keras.layers.Dense(out_units, activation=out_act)])
    return model


CASES = {  # loss -> (output units, output activation, target maker)
    "mae": (2, None, lambda r, n: r.standard_normal((n, 2))),
    "mape": (2, None, lambda r, n: r.standard_normal((n, 2)) + 3),
    "msle": (2, "softplus", lambda r, n: np.abs(r.standard_normal((n, 2)))),
    "huber": (2, None, lambda r, n: 3 * r.standard_normal((n, 2))),
    "log_cosh": (2, None, lambda r, n: r.standard_normal((n, 2))),
    "hinge": (1, "tanh", lambda r, n: r.integers(0, 2, (n, 1)).astype(float)),
    "squared_hinge": (1, None, lambda r, n: 2.0 * r.integers(0, 2, (n, 1)) - 1),
    "categorical_hinge": (3, None, lambda r, n: np.eye(3)[r.integers(0, 3, n)]),
    "kl_divergence": (3, "sigmoid", lambda r, n: r.dirichlet(np.ones(3), n)),
    "poisson": (2, "exponential", lambda r, n: r.poisson(2.0, (n, 2)).astype(float)),
    "cosine_similarity": (3, None, lambda r, n: r.standard_normal((n, 3))),
}


def _train(backend, name, per_op, steps=10):
    units, act, make_y = CASES[name]
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((10 * 8, 5)), make_y(rng, 10 * 8)
    prev = fusednn.get_backend().name
    try:
        fusednn.set_backend(backend)
        model = _model(units, act, hidden="gelu" if name in ("huber", "hinge") else "tanh")
        loss = keras.losses.Huber(delta=0.5) if name == "huber" else name
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), loss=loss, metrics=["mae"],
                      fused=False if per_op else "auto")
        h = model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        assert (model.fused_reason is None) == (not per_op and backend != "numpy"), model.fused_reason
        return model.get_weights(), h.history
    finally:
        fusednn.set_backend(prev)


@pytest.mark.parametrize("name", sorted(CASES))
def test_ten_fused_steps_match_numpy_reference(name):
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    w_fused, h_fused = _train("cpu", name, False)
    w_ref, h_ref = _train("numpy", name, False)
    w_op, h_op = _train("cpu", name, True)
    for a, b, c in zip(w_fused, w_ref, w_op):
        assert rel_diff(a, b) <= 1e-5
        np.testing.assert_array_equal(a, c)  # the fused trainer calls the per-op kernels in order
    assert h_fused["loss"][0] == pytest.approx(h_ref["loss"][0], rel=1e-5)
    assert h_fused["mae"][0] == pytest.approx(h_ref["mae"][0], rel=1e-5)
    assert np.isfinite(h_fused["loss"][0])


def _torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")


@pytest.mark.parametrize("case", ["mae", "huber", "poisson", "categorical_smooth", "binary_smooth"])
def test_ten_steps_match_torch(host_backend_name, case):
    """Ten full-batch SGD steps against PyTorch's L1Loss, HuberLoss, PoissonNLLLoss(log_input=False)
    and the label-smoothed cross-entropies (torch's label_smoothing is Keras' formula)."""
    torch = _torch_or_skip()
    torch.set_num_threads(1)
    rng = np.random.default_rng(9)
    n = 24
    x = rng.standard_normal((n, 5)).astype(np.float32)
    if case in ("mae", "huber"):
        y, units, act = (3 * rng.standard_normal((n, 2))).astype(np.float32), 2, None
    elif case == "poisson":
        y, units, act = rng.poisson(2.0, (n, 2)).astype(np.float32), 2, "exponential"
    elif case == "categorical_smooth":
        y, units, act = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)], 3, "softmax"
    else:
        y, units, act = rng.integers(0, 2, (n, 1)).astype(np.float32), 1, "sigmoid"
    loss = {"mae": "mae", "huber": keras.losses.Huber(delta=0.6), "poisson": "poisson",
            "categorical_smooth": keras.losses.CategoricalCrossentropy(label_smoothing=0.2),
            "binary_smooth": keras.losses.BinaryCrossentropy(label_smoothing=0.3)}[case]
    model = _model(units, act)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    w0 = model.get_weights()
    for _ in range(10):
        model.fit(x, y, epochs=1, batch_size=n, shuffle=False, verbose=0)

    params = [torch.tensor(w.T.copy() if w.ndim == 2 else w.copy(), requires_grad=True) for w in w0]
    opt = torch.optim.SGD(params, lr=0.1)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(10):
        z = torch.nn.functional.linear(torch.tanh(torch.nn.functional.linear(xt, params[0], params[1])),
                                       params[2], params[3])
        if case == "mae":
            val = torch.nn.functional.l1_loss(z, yt)
        elif case == "huber":
            val = torch.nn.functional.huber_loss(z, yt, delta=0.6)
        elif case == "poisson":
            val = torch.nn.functional.poisson_nll_loss(torch.exp(z), yt, log_input=False, eps=1e-7)
        elif case == "categorical_smooth":
            val = torch.nn.functional.cross_entropy(z, yt.argmax(1), label_smoothing=0.2)
        else:
            val = torch.nn.functional.binary_cross_entropy_with_logits(z, yt * 0.7 + 0.15)
        opt.zero_grad()
        val.backward()
        opt.step()
    for a, p in zip(model.get_weights(), params):
        b = p.detach().numpy()
        assert rel_diff(a, b.T if b.ndim == 2 else b) <= 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["huber", "kl_divergence", "hinge", "cosine_similarity"])
def test_cuda_fused_steps_match_numpy(name):
    """The CUDA fused trainer (loss_grad kernels, and the Z buffer of a gelu layer) against
    the NumPy reference after ten steps."""
    w_gpu, h_gpu = _train("cuda", name, False)
    w_ref, h_ref = _train("numpy", name, False)
    for a, b in zip(w_gpu, w_ref):
        assert rel_diff(a, b) <= 1e-5
    assert h_gpu["loss"][0] == pytest.approx(h_ref["loss"][0], rel=1e-5)
