"""A two-output functional model on the cpu backend: the fused trainer's heads
(fusednn/heads.h) against the same model on the per-op path, same run.

    python benchmarks/bench_multi_output.py [--epochs 20] [--repeats 5]

4096 samples x 32 features -> Dense(64, relu) -> Dense(64, relu), then two outputs:
Dense(1) with MSE and Dense(10, softmax) with sparse categorical cross-entropy
(loss_weights 0.5 / 1.0), Adam, batch 64. Times are medians of ``--repeats`` fits of
``--epochs`` epochs each (after one warm-up fit of each); the row also checks that
both paths gave the same history (they should, bit for bit).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras

L = keras.layers


def two_heads(fused: str | bool) -> keras.Model:
    fusednn.set_random_seed(0)
    inp = keras.Input(shape=(32,))
    h = L.Dense(64, activation="relu")(L.Dense(64, activation="relu")(inp))
    model = keras.Model(inp, [L.Dense(1, name="value")(h), L.Dense(10, activation="softmax", name="label")(h)])
    model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[0.5, 1.0],
                  fused=fused)
    return model


def timed(fused: str | bool, x, y, epochs: int, repeats: int) -> tuple[float, dict]:
    times, hist = [], None
    for r in range(repeats + 1):
        model = two_heads(fused)
        if fused == "auto":
            assert model.fused_reason is None, model.fused_reason
        fusednn.set_random_seed(1)
        t0 = time.perf_counter()
        hist = model.fit(x, y, epochs=epochs, batch_size=64, verbose=0).history
        if r:  # the first fit warms up
            times.append(time.perf_counter() - t0)
    return statistics.median(times), hist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    fusednn.set_backend("cpu")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 32)).astype(np.float32)
    w = rng.normal(size=(32, 10))
    y = [(np.sin(x @ w[:, 0]) + 0.1 * x[:, 1]).astype(np.float32), (x @ w).argmax(1)]
    t, h = timed("auto", x, y, args.epochs, args.repeats)
    t_ref, h_ref = timed(False, x, y, args.epochs, args.repeats)
    print(f"{'measured':<22}{'s/fit':>9}  {'reference':<22}{'s/fit':>9}  {'speed-up':>8}  same history")
    print(f"{'2 outputs, fused':<22}{t:9.4f}  {'2 outputs, per-op':<22}{t_ref:9.4f}  {t_ref / t:7.2f}x  {h == h_ref}")
    print(f"python benchmarks/bench_multi_output.py --epochs {args.epochs} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
