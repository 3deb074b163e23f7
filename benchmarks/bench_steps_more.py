"""The fused cpu trainer's act_param/softmax/Gaussian noise steps in fit, same run:
1000 x 10 -> Dense(64) -> LeakyReLU -> GaussianDropout(0.2) -> Dense(64) -> ELU ->
GaussianNoise(0.1) -> Dense(16) -> Softmax -> Dense(1), Adam, batch 32, fused (steps in the
native trainer) against per-op (``fused=False``, the same kernels called from Python).
Times are medians of ``--repeats`` fits of ``--epochs`` epochs, the cases interleaved.

    python benchmarks/bench_steps_more.py [--epochs 5] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras

L = keras.layers


def fit_seconds(fused: bool | str, epochs: int, x: np.ndarray, y: np.ndarray) -> float:
    keras.utils.set_random_seed(0)
    m = keras.Sequential([L.Dense(64, input_shape=(10,)), L.LeakyReLU(), L.GaussianDropout(0.2, seed=1),
                          L.Dense(64), L.ELU(), L.GaussianNoise(0.1, seed=2), L.Dense(16), L.Softmax(), L.Dense(1)])
    m.compile("adam", "mse", fused=fused)
    assert (m.fused_reason is None) == (fused == "auto"), m.fused_reason
    t0 = time.perf_counter()
    m.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    fusednn.set_backend("cpu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 10)).astype(np.float32)
    y = x[:, :1] * 2 - x[:, 1:2]
    times: dict[str, list[float]] = {"fused": [], "per-op": []}
    for _ in range(args.repeats):
        times["fused"].append(fit_seconds("auto", args.epochs, x, y))
        times["per-op"].append(fit_seconds(False, args.epochs, x, y))
    med = {k: statistics.median(v) / args.epochs * 1e3 for k, v in times.items()}
    print(f"ms/epoch (median of {args.repeats}): fused {med['fused']:.2f}, per-op {med['per-op']:.2f} "
          f"(per-op / fused = {med['per-op'] / med['fused']:.2f})")


if __name__ == "__main__":
    main()
