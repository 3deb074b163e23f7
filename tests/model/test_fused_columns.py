"""Two replicas split by hidden units (``MlpTrainer.run(replicas=2)`` on a one-hidden-layer
model, csrc/cpu/train_columns.cpp): each task owns whole vectors of hidden units, their
weights and optimizer state; the few units left over are split by rows. Against one
replica the weights and losses agree to float32 rounding for every loss, optimizer,
penalty, bias setting, hidden width (with and without left-over units) and short or tiny
batches; the results are bit-identical whatever threads run the tasks and however a
fit is cut into native runs (the packed weights and optimizer state go back and forth
exactly); models it cannot split run on rows."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras, regularizers
from fusednn.training import fused
from helpers import REPLICA_LOSSES, cpu_backend_threads, replica_data

pytestmark = pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")

D, K = 17, 3
LOSSES = REPLICA_LOSSES


@pytest.fixture(autouse=True)
def _cpu_two_threads():
    with cpu_backend_threads(2):
        yield


def _data(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return replica_data(kind, n, D, K, seed)


def _model(kind: str, opt: str, hidden: int, act: str = "relu", l1: float = 0.0, l2: float = 0.0,
           bias: bool = True, layers: int = 1, inputs: int = D):
    loss, out = LOSSES[kind]
    reg = regularizers.L1L2(l1, l2) if (l1 or l2) else None
    stack = [keras.Input(shape=(inputs,))]
    for _ in range(layers):
        stack.append(keras.layers.Dense(hidden, activation=act, kernel_regularizer=reg, bias_regularizer=reg,
                                        use_bias=bias))
    stack.append(keras.layers.Dense(K, activation=out, kernel_regularizer=reg, use_bias=bias))
    model = keras.Sequential(stack)
    rng = np.random.default_rng(1)
    model.set_weights([rng.uniform(-0.4, 0.4, w.shape).astype(np.float32) for w in model.get_weights()])
    optimizer = {"adam": lambda: keras.optimizers.Adam(0.01),
                 "sgd": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                 "rmsprop": lambda: keras.optimizers.RMSprop(0.005, momentum=0.5, centered=True),
                 "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.05, amsgrad=True)}[opt]()
    model.compile(optimizer=optimizer, loss=loss)
    return model


def _train(model, x, y, batch: int, replicas: int, epochs: int = 2, chunk: int | None = None,
           stop_on_nonfinite: bool = False, sample_weight: np.ndarray | None = None):
    """``epochs`` fused epochs in fixed shuffled orders, each in native runs of ``chunk``
    steps (default: the whole epoch); (weights, step losses of the last epoch, steps run
    in it, trainer)."""
    n = x.shape[0]
    steps = -(-n // batch)
    tr = fused.trainer_for(model, batch)
    losses = np.zeros(steps, np.float32)
    done = 0
    for e in range(epochs):
        order = np.random.default_rng(10 + e).permutation(n).astype(np.int64)
        weights = None if sample_weight is None else {"row_scale": sample_weight[order].astype(np.float32),
                                                      "penalty_scale": np.ones(steps, np.float32)}
        done = tr.epoch(model, x, y, order, losses, chunk or steps, None, stop_on_nonfinite, weights=weights,
                        replicas=replicas)
    return model.get_weights(), losses, done, tr.trainer


CASES = [  # (loss, optimizer, hidden units, activation, L1, L2, bias, n, batch)
    ("categorical", "adam", 100, "relu", 0.0, 1e-3, True, 203, 40),     # 48 + 48 + 4 left over; short last batch
    ("sparse", "sgd", 64, "tanh", 0.0, 0.0, True, 161, 32),             # 32 + 32, none left over; last batch 1 row
    ("mse", "rmsprop", 50, "sigmoid", 1e-3, 1e-3, True, 97, 24),         # 24 + 24 + 2
    ("binary", "adamw", 37, "relu", 0.0, 1e-2, False, 120, 7),           # 16 + 16 + 5, no biases
    ("categorical", "adam", 100, "linear", 0.0, 0.0, True, 50, 1),       # batch 1: task 1 never has rows
    ("mse", "adam", 130, "relu", 0.0, 1e-3, True, 31, 3),                # 64 + 64 + 2; 2 + 1 rows
]


@pytest.mark.parametrize("kind,opt,hidden,act,l1,l2,bias,n,batch", CASES)
def test_columns_match_one_replica_to_float32_rounding(kind, opt, hidden, act, l1, l2, bias, n, batch):
    x, y = _data(kind, n)
    make = lambda: _model(kind, opt, hidden, act, l1, l2, bias)  # noqa: E731
    w1, loss1, d1, t1 = _train(make(), x, y, batch, 1)
    w2, loss2, d2, t2 = _train(make(), x, y, batch, 2)
    assert (t1.last_replicas, t2.last_replicas, t2.last_split) == (1, 2, "columns")
    assert d1 == d2 == len(loss1)
    for a, b, c in zip(w1, w2, make().get_weights()):
        assert not np.array_equal(a, c)  # it trained
        np.testing.assert_allclose(b, a, rtol=3e-5, atol=3e-6)
    np.testing.assert_allclose(loss2, loss1, rtol=3e-5, atol=1e-6)


def test_columns_are_bit_identical_whatever_runs_them_and_however_the_fit_is_cut():
    x, y = _data("categorical", 300)
    make = lambda: _model("categorical", "adam", 100, l2=1e-3)  # noqa: E731
    ref = _train(make(), x, y, 64, 2)
    assert ref[3].last_split == "columns"
    runs = [_train(make(), x, y, 64, 2),                # again
            _train(make(), x, y, 64, 2, chunk=1),       # one native run per step: state packed and back each time
            _train(make(), x, y, 64, 2, chunk=2)]
    fusednn.set_num_threads(1)                          # the caller runs both tasks
    runs.append(_train(make(), x, y, 64, 2))
    for other in runs:
        for a, b in zip(ref[0], other[0]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ref[1], other[1])


def test_a_nonfinite_loss_stops_at_its_step_as_one_replica_does():
    x, y = _data("mse", 160)
    x[70:80] = 1e30  # the rows of some step overflow
    results = []
    for replicas in (1, 2):
        model = _model("mse", "sgd", 64)
        _, losses, done, tr = _train(model, x, y, 16, replicas, epochs=1, stop_on_nonfinite=True)
        results.append((done, np.isfinite(losses[:done]).tolist()))
    assert tr.last_split == "columns"
    assert results[0] == results[1]
    done, finite = results[1]
    assert done < 10 and not finite[-1]  # stopped early, where one replica stops


@pytest.mark.parametrize("why", ["two hidden layers", "narrow", "gelu", "sample weights", "few inputs"])
def test_models_columns_cannot_split_run_on_rows(why):
    x, y = _data("categorical", 120)
    if why == "few inputs":
        x = np.ascontiguousarray(x[:, :15])
    model = {"two hidden layers": lambda: _model("categorical", "adam", 64, layers=2),
             "narrow": lambda: _model("categorical", "adam", 31),
             "gelu": lambda: _model("categorical", "adam", 64, act="gelu"),
             "sample weights": lambda: _model("categorical", "adam", 64),
             "few inputs": lambda: _model("categorical", "adam", 64, inputs=15)}[why]()
    sw = np.linspace(0.5, 1.5, 120) if why == "sample weights" else None
    _, _, _, tr = _train(model, x, y, 40, 2, epochs=1, sample_weight=sw)
    assert (tr.last_replicas, tr.last_split) == (2, "rows")
