"""LayerNormalization in fit on the cpu backend, same run: 1000 x 10 -> Dense(64, relu) ->
LayerNormalization -> Dense(64, relu) -> LayerNormalization -> Dense(1), Adam, batch 32,
fused (a layernorm step in the native trainer) against per-op (``fused=False``), and
against the same model without the LayerNormalizations (fused). Times are medians of
``--repeats`` fits of ``--epochs`` epochs, the cases interleaved.

    python benchmarks/bench_layernorm.py [--epochs 10] [--repeats 11]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras


def fit_seconds(norm: bool, fused: bool | str, epochs: int, x: np.ndarray, y: np.ndarray) -> float:
    keras.utils.set_random_seed(0)
    L = keras.layers
    body = [L.Dense(64, activation="relu", input_shape=(10,)), *([L.LayerNormalization()] if norm else []),
            L.Dense(64, activation="relu"), *([L.LayerNormalization()] if norm else [])]
    m = keras.Sequential([*body, L.Dense(1)])
    m.compile("adam", "mse", fused=fused)
    assert (m.fused_reason is None) == (fused == "auto"), m.fused_reason
    t0 = time.perf_counter()
    m.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args()
    fusednn.set_backend("cpu")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 10)).astype(np.float32)
    y = (x @ rng.normal(size=(10, 1)) * 3).astype(np.float32)
    cases = {"fused, LN": (True, "auto"), "per-op, LN": (True, False), "fused, no LN": (False, "auto")}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for k, (n, f) in cases.items():
            times[k].append(fit_seconds(n, f, args.epochs, x, y))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["fused, LN"]
    print(f"{'case':<14} {'ms/epoch':>10} {'ratio to fused LN':>19}")
    for k, v in med.items():
        print(f"{k:<14} {1000 * v / args.epochs:>10.3f} {v / base:>19.2f}")
    print(f"command: python benchmarks/bench_layernorm.py --epochs {args.epochs} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
