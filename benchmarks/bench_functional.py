"""Functional models on the cpu backend: the wide & deep graph (a Concatenate of the
input and a hidden layer) in the fused trainer against the same model on the per-op
path, and a chain functional model against the equivalent Sequential, same run.

    python benchmarks/bench_functional.py [--epochs 10] [--repeats 5]

Wide & deep: 2000 samples x 8 features -> Dense(30, relu) -> Dense(30, relu);
Concatenate([input, hidden]) -> Dense(1); MSE, Adam, batch 32 (the model of
tests/keras_scripts/scripts/s11_functional_wide_deep.py). Times are medians of
``--repeats`` fits of ``--epochs`` epochs each (after one warm-up fit); every row also
checks that the compared runs gave the same final loss.

Two-input wide & deep (issue 11, several inputs in the fused trainer): 4096 samples of a
16-feature "wide" input and an 8-feature "deep" input; deep -> Dense(64, relu) ->
Dense(64, relu); Concatenate([wide, hidden]) -> Dense(1); MSE, Adam, batch 64,
``--two-input-epochs`` epochs (20), fused against per-op, median of ``--repeats``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras

L = keras.layers


def wide_deep(fused: str | bool) -> keras.Model:
    fusednn.set_random_seed(0)
    inp = keras.Input(shape=(8,))
    h = L.Dense(30, activation="relu")(L.Dense(30, activation="relu")(inp))
    model = keras.Model(inp, L.Dense(1)(L.Concatenate()([inp, h])))
    model.compile(optimizer="adam", loss="mse", fused=fused)
    return model


def chain(kind: str) -> keras.Model:
    fusednn.set_random_seed(0)
    if kind == "sequential":
        model = keras.Sequential([keras.Input((8,)), L.Dense(30, activation="relu"), L.Dense(30, activation="relu"),
                                  L.Dense(1)])
    else:
        inp = keras.Input(shape=(8,))
        model = keras.Model(inp, L.Dense(1)(L.Dense(30, activation="relu")(L.Dense(30, activation="relu")(inp))))
    model.compile(optimizer="adam", loss="mse")
    return model


def two_input_wide_deep(fused: str | bool) -> keras.Model:
    fusednn.set_random_seed(0)
    wide, deep = keras.Input(shape=(16,), name="wide"), keras.Input(shape=(8,), name="deep")
    h = L.Dense(64, activation="relu")(L.Dense(64, activation="relu")(deep))
    model = keras.Model([wide, deep], L.Dense(1)(L.Concatenate()([wide, h])))
    model.compile(optimizer="adam", loss="mse", fused=fused)
    if fused == "auto" and model.fused_reason is not None:
        raise RuntimeError(f"the two-input model is not fused: {model.fused_reason}")
    return model


def timed(make, x, y, epochs: int, repeats: int, batch: int = 32) -> tuple[float, float]:
    times, loss = [], None
    for r in range(repeats + 1):
        model = make()
        fusednn.set_random_seed(1)
        t0 = time.perf_counter()
        hist = model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
        if r:  # the first fit warms up
            times.append(time.perf_counter() - t0)
        loss = hist.history["loss"][-1]
    return statistics.median(times), loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--two-input-epochs", type=int, default=20)
    args = parser.parse_args()
    fusednn.set_backend("cpu")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    y = (np.sin(x @ rng.normal(size=8)) + 0.1 * x[:, 0]).astype(np.float32)
    rows = [("wide & deep, fused", lambda: wide_deep("auto"), "wide & deep, per-op", lambda: wide_deep(False)),
            ("chain Model, fused", lambda: chain("model"), "Sequential, fused", lambda: chain("sequential"))]
    print(f"{'measured':<22}{'s/fit':>9}  {'reference':<22}{'s/fit':>9}  {'ratio':>7}  same loss")
    for name, make, ref_name, make_ref in rows:
        t, loss = timed(make, x, y, args.epochs, args.repeats)
        t_ref, loss_ref = timed(make_ref, x, y, args.epochs, args.repeats)
        print(f"{name:<22}{t:9.4f}  {ref_name:<22}{t_ref:9.4f}  {t_ref / t:6.2f}x  {loss == loss_ref}")
    xw = rng.normal(size=(4096, 16)).astype(np.float32)
    xd = rng.normal(size=(4096, 8)).astype(np.float32)
    y2 = (np.sin(xd @ rng.normal(size=8)) + 0.1 * xw[:, 0]).astype(np.float32)
    e2 = args.two_input_epochs
    t, loss = timed(lambda: two_input_wide_deep("auto"), [xw, xd], y2, e2, args.repeats, batch=64)
    t_ref, loss_ref = timed(lambda: two_input_wide_deep(False), [xw, xd], y2, e2, args.repeats, batch=64)
    name, ref_name = "2-input w&d, fused", "2-input w&d, per-op"
    print(f"{name:<22}{t:9.4f}  {ref_name:<22}{t_ref:9.4f}  {t_ref / t:6.2f}x  {loss == loss_ref}")
    print(f"python benchmarks/bench_functional.py --epochs {args.epochs} --repeats {args.repeats} "
          f"--two-input-epochs {e2}")


if __name__ == "__main__":
    main()
