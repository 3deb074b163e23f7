"""A two-output functional model on the cpu backend: the fused trainer's heads
(fusednn/heads.h) against the same model on the per-op path, same run.

    python benchmarks/bench_multi_output.py [--epochs 20] [--repeats 5]

4096 samples x 32 features -> Dense(64, relu) -> Dense(64, relu), then two outputs:
Dense(1) with MSE and Dense(10, softmax) with sparse categorical cross-entropy
(loss_weights 0.5 / 1.0), Adam, batch 64. Three cases, their fits interleaved so that
the shared machine's load hits each alike: fused, per-op (``fused=False``) and, for
what the second head costs, the fused model with the softmax head alone. Times are
medians of ``--repeats`` fits of ``--epochs`` epochs each (after one warm-up fit of
each); the table also says whether fused and per-op gave the same history (they
should, bit for bit).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras

L = keras.layers


def build(fused: str | bool, heads: int = 2) -> keras.Model:
    fusednn.set_random_seed(0)
    inp = keras.Input(shape=(32,))
    h = L.Dense(64, activation="relu")(L.Dense(64, activation="relu")(inp))
    label = L.Dense(10, activation="softmax", name="label")(h)
    if heads == 1:
        model = keras.Model(inp, label)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", fused=fused)
    else:
        model = keras.Model(inp, [L.Dense(1, name="value")(h), label])
        model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[0.5, 1.0],
                      fused=fused)
    if fused == "auto":
        assert model.fused_reason is None, model.fused_reason
    return model


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
    cases = {"2 outputs, fused": ("auto", 2, y), "2 outputs, per-op": (False, 2, y),
             "softmax head alone, fused": ("auto", 1, y[1])}
    times: dict[str, list[float]] = {k: [] for k in cases}
    hist: dict[str, dict] = {}
    for r in range(args.repeats + 1):
        for name, (fused, heads, targets) in cases.items():
            model = build(fused, heads)
            fusednn.set_random_seed(1)
            t0 = time.perf_counter()
            hist[name] = model.fit(x, targets, epochs=args.epochs, batch_size=64, verbose=0).history
            if r:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["2 outputs, fused"]
    print(f"{'case':<28}{'s/fit':>9}{'ratio to fused':>16}")
    for k, v in med.items():
        print(f"{k:<28}{v:9.4f}{v / base:16.2f}")
    print(f"fused and per-op histories equal: {hist['2 outputs, fused'] == hist['2 outputs, per-op']}")
    print(f"python benchmarks/bench_multi_output.py --epochs {args.epochs} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
