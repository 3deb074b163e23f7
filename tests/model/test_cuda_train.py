"""The fused CUDA trainer (_cuda.MlpTrainer through the cuda backend): the same bits as
the per-op cuda path, the cpu backend's weights within float32 rounding, its argument
checks, and a bad sample order turned into NaN rather than an out-of-range read."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

cp = pytest.importorskip("cupy")
_cuda = pytest.importorskip("fusednn._cuda")

import fusednn  # noqa: E402
from fusednn import keras  # noqa: E402

from model_refs import rel_diff  # noqa: E402

pytestmark = pytest.mark.gpu


def blobs(n=240, classes=3, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)) * 3
    labels = rng.integers(0, classes, n)
    return (centers[labels] + rng.standard_normal((n, dim))).astype(np.float32), labels


# (loss, output units, output activation, metrics, targets)
CASES = {
    "mse": ("mse", 2, None, ["mae", "mse"]),
    "sparse": ("sparse_categorical_crossentropy", 3, "softmax", ["accuracy", "f1"]),
    "categorical": ("categorical_crossentropy", 3, "softmax", ["accuracy"]),
    "binary": ("binary_crossentropy", 1, "sigmoid", ["accuracy", "precision"]),
}


def case_data(name):
    x, labels = blobs()
    y = {"mse": np.random.default_rng(1).standard_normal((len(x), 2)), "sparse": labels,
         "categorical": np.eye(3)[labels], "binary": labels % 2}[name]
    return x, y


def train(backend, name, per_op=False, epochs=3, stream=None):
    """Weights and history after ``epochs`` epochs of a 3-layer model from fixed seeds;
    with ``stream``, everything (weights, optimizer state, data, steps) on that stream."""
    loss, units, act, metrics = CASES[name]
    x, y = case_data(name)
    prev = fusednn.get_backend().name
    fusednn.set_backend(backend)
    try:
        with stream if stream is not None else contextlib.nullcontext():
            fusednn.utils.set_random_seed(4)
            model = keras.Sequential([keras.layers.Dense(16, activation="relu", input_shape=(x.shape[1],)),
                                      keras.layers.Dense(8, activation="tanh"),
                                      keras.layers.Dense(units, activation=act)])
            model.compile(keras.optimizers.Adam(0.01), loss, metrics=metrics, fused=not per_op)
            fusednn.utils.set_random_seed(5)
            hist = model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.25, verbose=0)
            weights = model.get_weights()
        assert (model._fused is None) == per_op
        return weights, hist.history
    finally:
        fusednn.set_backend(prev)


@pytest.mark.parametrize("name", list(CASES))
def test_fused_equals_per_op_on_cuda(name):
    """The trainer queues exactly the kernels of the per-op path, in its order, and every
    reduction is deterministic: the same bits, losses and metrics."""
    wa, ha = train("cuda", name)
    wb, hb = train("cuda", name, per_op=True)
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)
    assert ha == hb


@pytest.mark.parametrize("name", list(CASES))
def test_fused_cuda_matches_cpu(name):
    if "cpu" not in fusednn.available_backends():
        pytest.skip("the cpu backend is not built")
    wg, hg = train("cuda", name)
    wc, hc = train("cpu", name)
    assert max(rel_diff(a, b) for a, b in zip(wg, wc)) < 1e-4
    for key in hc:
        if key.endswith("loss") or key.endswith("mae") or key.endswith("mse"):
            np.testing.assert_allclose(hg[key], hc[key], rtol=1e-4, err_msg=key)
        else:  # a count can flip on an output within rounding of a tie
            np.testing.assert_allclose(hg[key], hc[key], atol=2.5 / 60, err_msg=key)


def test_fused_cuda_on_a_side_stream_gives_the_same_bits():
    wa, ha = train("cuda", "sparse")
    wb, hb = train("cuda", "sparse", stream=cp.cuda.Stream(non_blocking=True))
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)
    assert ha == hb


def _spec(batch=4):
    W = cp.zeros((3, 2), cp.float32)
    return {"W": W, "b": None, "act": 1, "A": cp.zeros((batch, 2), cp.float32),
            "G": cp.zeros((batch, 2), cp.float32), "dW": cp.zeros((3, 2), cp.float32), "db": None}


SGD = {"kind": 0, "flags": 0}
P2 = np.zeros((2, 16), np.float32)
P2[:, 0] = 0.1  # learning rate


def test_trainer_checks_its_buffers():
    spec = _spec()
    with pytest.raises(ValueError, match="A has shape"):
        _cuda.MlpTrainer([{**spec, "A": cp.zeros((5, 2), cp.float32)}], SGD, "mse", 4)
    with pytest.raises(ValueError, match="shares memory"):
        _cuda.MlpTrainer([{**spec, "dW": spec["W"]}], SGD, "mse", 4)
    with pytest.raises(TypeError, match="CUDA device array"):
        _cuda.MlpTrainer([{**spec, "W": np.zeros((3, 2), np.float32)}], SGD, "mse", 4)
    with pytest.raises(ValueError, match="unsupported loss"):
        _cuda.MlpTrainer([spec], SGD, "hinge", 4)
    t = _cuda.MlpTrainer([spec], SGD, "mse", 4)
    x, y = cp.zeros((6, 3), cp.float32), cp.zeros((6, 2), cp.float32)
    losses, ws = cp.zeros(2, cp.float32), cp.empty(_cuda.MlpTrainer.workspace_len(), cp.float64)
    order = cp.arange(6, dtype=cp.int64)
    with pytest.raises(TypeError, match="int64"):
        t.run(x, y, cp.arange(6, dtype=cp.int32), None, None, losses, 0, 2, 0, workspace=ws, step_params=P2)
    with pytest.raises(ValueError, match="length 6"):
        t.run(x, y, order[:5], None, None, losses, 0, 2, 0, workspace=ws, step_params=P2)
    with pytest.raises(ValueError, match="steps"):
        t.run(x, y, order, None, None, losses, 0, 3, 0, workspace=ws, step_params=P2)
    with pytest.raises(ValueError, match="workspace"):
        t.run(x, y, order, None, None, losses, 0, 2, 0, step_params=P2)
    with pytest.raises(ValueError, match="x_batch has shape"):
        t.run(x, y, order, cp.zeros((3, 3), cp.float32), None, losses, 0, 2, 0, workspace=ws, step_params=P2)
    with pytest.raises(ValueError, match="share memory"):
        t.run(x, y, order, None, None, spec["W"].reshape(-1), 0, 2, 0, workspace=ws, step_params=P2)
    assert t.run(x, y, order, None, None, losses, 0, 2, 0, workspace=ws, step_params=P2) == (2, 2)
    assert cp.asnumpy(losses).tolist() == [0.0, 0.0]


def test_bad_order_gives_nan_losses_not_a_bad_read():
    """A device order is not range-checked on the host (that would wait for the GPU);
    the gather kernel makes rows with out-of-range indices NaN instead of reading them.
    A host (NumPy) order is checked by the backend before it is copied."""
    be = fusednn.backends.backend("cuda")
    spec = _spec()
    trainer = be.make_trainer([spec], SGD, "mse", 4)
    x = cp.asarray(np.arange(18, dtype=np.float32).reshape(6, 3))
    y = cp.zeros((6, 2), cp.float32)
    losses = cp.full(2, -1.0, cp.float32)
    bad = cp.asarray(np.array([0, 1, 2, 3, 1 << 40, -7], np.int64))
    assert trainer.run(x, y, bad, None, None, losses, 0, 2, 0) == (2, 2)
    got = cp.asnumpy(losses)
    assert got[0] == 0.0 and np.isnan(got[1])  # W is zero: the first batch's loss is exactly 0
    with pytest.raises(ValueError, match="outside"):
        trainer.run(x, y, np.array([0, 1, 2, 3, 4, 6]), None, None, losses, 0, 2, 2)
    # the device is still usable: nothing was read out of range
    spec["W"].fill(0)
    losses.fill(-1)
    assert trainer.run(x, y, np.arange(6), None, None, losses, 0, 2, 2) == (4, 2)
    assert cp.asnumpy(losses).tolist() == [0.0, 0.0]
