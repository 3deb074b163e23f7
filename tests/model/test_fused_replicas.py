"""Two data-parallel replicas in the fused CPU trainer (``MlpTrainer.run(replicas=2)``,
csrc/cpu/train_replicas.cpp): each step's rows split in two halves whose gradients are
summed in a fixed order. Against one replica the weights agree to float32 rounding for
every loss, optimizer, sample weights, penalties and short or tiny batches; the results
are bit-identical whichever threads run the replicas (one thread, two, a busy pool,
another Python thread at once, a forked child), so fits stay deterministic."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fusednn
from fusednn import constraints, keras, regularizers
from fusednn.training import fused
from helpers import REPLICA_LOSSES, cpu_backend_threads, replica_data

pytestmark = pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")

D, H, K = 7, 12, 3
LOSSES = REPLICA_LOSSES


@pytest.fixture(autouse=True)
def _cpu_two_threads():
    with cpu_backend_threads(2):
        yield


def _data(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return replica_data(kind, n, D, K, seed)


def _model(kind: str, opt: str, l2: float, hidden: str = "tanh", weights: list | None = None, **dense):
    loss, out = LOSSES[kind]
    reg = regularizers.L2(l2) if l2 else None
    model = keras.Sequential([keras.Input(shape=(D,)),
                              keras.layers.Dense(H, activation=hidden, kernel_regularizer=reg, **dense),
                              keras.layers.Dense(K, activation=out, kernel_regularizer=reg)])
    if weights is None:
        rng = np.random.default_rng(1)
        weights = [rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(weights)
    optimizer = keras.optimizers.Adam(0.01) if opt == "adam" else \
        keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    model.compile(optimizer=optimizer, loss=loss)
    return model


def _train(model, x, y, batch: int, replicas: int, epochs: int = 2, sample_weight: np.ndarray | None = None,
           stop_on_nonfinite: bool = False) -> tuple[list[np.ndarray], np.ndarray, int, object]:
    """``epochs`` fused epochs in a fixed shuffled order; (weights, step losses of the
    last epoch, steps run in it, trainer)."""
    n = x.shape[0]
    steps = -(-n // batch)
    tr = fused.trainer_for(model, batch)
    losses = np.zeros(steps, np.float32)
    done = 0
    for e in range(epochs):
        order = np.random.default_rng(10 + e).permutation(n).astype(np.int64)
        weights = None
        if sample_weight is not None:
            weights = {"row_scale": sample_weight[order].astype(np.float32),
                       "penalty_scale": np.linspace(0.5, 1.5, steps).astype(np.float32)}
        done = tr.epoch(model, x, y, order, losses, steps, None, stop_on_nonfinite, weights=weights,
                        replicas=replicas)
    return model.get_weights(), losses, done, tr.trainer


CASES = [  # (loss, optimizer, L2, sample weights, n, batch)
    ("mse", "adam", 0.0, False, 203, 40),           # short last batch (3 rows: 2 + 1)
    ("categorical", "adam", 0.01, False, 200, 50),
    ("sparse", "sgd", 0.0, True, 161, 32),          # last batch of 1 row: replica 1 empty
    ("binary", "sgd", 0.02, True, 97, 24),
    ("mse", "sgd", 0.01, True, 50, 1),              # batch 1: replica 1 always empty
    ("categorical", "adam", 0.0, True, 31, 3),      # 2 + 1 rows, last batch 1 row
]


@pytest.mark.parametrize("kind,opt,l2,weighted,n,batch", CASES)
def test_two_replicas_match_one_to_float32_rounding(kind, opt, l2, weighted, n, batch):
    x, y = _data(kind, n)
    sw = np.random.default_rng(3).uniform(0.0, 2.0, n) if weighted else None
    w1, l1, d1, t1 = _train(_model(kind, opt, l2), x, y, batch, 1, sample_weight=sw)
    w2, l2_, d2, t2 = _train(_model(kind, opt, l2), x, y, batch, 2, sample_weight=sw)
    assert (t1.last_replicas, t2.last_replicas) == (1, 2)
    assert d1 == d2 == len(l1)
    w0 = _model(kind, opt, l2).get_weights()
    for a, b, c in zip(w1, w2, w0):
        assert not np.array_equal(a, c)  # it trained
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(l2_, l1, rtol=2e-5, atol=1e-7)


def test_replicas_are_deterministic_whatever_thread_runs_them():
    x, y = _data("categorical", 300)
    ref = _train(_model("categorical", "adam", 0.01), x, y, 64, 2)
    again = _train(_model("categorical", "adam", 0.01), x, y, 64, 2)
    fusednn.set_num_threads(1)  # the caller runs both replicas: the same arithmetic
    alone = _train(_model("categorical", "adam", 0.01), x, y, 64, 2)
    for other in (again, alone):
        for a, b in zip(ref[0], other[0]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ref[1], other[1])


def test_two_python_threads_at_once_give_the_sequential_results():
    """One thread's run holds the pool; the other's replicas then run on its own thread.
    Neither may hang, and both give exactly the results of running alone."""
    x, y = _data("mse", 500)
    ref = _train(_model("mse", "adam", 0.01), x, y, 64, 2, epochs=20)[0]
    results: dict[int, list] = {}

    def fit(i: int) -> None:
        results[i] = _train(_model("mse", "adam", 0.01), x, y, 64, 2, epochs=20)[0]

    threads = [threading.Thread(target=fit, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a fused run with replicas hung"
    for i in range(2):
        for a, b in zip(ref, results[i]):
            np.testing.assert_array_equal(a, b)


def _fit_in_child(queue) -> None:
    fusednn.set_backend("cpu")
    fusednn.set_num_threads(2)
    x, y = _data("mse", 500)
    queue.put(_train(_model("mse", "adam", 0.01), x, y, 64, 2, epochs=5)[0])


def test_replicas_after_fork():
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    x, y = _data("mse", 500)
    ref = _train(_model("mse", "adam", 0.01), x, y, 64, 2, epochs=5)[0]  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fit_in_child, args=(queue,))
    proc.start()
    got = queue.get(timeout=120)
    proc.join(timeout=30)
    assert proc.exitcode == 0
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)


def test_a_nonfinite_loss_stops_both_replicas_at_its_step():
    x, y = _data("mse", 200)
    order_first = np.random.default_rng(10).permutation(200)
    x[order_first[130]] = np.inf  # step 2 of the first epoch (batch 64), replica 0's half
    ends = []
    for replicas in (1, 2):
        _, losses, done, _ = _train(_model("mse", "adam", 0.0), x, y, 64, replicas, epochs=1, stop_on_nonfinite=True)
        assert done == 3 and not np.isfinite(losses[2]) and np.isfinite(losses[:2]).all()
        ends.append(losses[:2])
    np.testing.assert_allclose(ends[1], ends[0], rtol=2e-5)


def test_models_the_replicas_cannot_split_run_one():
    x, y = _data("mse", 128)
    model = _model("mse", "adam", 0.0, kernel_constraint=constraints.MaxNorm(1.0))
    assert fused.trainer_for(model, 64).trainer.replicas_ineligible() == "a weight constraint"
    _, _, done, trainer = _train(model, x, y, 64, 2, epochs=1)
    assert done == 2 and trainer.last_replicas == 1
    # compiled metrics accumulate in the run: one replica
    model = _model("mse", "adam", 0.0)
    tr = fused.trainer_for(model, 64)
    assert tr.trainer.replicas_ineligible() is None
    sums = np.zeros(2, np.float64)
    tr.metrics = {"counts": None, "classes": 0, "sparse": False, "threshold": 0.5, "sums": sums}
    tr.epoch(model, x, y, np.arange(128, dtype=np.int64), np.zeros(2, np.float32), 2, None, False, replicas=2)
    assert tr.trainer.last_replicas == 1 and sums[1] > 0


def test_bad_replicas_is_rejected():
    model = _model("mse", "adam", 0.0)
    tr = fused.trainer_for(model, 8)
    x, y = _data("mse", 16)
    with pytest.raises(ValueError, match="replicas must be 1 or 2"):
        tr.trainer.run(x, y, np.arange(16, dtype=np.int64), None, None, np.zeros(2, np.float32), 0, 2, 0,
                       step_params=model.optimizer.step_params(0, 2), replicas=3)


def test_sklearn_estimators_use_replicas_deterministically(monkeypatch):
    from sklearn.datasets import load_digits

    from fusednn.sklearn import MLPClassifier
    x, y = load_digits(return_X_y=True)
    x = x[:600] / 16.0
    monkeypatch.setattr(fused, "REPLICAS_ENABLED", False)
    assert MLPClassifier(random_state=0, max_iter=1).fit(x, y[:600])._trainer.trainer.last_replicas == 1  # (off)
    monkeypatch.setattr(fused, "REPLICAS_ENABLED", True)
    fits = [MLPClassifier(random_state=0, max_iter=3).fit(x, y[:600]) for _ in range(2)]
    assert fits[0]._trainer.trainer.last_replicas == 2
    for a, b in zip(fits[0].coefs_, fits[1].coefs_):
        np.testing.assert_array_equal(a, b)
    fusednn.set_num_threads(1)  # one thread: one replica, the same fit up to float32 rounding
    one = MLPClassifier(random_state=0, max_iter=3).fit(x, y[:600])
    assert one._trainer.trainer.last_replicas == 1
    for a, b in zip(fits[0].coefs_, one.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_joblib_workers_thread_limit_is_honoured():
    """joblib's process workers (GridSearchCV(n_jobs=2)) get OMP_NUM_THREADS=cores/n_jobs:
    the pool takes it as its default, so such fits do not run replicas on busy cores."""
    env = {k: v for k, v in os.environ.items() if k != "FUSEDNN_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-c", "import fusednn; print(fusednn.get_num_threads())"],
                       env={**env, "OMP_NUM_THREADS": "1,1"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
