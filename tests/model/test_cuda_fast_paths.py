"""The opt-in fast CUDA trainer paths against the default per-op cuda path and the cpu
backend, after full seeded fits: the persistent kernel (FUSEDNN_CUDA_PERSISTENT=1, one
block per epoch, products in a different summation order) and the graph-replayed steps
(FUSEDNN_CUDA_GRAPH=1, the per-op kernels themselves; with 3 epochs: epoch 1 direct,
epoch 2 captured, epoch 3 replayed). Every loss, optimizer and hidden
activation the fused trainer takes; batch sizes 1, 7, 32 and larger than n, with n = 61
a multiple of none of them.

Bounds: the persistent path's weights are within 1e-4 (relative, whole array) of the
per-op path's and its per-epoch losses within rtol 1e-4 after 3 epochs; the graph
path runs the very kernels of the per-op path (the optimizer update reads its step's
row of Optimizer.step_params from a device copy instead of a kernel argument), so its
weights agree to 1e-6."""
from __future__ import annotations

import numpy as np
import pytest

cp = pytest.importorskip("cupy")
_cuda = pytest.importorskip("fusednn._cuda")

import fusednn  # noqa: E402
from fusednn import keras  # noqa: E402

from model_refs import rel_diff  # noqa: E402

pytestmark = pytest.mark.gpu

N = 61
LOSSES = {  # name: (loss, output units, output activation, metrics)
    "mse": ("mse", 2, None, ["mae"]),
    "sparse": ("sparse_categorical_crossentropy", 3, "softmax", ["accuracy"]),
    "categorical": ("categorical_crossentropy", 3, "softmax", ["accuracy"]),
    "binary": ("binary_crossentropy", 1, "sigmoid", ["accuracy", "precision"]),
    "mse_sigmoid": ("mse", 1, "sigmoid", []),  # an activation on the output under MSE
}
OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(0.01),
    "sgd": lambda: keras.optimizers.SGD(0.05),
    "momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
}


def data(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 5)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    y = {"mse": rng.standard_normal((N, 2)), "sparse": labels, "categorical": np.eye(3)[labels],
         "binary": labels % 2, "mse_sigmoid": (labels % 2).astype(float)}[name]
    return x, y


def fit(backend, monkeypatch, path, name="mse", opt="adam", act="relu", batch=7, epochs=3):
    loss, units, out_act, metrics = LOSSES[name]
    x, y = data(name)
    for flag in ("FUSEDNN_CUDA_PERSISTENT", "FUSEDNN_CUDA_GRAPH"):
        monkeypatch.delenv(flag, raising=False)
    if path == "persistent":
        monkeypatch.setenv("FUSEDNN_CUDA_PERSISTENT", "1")
    elif path == "graph":
        monkeypatch.setenv("FUSEDNN_CUDA_GRAPH", "1")
    prev = fusednn.get_backend().name
    fusednn.set_backend(backend)
    try:
        fusednn.utils.set_random_seed(4)
        model = keras.Sequential([keras.layers.Dense(16, activation=act, input_shape=(5,)),
                                  keras.layers.Dense(8, activation=act),
                                  keras.layers.Dense(units, activation=out_act)])
        model.compile(OPTIMIZERS[opt](), loss, metrics=metrics)
        fusednn.utils.set_random_seed(5)
        hist = model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
        assert model._fused is not None
        if backend == "cuda":
            assert model._fused.trainer.mode == path
        return model.get_weights(), hist.history, model
    finally:
        fusednn.set_backend(prev)
        monkeypatch.delenv("FUSEDNN_CUDA_PERSISTENT", raising=False)
        monkeypatch.delenv("FUSEDNN_CUDA_GRAPH", raising=False)


def close(a, b, w_tol, l_tol):
    (wa, ha, _), (wb, hb, _) = a, b
    assert max(rel_diff(p, q) for p, q in zip(wa, wb)) < w_tol
    for key in hb:
        if key.endswith("loss") or key.endswith("mae"):
            np.testing.assert_allclose(ha[key], hb[key], rtol=l_tol, err_msg=key)
        else:  # a count can flip on an output within rounding of a tie
            np.testing.assert_allclose(ha[key], hb[key], atol=1.5 / N, err_msg=key)


TOL = {"persistent": (1e-4, 1e-4), "graph": (1e-6, 1e-6)}


@pytest.mark.parametrize("path", ["persistent", "graph"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("name", list(LOSSES))
def test_path_matches_per_op_for_every_loss_and_optimizer(monkeypatch, path, name, opt):
    close(fit("cuda", monkeypatch, path, name, opt), fit("cuda", monkeypatch, "ops", name, opt), *TOL[path])


@pytest.mark.parametrize("path", ["persistent", "graph"])
@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "linear"])
@pytest.mark.parametrize("batch", [1, 7, 32, 100])
def test_path_matches_per_op_for_every_activation_and_batch(monkeypatch, path, act, batch):
    close(fit("cuda", monkeypatch, path, "sparse", "adam", act, batch),
          fit("cuda", monkeypatch, "ops", "sparse", "adam", act, batch), *TOL[path])


@pytest.mark.parametrize("path", ["persistent", "graph"])
@pytest.mark.parametrize("name", ["mse", "sparse"])
def test_path_matches_the_cpu_backend(monkeypatch, path, name):
    if "cpu" not in fusednn.available_backends():
        pytest.skip("the cpu backend is not built")
    close(fit("cuda", monkeypatch, path, name), fit("cpu", monkeypatch, "ops", name), 1e-4, 1e-4)


def test_graph_runs_epoch_one_directly_captures_epoch_two_and_replays_after(monkeypatch):
    _, _, model = fit("cuda", monkeypatch, "graph", epochs=5)
    stats = model._fused.trainer.graph_stats()
    assert (stats["direct"], stats["captures"], stats["replays"]) == (1, 1, 3), stats


def test_persistent_brief_model_matches_per_op(monkeypatch):
    """The product brief's program shape (10 -> 64 -> 64 -> 1, Adam, batch 32), 5 epochs."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 10)).astype(np.float32)
    y = (x @ rng.standard_normal((10, 1)) + 0.1 * rng.standard_normal((1000, 1))).astype(np.float32)
    out = {}
    prev = fusednn.get_backend().name
    try:
        for path in ("persistent", "ops"):
            monkeypatch.setenv("FUSEDNN_CUDA_PERSISTENT", "1" if path == "persistent" else "0")
            fusednn.set_backend("cuda")
            fusednn.utils.set_random_seed(1)
            m = keras.Sequential([keras.layers.Dense(64, activation="relu", input_shape=(10,)),
                                  keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
            m.compile(keras.optimizers.Adam(1e-3), "mse")
            fusednn.utils.set_random_seed(2)
            h = m.fit(x, y, epochs=5, batch_size=32, verbose=0)
            assert m._fused.trainer.mode == path
            out[path] = (m.get_weights(), h.history)
    finally:
        fusednn.set_backend(prev)
        monkeypatch.delenv("FUSEDNN_CUDA_PERSISTENT", raising=False)
    assert max(rel_diff(a, b) for a, b in zip(out["persistent"][0], out["ops"][0])) < 1e-4
    np.testing.assert_allclose(out["persistent"][1]["loss"], out["ops"][1]["loss"], rtol=1e-4)


def test_persistent_refuses_a_model_that_does_not_fit():
    W = cp.zeros((784, 4096), cp.float32)
    spec = {"W": W, "b": None, "act": 1, "A": cp.zeros((512, 4096), cp.float32),
            "G": cp.zeros((512, 4096), cp.float32), "dW": cp.zeros_like(W), "db": None}
    sgd = fusednn.optimizers.SGD(0.1).kernel_spec()
    with pytest.raises(ValueError, match="shared memory"):
        _cuda.MlpTrainer([spec], sgd, "mse", 512, False, mode="persistent")
    with pytest.raises(ValueError, match="unknown mode"):
        _cuda.MlpTrainer([spec], sgd, "mse", 512, False, mode="turbo")
    with pytest.raises(ValueError, match="only SGD"):  # what the opt-in paths cannot do exactly
        _cuda.MlpTrainer([spec], fusednn.optimizers.Adam(clipnorm=1.0).kernel_spec(), "mse", 512, False,
                         mode="graph")


@pytest.mark.parametrize("path", ["persistent", "graph"])
def test_opt_in_paths_follow_a_schedule_and_decline_clipping(monkeypatch, path):
    """The per-step rows of Optimizer.step_params reach the opt-in paths (an lr schedule
    changes them every step), and a clipped optimizer trains on the per-op kernels."""
    from fusednn import schedules

    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, 5)).astype(np.float32)
    y = rng.standard_normal((N, 2)).astype(np.float32)
    makers = {"schedule": lambda: keras.optimizers.Adam(schedules.ExponentialDecay(0.05, 3, 0.5)),
              "clip": lambda: keras.optimizers.Adam(0.01, clipnorm=0.1)}
    prev = fusednn.get_backend().name
    try:
        for name, make in makers.items():
            out = {}
            for p in (path, "ops"):
                for flag in ("FUSEDNN_CUDA_PERSISTENT", "FUSEDNN_CUDA_GRAPH"):
                    monkeypatch.delenv(flag, raising=False)
                if p != "ops":
                    monkeypatch.setenv("FUSEDNN_CUDA_PERSISTENT" if p == "persistent" else "FUSEDNN_CUDA_GRAPH", "1")
                fusednn.set_backend("cuda")
                fusednn.utils.set_random_seed(3)
                model = keras.Sequential([keras.layers.Dense(8, activation="tanh", input_shape=(5,)),
                                          keras.layers.Dense(2)])
                model.compile(make(), "mse")
                fusednn.utils.set_random_seed(4)
                h = model.fit(x, y, epochs=3, batch_size=7, verbose=0)
                assert model._fused.trainer.mode == (p if name == "schedule" else "ops")
                out[p] = (model.get_weights(), h.history["loss"])
            tol = 1e-4 if path == "persistent" else 1e-6
            assert max(rel_diff(a, b) for a, b in zip(out[path][0], out["ops"][0])) < tol
            np.testing.assert_allclose(out[path][1], out["ops"][1], rtol=tol)
    finally:
        fusednn.set_backend(prev)


@pytest.mark.parametrize("path", ["persistent", "graph"])
def test_regularized_and_weighted_fits_on_the_opt_in_paths(monkeypatch, path):
    """A kernel regularizer keeps a model off the persistent kernel (it trains on the per-op
    path); the graph path captures the penalty kernels with the rest. Sample weights with
    per-step penalty scales run uncaptured (graph) or on the per-op kernels (persistent):
    the same bits as the per-op path with SGD."""
    from fusednn import regularizers
    from fusednn.training import fused

    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, 5)).astype(np.float32)
    y = rng.standard_normal((N, 2)).astype(np.float32)
    scale = cp.asarray(rng.uniform(0, 2, N).astype(np.float32))
    out = {}
    prev = fusednn.get_backend().name
    try:
        for p in (path, "ops"):
            for flag in ("FUSEDNN_CUDA_PERSISTENT", "FUSEDNN_CUDA_GRAPH"):
                monkeypatch.delenv(flag, raising=False)
            if p == "persistent":
                monkeypatch.setenv("FUSEDNN_CUDA_PERSISTENT", "1")
            elif p == "graph":
                monkeypatch.setenv("FUSEDNN_CUDA_GRAPH", "1")
            fusednn.set_backend("cuda")
            fusednn.utils.set_random_seed(3)
            model = keras.Sequential([keras.layers.Dense(8, activation="tanh", input_shape=(5,),
                                                         kernel_regularizer=regularizers.L2(0.01)),
                                      keras.layers.Dense(2)])
            model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
            fusednn.utils.set_random_seed(4)
            h = model.fit(x, y, epochs=3, batch_size=7, verbose=0)
            assert model._fused.trainer.mode == ("ops" if p == "persistent" else p)
            tr = fused.trainer_for(model, 7)
            xd, yd = cp.asarray(x), cp.asarray(y)
            steps = -(-N // 7)
            for epoch in range(3):
                losses = cp.zeros(steps, cp.float32)
                tr.epoch(model, xd, yd, np.random.default_rng(epoch).permutation(N), losses, steps, None, False,
                         weights={"row_scale": scale, "penalty_scale": np.linspace(0.5, 1.5, steps).astype(np.float32)})
            out[p] = (model.get_weights(), h.history["loss"], cp.asnumpy(losses))
    finally:
        fusednn.set_backend(prev)
    (wa, la, sa), (wb, lb, sb) = out[path], out["ops"]
    for a, b in zip(wa, wb):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    np.testing.assert_allclose(sa, sb, rtol=1e-6)
