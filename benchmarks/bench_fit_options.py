"""Does adding metrics, sample weights or a learning-rate callback keep the fused speed?

The brief's program (Dense 64-64-1 on 1000x10, Adam, MSE, batch 32) fitted for
``--epochs`` epochs on the cpu backend, plain and with options, in the same run;
each variant's median of ``--repeats`` fits, and its ratio to the plain fit.
Run: ``python benchmarks/bench_fit_options.py``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras


def _decay():
    return keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=100, decay_rate=0.96))


def fit_time(epochs: int, metrics=None, weighted=False, callbacks=None, optimizer=None) -> float:
    rng = np.random.default_rng(0)
    x, y = rng.random((1000, 10)), rng.random((1000, 1))
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Dense(64, activation="relu", input_shape=(10,)),
                          keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    m.compile(optimizer=optimizer() if optimizer else "adam", loss="mean_squared_error", metrics=metrics)
    assert m.fused_reason is None, m.fused_reason
    w = rng.random(1000) if weighted else None
    t = time.perf_counter()
    m.fit(x, y, epochs=epochs, verbose=0, sample_weight=w, callbacks=callbacks)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    fusednn.set_backend("cpu")
    variants = {
        "plain": {},
        "metrics=['mae', RootMeanSquaredError()]": {"metrics": ["mae", keras.metrics.RootMeanSquaredError()]},
        "sample_weight": {"weighted": True},
        "LearningRateScheduler": {"callbacks": [keras.callbacks.LearningRateScheduler(lambda e, lr: lr * 0.99)]},
        "all three": {"metrics": ["mae", keras.metrics.RootMeanSquaredError()], "weighted": True,
                      "callbacks": [keras.callbacks.LearningRateScheduler(lambda e, lr: lr * 0.99)]},
        # the target: metrics + ExponentialDecay + sample_weight, within 1.3x of plain
        "metrics + ExponentialDecay + sample_weight": {
            "metrics": ["mae", keras.metrics.RootMeanSquaredError()], "weighted": True, "optimizer": _decay},
        # metric objects with kernels of their own (fused), weighted
        "R2Score + MAPE + sample_weight": {
            "metrics": [keras.metrics.R2Score(), keras.metrics.MeanAbsolutePercentageError()], "weighted": True},
    }
    fit_time(2)  # warm up
    times = {k: [] for k in variants}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
        for k, kw in variants.items():
            times[k].append(fit_time(args.epochs, **kw))
    base = statistics.median(times["plain"])
    print(f"python benchmarks/bench_fit_options.py --epochs {args.epochs} --repeats {args.repeats}")
    print(f"cpu backend, {args.epochs} epochs of 1000x10 -> 64-64-1, batch 32; median of {args.repeats}")
    print(f"{'variant':45s} {'seconds':>8s} {'ratio':>6s}")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"{k:45s} {med:8.3f} {med / base:6.2f}")


if __name__ == "__main__":
    main()
