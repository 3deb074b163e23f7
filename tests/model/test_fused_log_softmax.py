"""log_softmax in the fused cpu trainer (issue 11): a Dense's ``activation='log_softmax'``
(hidden, or the output fed to the loss) and ``Activation('log_softmax')`` run as a
log_softmax step (fusednn/layer_steps.h) over the per-op path's kernels
(csrc/cpu/activations.cpp). The kernels against a float64 reference (odd widths, width 1,
large logits, non-contiguous and float64 input) and finite differences; the fused trainer
equal to the per-op path bit for bit (with sample weights and a short last batch); the
numpy backend to float32 rounding; what stays per-op says why."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras, ops

from helpers import assert_fits_like_keras, keras3_on_torch, numeric_grad, on_backend

L = keras.layers
HAS_CPU = "cpu" in fusednn.backends.available()
needs_cpu = pytest.mark.skipif(not HAS_CPU, reason="cpu backend not built")


def _ref(x):
    """log_softmax in float64 (x - logsumexp(x), shifted by the row max)."""
    x = np.asarray(x, np.float64)
    m = x.max(1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(1, keepdims=True))


@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (3, 2), (7, 17), (2, 33), (9, 130)])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_kernels_against_float64(host_backend_name, shape, scale):
    """Forward to float32 rounding of the float64 value at any width (1: exactly 0) and at
    logits far beyond exp's float32 range (no overflow); backward against the float64
    formula dy - exp(y) * sum(dy)."""
    be = fusednn.get_backend()
    rng = np.random.default_rng(shape[1])
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    y = be.to_numpy(ops.log_softmax(be.asarray(x)))
    want = _ref(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6 * max(1.0, scale))
    if shape[1] == 1:
        assert (y == 0).all()
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = be.to_numpy(ops.log_softmax_grad(be.asarray(dy), be.asarray(y)))
    y64 = y.astype(np.float64)
    np.testing.assert_allclose(dx, dy - np.exp(y64) * dy.astype(np.float64).sum(1, keepdims=True),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (4, 5)])
def test_gradient_against_finite_differences(host_backend_name, shape):
    be = fusednn.get_backend()
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) * 3
    dy = rng.standard_normal(shape)
    num = numeric_grad(lambda v: float((_ref(v) * dy).sum()), x.copy())
    y = ops.log_softmax(be.asarray(x.astype(np.float32)))
    got = be.to_numpy(ops.log_softmax_grad(be.asarray(dy.astype(np.float32)), y))
    np.testing.assert_allclose(got, num, rtol=1e-4, atol=1e-5)


def test_non_contiguous_and_float64_input(host_backend_name):
    be = fusednn.get_backend()
    x = np.random.default_rng(2).standard_normal((6, 14))
    strided = be.asarray(x.astype(np.float32))[:, ::2]
    got = be.to_numpy(ops.log_softmax(strided))
    np.testing.assert_array_equal(got, be.to_numpy(ops.log_softmax(be.asarray(x[:, ::2].astype(np.float32)))))
    np.testing.assert_allclose(be.to_numpy(ops.log_softmax(x)), _ref(x.astype(np.float32)), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        ops.log_softmax(np.zeros(3))


# the models: log_softmax hidden (an Activation layer, a Dense activation) and as the output
MODELS = {
    "hidden-activation": lambda: [L.Dense(7), L.Activation("log_softmax"), L.Dense(4, activation="tanh"), L.Dense(3)],
    "hidden-dense": lambda: [L.Dense(9, activation="log_softmax"), L.BatchNormalization(), L.Dense(3)],
    "output-dense": lambda: [L.Dense(8, activation="relu"), L.Dropout(0.2, seed=4),
                             L.Dense(3, activation="log_softmax")],
    "output-activation": lambda: [L.Dense(8, activation="gelu"), L.Dense(3), L.Activation("log_softmax")],
    "width-1-output": lambda: [L.Dense(5, activation="log_softmax"), L.Dense(1, activation="log_softmax")],
    # steps after the output's log_softmax (the loss reads the last step's output)
    "output-twice-then-dropout": lambda: [L.Dense(4), L.Dense(3, activation="log_softmax"),
                                          L.Activation("log_softmax"), L.Dropout(0.1, seed=2)],
}
LOSSES = {
    "mse": lambda: "mse",
    # cross-entropies on the log-probabilities as logits: softmax(log_softmax(z)) = softmax(z), as in Keras
    "cce-logits": lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
    "kld": lambda: "kl_divergence",
}


def _data(n=50, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    w = rng.uniform(0.2, 2.0, n).astype(np.float32)
    return x, y, w


def _fit(layers, loss, fused, weighted=True, epochs=3, metrics=()):
    keras.utils.set_random_seed(5)
    m = keras.Sequential([keras.Input((6,)), *layers()])
    m.compile(keras.optimizers.Adam(0.02), loss(), fused=fused, metrics=list(metrics))
    x, y, w = _data(classes=m.output_shape[-1])
    keras.utils.set_random_seed(9)
    # 50 rows in batches of 16: the last batch has 2 rows
    h = m.fit(x, y, batch_size=16, epochs=epochs, verbose=0, sample_weight=w if weighted else None)
    return m, h.history


def assert_same_history(ha, hb, weighted):
    """Equal per-epoch losses and metrics; with sample weights the fused trainer's weighted
    loss value (the record, not the gradient) is summed in another order than the per-op
    path's (a property of every fused model, not of these steps): equal to float32 rounding."""
    assert ha.keys() == hb.keys()
    for k in ha:
        if weighted and k == "loss":
            np.testing.assert_allclose(ha[k], hb[k], rtol=1e-6)
        else:
            assert ha[k] == hb[k], k


@needs_cpu
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample-weights"])
@pytest.mark.parametrize("name,loss", [(n, k) for n in MODELS for k in LOSSES
                                       if n != "width-1-output" or k == "mse"])  # (one class: mse only)
def test_fused_equals_per_op_bit_for_bit(name, loss, weighted):
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        a, ha = _fit(MODELS[name], LOSSES[loss], "auto", weighted, metrics=["mae"])
        assert a.fused_reason is None and a._fused is not None
        b, hb = _fit(MODELS[name], LOSSES[loss], False, weighted, metrics=["mae"])
        assert_same_history(ha, hb, weighted)
        for u, v in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(u, v)
        assert all(np.isfinite(v).all() for v in a.get_weights())
    finally:
        fusednn.set_backend(prev)


@needs_cpu
def test_numpy_backend_agrees_to_float32_rounding():
    prev = fusednn.get_backend().name
    try:
        out = {}
        for be in ("numpy", "cpu"):
            fusednn.set_backend(be)
            m, h = _fit(MODELS["output-dense"], LOSSES["cce-logits"], "auto", epochs=2)
            assert (m.fused_reason is None) == (be == "cpu")
            out[be] = (h["loss"], m.get_weights())
        np.testing.assert_allclose(out["numpy"][0], out["cpu"][0], rtol=1e-4)
        for a, b in zip(out["numpy"][1], out["cpu"][1]):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    finally:
        fusednn.set_backend(prev)


@needs_cpu
def test_what_stays_per_op_says_why():
    """A cross-entropy on probabilities of a log_softmax output (Keras clips the negative
    "probabilities": not a folded case) and a backend without the step (the cuda one) train
    per-op with a reason."""
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        m = keras.Sequential([keras.Input((6,)), L.Dense(3, activation="log_softmax")])
        m.compile("adam", "categorical_crossentropy")
        assert "cross-entropy on probabilities" in m.fused_reason
        from fusednn.training import fused

        class NoLogSoftmax:  # a backend with layer steps but without log_softmax ones (cuda today)
            name, trainer_steps, trainer_steps_more, trainer_log_softmax = "cuda", True, True, False

        class Model:
            backend = NoLogSoftmax()

        why = fused._steps_reason(Model(), [L.Dense(2), L.Activation("log_softmax"), L.Dense(1)])
        assert why is not None and "log_softmax" in why and "cuda" in why
        why = fused._steps_reason(Model(), [L.Dense(2), L.Dense(3), L.Activation("log_softmax")])
        assert why is not None and "log_softmax" in why and "cuda" in why
        assert not getattr(fusednn.backends.base.Backend, "trainer_log_softmax")
    finally:
        fusednn.set_backend(prev)


@needs_cpu
def test_the_step_in_the_trainer_spec():
    """A log_softmax Dense becomes a linear block followed by a log_softmax step (the
    binding names the kind among those it knows when given another)."""
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        m, _ = _fit(MODELS["output-dense"], LOSSES["mse"], "auto", epochs=1)
        t = m._fused
        assert t.specs[-1]["act"] == 0 and [s["kind"] for s in t.specs[-1]["post"]] == ["log_softmax"]
        assert [s["kind"] for s in t.specs[0]["post"]] == ["dropout"]
        bad = [*t.specs[:-1], dict(t.specs[-1], post=[dict(t.specs[-1]["post"][0], kind="log_softmin")])]
        with pytest.raises(ValueError, match="unknown kind 'log_softmin'.*log_softmax"):
            m.backend.make_trainer(bad, m.optimizer.kernel_spec(), "mse", t.batch, 0.0)
    finally:
        fusednn.set_backend(prev)


# ------------------------------------------------------------------ Keras 3 itself
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("loss", ["mse", "cce-logits", "cce-probabilities"])
def test_log_softmax_output_matches_keras(loss):
    """A log_softmax output layer trained with MSE, a cross-entropy on logits (fused) and a
    cross-entropy on "probabilities" (per-op: Keras clips the negative log-probabilities,
    and so do we) reports Keras 3's losses (torch backend) to float32 rounding."""
    keras3 = keras3_on_torch()
    if not HAS_CPU:
        pytest.skip("cpu backend not built")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]

    def make(lib):
        model = lib.Sequential([lib.Input((4,)), lib.layers.Dense(5, activation="relu"),
                                lib.layers.Dense(3, activation="log_softmax")])
        fn = "mse" if loss == "mse" else lib.losses.CategoricalCrossentropy(from_logits=loss == "cce-logits")
        model.compile(lib.optimizers.SGD(0.1), fn)
        return model

    with on_backend("cpu"):
        t, o = make(keras3), make(keras)
        o.set_weights(t.get_weights())
        assert (o.fused_reason is None) == (loss != "cce-probabilities")
        assert_fits_like_keras(o, t, x, y, epochs=3)
