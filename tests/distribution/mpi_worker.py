"""Run by tests/distribution/test_data_parallel.py under ``mpiexec -n N``: data-parallel fits of small
problems (and deliberate faults), with each rank's results written to OUT/rank<r>.npz.

    mpiexec -n 2 python tests/distribution/mpi_worker.py MODE OUT
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import fusednn
from fusednn import distribution

# (name, optimizer, loss, output units, output activation, samples, batch, metrics)
CASES = [
    ("sgd_mse", "sgd_momentum", "mse", 3, "linear", 101, 10, ["mae"]),
    ("adam_categorical", "adam", "categorical_crossentropy", 4, "softmax", 103, 16, ["accuracy"]),
    ("sgd_sparse", "sgd", "sparse_categorical_crossentropy", 4, "softmax", 97, 8, ["accuracy"]),
    ("adam_binary", "adam", "binary_crossentropy", 1, "sigmoid", 101, 10, ["accuracy", "precision"]),
    # weight penalties: every rank adds them, the rows/global_rows scaling counts them once
    ("sgd_mse_regularized", "sgd_momentum", "mse", 2, "linear", 99, 12, []),
    # clipping acts on the reduced (global-batch) gradient, after the allreduce
    ("adam_clipped", "adam_clipped", "categorical_crossentropy", 3, "softmax", 101, 20, []),
]
EPOCHS = 3


def data(units: int, loss: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(7)
    x = g.normal(size=(n, 5)).astype(np.float32)
    if loss == "mse":
        y = (x @ g.normal(size=(5, units))).astype(np.float32)
    elif loss == "binary_crossentropy":
        y = (x[:, :1] + 0.3 * g.normal(size=(n, 1)) > 0).astype(np.float32)
    else:
        labels = np.argmax(x[:, :units] + 0.5 * g.normal(size=(n, units)), axis=1)
        y = labels.reshape(-1, 1).astype(np.float32) if loss.startswith("sparse") else \
            np.eye(units, dtype=np.float32)[labels]
    return x, y


def fit_case(case: tuple, callbacks: list | None = None, verbose: int = 0, epochs: int = EPOCHS):
    """The model of ``case`` built from seed 3 and fit; returns (model, history)."""
    name, opt, loss, units, act, n, batch, metrics = case
    fusednn.utils.set_random_seed(3)
    reg = {"kernel_regularizer": fusednn.regularizers.L2(0.01), "bias_regularizer": fusednn.regularizers.L1(0.001)} \
        if name.endswith("_regularized") else {}
    model = fusednn.Sequential([fusednn.Input((5,)), fusednn.Dense(7, activation="tanh", **reg),
                                fusednn.Dense(6, activation="relu"), fusednn.Dense(units, activation=act, **reg)])
    optimizer = fusednn.optimizers.SGD(0.05, momentum=0.9) if opt == "sgd_momentum" else \
        fusednn.optimizers.SGD(0.1) if opt == "sgd" else \
        fusednn.optimizers.Adam(0.01, global_clipnorm=0.05) if opt == "adam_clipped" else fusednn.optimizers.Adam(0.01)
    model.compile(optimizer, loss, metrics=metrics)
    x, y = data(units, loss, n)
    history = model.fit(x, y, batch_size=batch, epochs=epochs, verbose=verbose, callbacks=callbacks)
    return model, history


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    timeout = float(os.environ.get("FUSEDNN_TEST_TIMEOUT", "30"))
    distribution.initialize()
    distribution.set_distribution(distribution.DataParallel(timeout=timeout))
    rank = distribution.process_id()
    if mode.startswith("gpu_"):  # one GPU per rank, NCCL between them (initialize picked the device)
        fusednn.set_backend("cuda")
        mode = mode[4:]
    if mode == "equivalence":
        results = {}
        for case in CASES:
            model, history = fit_case(case)
            for i, w in enumerate(model.get_weights()):
                results[f"{case[0]}/w{i}"] = w
            for k, v in history.history.items():
                results[f"{case[0]}/{k}"] = np.asarray(v)
        np.savez(os.path.join(out, f"rank{rank}.npz"), **results)
    elif mode == "side_effects":
        ckpt = fusednn.callbacks.ModelCheckpoint(os.path.join(out, f"ckpt_rank{rank}_{{epoch}}.npz"),
                                                 monitor="loss")
        model, _ = fit_case(CASES[0], callbacks=[ckpt], verbose=2, epochs=2)
        model.save(os.path.join(out, f"saved_rank{rank}.npz"))
        print(f"rank {rank} done", flush=True)
    elif mode in ("kill", "hang", "raise"):
        class Fault(fusednn.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1 and rank == 1:
                    if mode == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    elif mode == "hang":
                        time.sleep(600)
                    else:
                        raise ValueError("deliberate failure on rank 1")
        fit_case(CASES[0], callbacks=[Fault()], epochs=1000)
        print("fault worker finished (should not happen)", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
