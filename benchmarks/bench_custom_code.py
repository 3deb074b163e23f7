"""What custom Python code (keras.ops, differentiated by fusednn.autodiff) costs in ``fit``,
against the built-in equivalent on the same run: an MLP (800 x 5 -> Dense(32, relu) -> Dense(1),
Adam, batch 32, the size of tests/keras_scripts/scripts/s33_custom_loss_ops.py) trained

- with ``loss='mse'`` in the fused trainer (the reference) and on the per-op path,
- with the same MSE written as a function with keras.ops (per-op path, autodiff gradient),
- with a custom Dense-like layer (``build``/``add_weight``/``call``) in place of the first Dense.

    python benchmarks/bench_custom_code.py [--epochs 10] [--repeats 5] [--backend cpu]

Times are medians of ``--repeats`` fits, in ms per epoch; ratios are against the fused run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras
from fusednn.keras import ops


def mse_ops(y_true, y_pred):
    return ops.mean(ops.square(y_pred - y_true), axis=-1)


class LinearLayer(keras.layers.Layer):
    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.act = units, activation

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="kernel")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs):
        y = ops.matmul(inputs, self.w) + self.b
        return ops.relu(y) if self.act == "relu" else y


def _fit_ms(first, loss, fused, x, y, epochs, repeats):
    times = []
    for r in range(repeats):
        keras.utils.set_random_seed(r)
        m = keras.Sequential([keras.Input(shape=(5,)), first(), keras.layers.Dense(1)])
        m.compile(optimizer="adam", loss=loss, fused=fused)
        t = time.perf_counter()
        m.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        times.append((time.perf_counter() - t) / epochs * 1e3)
    return statistics.median(times), m.fused_reason


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="cpu")
    a = ap.parse_args()
    fusednn.set_backend(a.backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((800, 5)).astype(np.float32)
    y = (x @ rng.standard_normal((5, 1))).astype(np.float32)
    dense = lambda: keras.layers.Dense(32, activation="relu")  # noqa: E731
    custom = lambda: LinearLayer(32, activation="relu")  # noqa: E731
    rows = [("Dense, 'mse', fused", dense, "mse", "auto"),
            ("Dense, 'mse', per-op", dense, "mse", False),
            ("Dense, keras.ops mse function", dense, mse_ops, "auto"),
            ("custom layer, 'mse'", custom, "mse", "auto"),
            ("custom layer, keras.ops mse function", custom, mse_ops, "auto")]
    results = [(name, *_fit_ms(first, loss, fused, x, y, a.epochs, a.repeats)) for name, first, loss, fused in rows]
    base = results[0][1]
    print(f"backend {a.backend}, 800 samples, batch 32, {a.epochs} epochs, median of {a.repeats} fits")
    print(f"{'model':40s} {'ms/epoch':>9s} {'x fused':>8s}  path")
    for name, ms, reason in results:
        print(f"{name:40s} {ms:9.2f} {ms / base:8.1f}  {'fused' if reason is None else 'per-op'}")
    print(f"command: python benchmarks/bench_custom_code.py --epochs {a.epochs} --repeats {a.repeats} "
          f"--backend {a.backend}")


if __name__ == "__main__":
    main()
