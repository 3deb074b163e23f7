"""Fused training time of the brief's MLP (10 -> 64 -> 64 -> 1, Adam, 1000 samples,
batch 32, 20 epochs) on the cpu backend with each hidden activation (loss mse) and
each regression loss (relu hidden layers, metrics=['mae']), as a ratio to relu/mse
measured in the same run (median of 5 fits each). Checks that every run is fused and
its final loss finite before reporting a time.

    python benchmarks/bench_fit_activations_losses.py
"""
from __future__ import annotations

import time

import numpy as np

import fusednn
from fusednn import keras


def fit_time(act: str, loss: str, x: np.ndarray, y: np.ndarray, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        fusednn.utils.set_random_seed(0)
        model = keras.Sequential([keras.layers.Dense(64, activation=act, input_shape=(10,)),
                                  keras.layers.Dense(64, activation=act), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss=loss, metrics=["mae"])
        t = time.perf_counter()
        hist = model.fit(x, y, epochs=20, verbose=0)
        times.append(time.perf_counter() - t)
        assert model.fused_reason is None, model.fused_reason
        assert np.isfinite(hist.history["loss"][-1]), (act, loss)
    return float(np.median(times))


def main() -> None:
    fusednn.set_backend("cpu")
    rng = np.random.default_rng(0)
    x, y = rng.random((1000, 10)), rng.random((1000, 1))
    print("hidden activation (loss mse)      ms   ratio to relu")
    base = fit_time("relu", "mse", x, y)
    for act in ["relu", "tanh", "elu", "selu", "leaky_relu", "gelu", "gelu_tanh", "swish", "mish", "softplus",
                "hard_swish"]:
        t = base if act == "relu" else fit_time(act, "mse", x, y)
        print(f"  {act:<28}{t * 1e3:8.1f}  {t / base:6.2f}x")
    print("loss (relu hidden layers)         ms   ratio to mse")
    for loss in ["mse", "mae", "mape", "msle", "huber", "log_cosh"]:
        t = base if loss == "mse" else fit_time("relu", loss, x, y)
        print(f"  {loss:<28}{t * 1e3:8.1f}  {t / base:6.2f}x")


if __name__ == "__main__":
    main()
