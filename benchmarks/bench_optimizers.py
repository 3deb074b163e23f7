"""What learning-rate schedules and the Keras optimizers cost in the fused trainer.

1. The brief's program (1000x10 -> Dense(64, relu) -> Dense(64, relu) -> Dense(1),
   MSE, batch 32, 100 epochs) with Adam at a constant learning rate against the same
   with ``ExponentialDecay`` (the per-step rates are computed once per epoch in NumPy
   and handed to the native loop), and with the other optimizers, on one backend.
   Runs are interleaved and repeated; the table gives medians and the ratio to the
   constant-rate Adam run of the same session.
2. One optimizer update of a parameter array: the shared Keras rule
   (``_cpu.optimizer_update``, fusednn/optim_update.h) against the hand-written
   AVX2 Adam kernel it replaced in the trainer (``_cpu.adam_update``), checked to
   agree before timing.

    python benchmarks/bench_optimizers.py [--repeats 5] [--epochs 100] [--backend cpu] [--only-schedule]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

import fusednn
from fusednn import keras
from fusednn.optimizers import schedules


def _program(optimizer, x, y, epochs):
    fusednn.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(64, activation="relu", input_shape=(10,)),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mean_squared_error")
    t = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    elapsed = time.perf_counter() - t
    assert model._fused is not None, "the benchmark must measure the fused trainer"
    return elapsed


CONFIGS = {
    "Adam, constant lr (reference)": lambda: keras.optimizers.Adam(1e-3),
    "Adam + ExponentialDecay": lambda: keras.optimizers.Adam(schedules.ExponentialDecay(1e-3, 1000, 0.96)),
    "Adam + CosineDecay(warmup)": lambda: keras.optimizers.Adam(
        schedules.CosineDecay(0.0, 3000, warmup_target=1e-3, warmup_steps=200)),
    "SGD(momentum) + PiecewiseConstant": lambda: keras.optimizers.SGD(
        schedules.PiecewiseConstantDecay([1000, 2000], [0.01, 0.005, 0.001]), momentum=0.9),
    "AdamW": lambda: keras.optimizers.AdamW(1e-3),
    "RMSprop(centered, momentum)": lambda: keras.optimizers.RMSprop(1e-3, momentum=0.5, centered=True),
    "Nadam": lambda: keras.optimizers.Nadam(1e-3),
    "Lion": lambda: keras.optimizers.Lion(1e-4),
    "Adam + global_clipnorm": lambda: keras.optimizers.Adam(1e-3, global_clipnorm=1.0),
    "Adam + use_ema": lambda: keras.optimizers.Adam(1e-3, use_ema=True),
}


def bench_program(repeats: int, epochs: int, only_schedule: bool = False) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((1000, 10)), rng.random((1000, 1))
    configs = dict(list(CONFIGS.items())[:2]) if only_schedule else CONFIGS
    times: dict[str, list[float]] = {k: [] for k in configs}
    for name, make in configs.items():  # warm-up (first-call costs)
        _program(make(), x, y, 1)
    for _ in range(repeats):
        for name, make in configs.items():
            times[name].append(_program(make(), x, y, epochs))
    ref = statistics.median(times["Adam, constant lr (reference)"])
    print(f"\nbrief's program, fit(epochs={epochs}), backend {fusednn.get_backend().name}, "
          f"median of {repeats} (interleaved)")
    print(f"| optimizer | median s | min s | ratio to constant-lr Adam |\n|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.4f} | {min(ts):.4f} | {med / ref:.3f} |")


def bench_update(repeats: int) -> None:
    k = fusednn.backends.native("cpu")
    if k is None:
        return
    from fusednn import optimizers as O

    opt = O.Adam(1e-3)
    spec = opt.kernel_spec()
    print(f"\none Adam update, µs (median of {repeats} x many calls), simd path {k.simd_path()}")
    print("| elements | shared Keras rule (optimizer_update) | hand-written AVX2 adam_update | ratio |\n|---|---|---|---|")
    rng = np.random.default_rng(1)
    for n in (640, 4096, 65536, 1 << 20):
        g = rng.standard_normal(n).astype(np.float32)
        w1, w2 = rng.standard_normal(n).astype(np.float32), None
        w2 = w1.copy()
        m1, v1, m2, v2 = (np.zeros(n, np.float32) for _ in range(4))
        P = opt.step_params(0, 1)[0]
        k.optimizer_update(spec["kind"], spec["flags"], P, w1, g, m1, v1, None, None, 0.0)
        k.adam_update(w2, g, m2, v2, 1e-3, 0.9, 0.999, 1e-7, 1)
        np.testing.assert_allclose(w1, w2, rtol=1e-6, atol=1e-7)  # the same step (to float32 rounding) before timing
        calls = max(10, 2_000_000 // n)
        res = {}
        for label, fn in (("new", lambda: k.optimizer_update(spec["kind"], spec["flags"], P, w1, g, m1, v1, None,
                                                             None, 0.0)),
                          ("old", lambda: k.adam_update(w2, g, m2, v2, 1e-3, 0.9, 0.999, 1e-7, 2))):
            samples = []
            for _ in range(repeats):
                t = time.perf_counter()
                for _ in range(calls):
                    fn()
                samples.append((time.perf_counter() - t) / calls * 1e6)
            res[label] = statistics.median(samples)
        print(f"| {n} | {res['new']:.2f} | {res['old']:.2f} | {res['new'] / res['old']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--only-schedule", action="store_true",
                    help="only constant-lr Adam against Adam + ExponentialDecay (more repeats in the same time)")
    a = ap.parse_args()
    fusednn.set_backend(a.backend)
    print(f"machine: {platform.processor() or platform.machine()}, threads {fusednn.get_num_threads()}, "
          f"fusednn {fusednn.__version__}")
    bench_program(a.repeats, a.epochs, a.only_schedule)
    if a.backend == "cpu" and not a.only_schedule:
        bench_update(a.repeats)
    print(f"\ncommand: python benchmarks/bench_optimizers.py --repeats {a.repeats} --epochs {a.epochs} "
          f"--backend {a.backend}{' --only-schedule' if a.only_schedule else ''}")


if __name__ == "__main__":
    main()
