"""What Keras weight constraints cost in fit, on the cpu backend, same run: the brief's
MLP (1000 x 10 -> Dense(64, relu) -> Dense(64, relu) -> Dense(1), Adam, batch 32) with
``kernel_constraint=MaxNorm(2)`` on every Dense, fused against per-op (``fused=False``),
and against the same model without constraints (fused). Times are medians of
``--repeats`` fits of ``--epochs`` epochs.

    python benchmarks/bench_constraints.py [--epochs 10] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras


def fit_seconds(constraint: str | None, fused: bool | str, epochs: int, x: np.ndarray, y: np.ndarray) -> float:
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Dense(64, activation="relu", input_shape=(10,), kernel_constraint=constraint),
                          keras.layers.Dense(64, activation="relu", kernel_constraint=constraint),
                          keras.layers.Dense(1, kernel_constraint=constraint)])
    m.compile("adam", "mse", fused=fused)
    t0 = time.perf_counter()
    m.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    seconds = time.perf_counter() - t0
    if constraint is not None:  # the constraint held (checked outside the timing)
        assert all(np.linalg.norm(w.astype(np.float64), axis=0).max() <= 2 * (1 + 1e-6) for w in m.get_weights()[::2])
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    fusednn.set_backend("cpu")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 10)).astype(np.float32)
    y = (x @ rng.normal(size=(10, 1)) * 3).astype(np.float32)
    cases = {"fused, max_norm": ("max_norm", "auto"), "per-op, max_norm": ("max_norm", False),
             "fused, none": (None, "auto")}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):  # interleaved, so machine load hits every case alike
        for k, (c, f) in cases.items():
            times[k].append(fit_seconds(c, f, args.epochs, x, y))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["fused, max_norm"]
    print(f"{'case':<20} {'ms/epoch':>10} {'ratio to fused max_norm':>24}")
    for k, v in med.items():
        print(f"{k:<20} {1000 * v / args.epochs:>10.3f} {v / base:>24.2f}")
    print(f"command: python benchmarks/bench_constraints.py --epochs {args.epochs} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
