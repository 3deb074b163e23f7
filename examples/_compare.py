"""Shared by the real-data examples: time a training run and print fusednn's test
metrics beside scikit-learn's MLP trained with the same hidden sizes, epochs, batch
size and Adam learning rate, on the same split."""
from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable

import numpy as np

import fusednn


def options(default_epochs: int) -> argparse.Namespace:
    """--backend, --epochs, --seed; selects the backend."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default=None, help="numpy, cpu or cuda (default: the fastest available)")
    ap.add_argument("--epochs", type=int, default=default_epochs)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.backend:
        fusednn.set_backend(args.backend)
    return args


def timed(train: Callable[[], object]) -> float:
    """Wall-clock seconds of ``train()``."""
    t0 = time.perf_counter()
    train()
    return time.perf_counter() - t0


def sklearn_mlp(kind: str, hidden: tuple[int, ...], epochs: int, batch: int, lr: float, seed: int):
    """scikit-learn's MLP with the same settings, made to run every epoch (no early stop)."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = MLPClassifier if kind == "classification" else MLPRegressor
    return cls(hidden_layer_sizes=hidden, solver="adam", learning_rate_init=lr, batch_size=batch,
               max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1, random_state=seed)


def fit_sklearn(model, x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": max_iter is the epoch count here
        return timed(lambda: model.fit(x, y))


def report(title: str, rows: list[tuple[str, dict[str, float], float]], targets: str) -> None:
    """rows: (implementation, {metric: value}, fit seconds)."""
    names = list(rows[0][1])
    print(title)
    print(f"{'':<24}" + "".join(f"{n:>12}" for n in names) + f"{'fit time':>12}")
    for impl, vals, secs in rows:
        print(f"{impl:<24}" + "".join(f"{vals[n]:>12.4f}" for n in names) + f"{secs:>11.3f}s")
    print(f"targets: {targets}")
