"""fit time of a model with a regularized BatchNormalization, fused against per-op (cpu).

    python benchmarks/bench_norm_penalty.py [--epochs 10] [--repeats 5]

The model: 32 inputs -> Dense(64, relu) -> BatchNormalization(gamma_regularizer=L2(0.01))
-> Dense(64, relu) -> Dense(10, softmax), categorical cross-entropy, Adam; 4096 rows of
standard normals with random one-hot labels, batch 64. Fused: the gamma penalty is a step
penalty of the native trainer (fusednn/layer_steps.h); per-op: ``compile(fused=False)``,
the same kernels called layer by layer from Python. The fits are interleaved so that the
shared machine's load hits both alike; the table gives the median of ``--repeats`` fits
and the ratio to the fused time. The fused fit asserts ``fused_reason is None`` and both
fits end with the same loss (same kernels, same order), checked before timing counts.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras

L = keras.layers


def build(fused: bool | str) -> keras.Sequential:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32,)), L.Dense(64, activation="relu"),
                              L.BatchNormalization(gamma_regularizer=keras.regularizers.L2(0.01)),
                              L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", fused=fused)
    assert (model.fused_reason is None) == (fused == "auto"), model.fused_reason
    return model


def fit(fused: bool | str, x: np.ndarray, y: np.ndarray, epochs: int) -> tuple[float, float]:
    model = build(fused)
    keras.utils.set_random_seed(1)
    t0 = time.perf_counter()
    h = model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return time.perf_counter() - t0, h.history["loss"][-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    fusednn.set_backend("cpu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 32)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 4096)]
    times: dict[str, list[float]] = {"fused": [], "per-op": []}
    for _ in range(args.repeats):
        (tf, lf), (tp, lp) = fit("auto", x, y, args.epochs), fit(False, x, y, args.epochs)
        assert lf == lp, (lf, lp)  # the same numbers on both paths
        times["fused"].append(tf)
        times["per-op"].append(tp)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"32-64(BN, gamma L2)-64-10, 4096 rows, batch 64, {args.epochs} epochs, median of {args.repeats} fits (cpu)")
    print(f"{'case':<8} {'fit s':>8} {'ms/epoch':>9} {'ratio to fused':>15}")
    for k, v in med.items():
        print(f"{k:<8} {v:8.3f} {1e3 * v / args.epochs:9.2f} {v / med['fused']:15.2f}")


if __name__ == "__main__":
    main()
