"""What a layer costs in fit on the cpu backend, fused against per-op, same run.

    python benchmarks/bench_fused_models.py [MODEL ...] [--epochs 10] [--repeats 11]

Each MODEL (default: all) is a small Keras model built around one feature of the fused
trainer. It is fitted three ways, the fits interleaved so that the shared machine's load
hits every case alike: fused (the feature as a step of the native trainer), per-op
(``fused=False``: the same kernels called from Python, layer by layer) and, where there
is one, a plain fused model without the feature (what the feature itself costs). Data:
1000 x 10 standard normals, a linear target (times 3), Adam, MSE, batch 32. The table
gives the median ms per epoch over ``--repeats`` fits and the ratio to the fused time.
Each fused fit asserts ``fused_reason is None`` so a silent fall-back to per-op cannot
pass for a fused time.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import numpy as np

import fusednn
from fusednn import keras

L = keras.layers


def _mlp(*hidden: Any) -> list[Any]:
    """Dense(64) blocks, each followed by the given layers (a callable makes fresh ones)."""
    out: list[Any] = [keras.Input((10,))]
    for make in hidden:
        out += make()
    return out + [L.Dense(1)]


MODELS: dict[str, tuple[str, Callable[[], list[Any]], Callable[[], list[Any]] | None]] = {
    # name: (what it measures, the model's layers, the plain baseline's layers or None)
    "layernorm": ("Dense(64, relu) -> LayerNormalization, twice",
                  lambda: _mlp(*[lambda: [L.Dense(64, activation="relu"), L.LayerNormalization()]] * 2),
                  lambda: _mlp(*[lambda: [L.Dense(64, activation="relu")]] * 2)),
    "prelu": ("Dense(64) -> PReLU, twice",
              lambda: _mlp(*[lambda: [L.Dense(64), L.PReLU()]] * 2),
              lambda: _mlp(*[lambda: [L.Dense(64, activation="relu")]] * 2)),
    "steps_more": ("Dense(64) -> LeakyReLU -> GaussianDropout(0.2); Dense(64) -> ELU -> GaussianNoise(0.1); "
                   "Dense(16) -> Softmax",
                   lambda: _mlp(lambda: [L.Dense(64), L.LeakyReLU(), L.GaussianDropout(0.2, seed=1)],
                                lambda: [L.Dense(64), L.ELU(), L.GaussianNoise(0.1, seed=2)],
                                lambda: [L.Dense(16), L.Softmax()]),
                   None),
    "constraints": ("Dense(64, relu, kernel_constraint=MaxNorm(2)), twice, and the output likewise",
                    lambda: [keras.Input((10,)), *[L.Dense(64, activation="relu", kernel_constraint="max_norm")
                                                   for _ in range(2)], L.Dense(1, kernel_constraint="max_norm")],
                    lambda: _mlp(*[lambda: [L.Dense(64, activation="relu")]] * 2)),
}


def fit_seconds(layers: list[Any], fused: bool | str, epochs: int, x: np.ndarray, y: np.ndarray) -> float:
    model = keras.Sequential(layers)
    model.compile("adam", "mse", fused=fused)
    assert (model.fused_reason is None) == (fused == "auto"), model.fused_reason
    t0 = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return time.perf_counter() - t0


def bench(name: str, epochs: int, repeats: int, x: np.ndarray, y: np.ndarray) -> None:
    what, build, plain = MODELS[name]
    cases: dict[str, tuple[Callable[[], list[Any]], bool | str]] = {"fused": (build, "auto"), "per-op": (build, False)}
    if plain is not None:
        cases["fused, without it"] = (plain, "auto")
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, (make, fused) in cases.items():
            keras.utils.set_random_seed(0)
            times[k].append(fit_seconds(make(), fused, epochs, x, y))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{name}: {what}")
    print(f"{'case':<18} {'ms/epoch':>10} {'ratio to fused':>15}")
    for k, v in med.items():
        print(f"{k:<18} {1000 * v / epochs:>10.3f} {v / med['fused']:>15.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help=f"any of {', '.join(MODELS)} (default: all)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args()
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    fusednn.set_backend("cpu")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 10)).astype(np.float32)
    y = (x @ rng.normal(size=(10, 1)) * 3).astype(np.float32)
    for name in args.models or MODELS:
        bench(name, args.epochs, args.repeats, x, y)
    print("\ncommand: python benchmarks/bench_fused_models.py", *args.models, f"--epochs {args.epochs} --repeats "
          f"{args.repeats}")


if __name__ == "__main__":
    main()
