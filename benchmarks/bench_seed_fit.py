"""Wall time of the seed program's ``model.fit(x, y, epochs=100)`` (1000 x 10 inputs,
Dense 64 relu -> 64 relu -> 1, Adam, MSE, batch 32, shuffled) on fusednn's numpy
and cpu backends, next to the same training loop in PyTorch eager mode on the
same machine and run. Each time is the median of --repeats runs (interleaved across the
implementations) after one warm-up run of each.

Run: python benchmarks/bench_seed_fit.py [--epochs 100] [--repeats 3]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import numpy as np

import fusednn
from fusednn import keras


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((1000, 10)), rng.random((1000, 1))


def fusednn_fit(backend: str, epochs: int) -> tuple[float, float]:
    """Seconds for fit(epochs) on ``backend`` and the last epoch's loss."""
    fusednn.set_backend(backend)
    fusednn.set_random_seed(0)
    x, y = data()
    model = keras.Sequential([
        keras.layers.Dense(64, activation="relu", input_shape=(10,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mean_squared_error")
    t0 = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, verbose=0)
    return time.perf_counter() - t0, history.history["loss"][-1]


def torch_fit(epochs: int) -> tuple[float, float]:
    """The same training in PyTorch eager mode: shuffled batches of 32, Adam with
    Keras' settings, the epoch loss accumulated on the tensor side and read once per epoch."""
    import torch

    torch.manual_seed(0)
    x, y = (torch.tensor(a, dtype=torch.float32) for a in data())
    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                                torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    n, bs = len(x), 32
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n)
        total = torch.zeros(())
        for lo in range(0, n, bs):
            idx = order[lo:lo + bs]
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        last = float(total) / n
    return time.perf_counter() - t0, last


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    runs = {b: (lambda b=b: fusednn_fit(b, args.epochs)) for b in ("numpy", "cpu") if b in fusednn.available_backends()}
    try:
        import torch

        torch.set_num_threads(fusednn.get_num_threads())
        runs["pytorch eager"] = lambda: torch_fit(args.epochs)
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    for run in runs.values():
        run()  # warm-up: imports, first allocations, thread pools
    # Interleaved, so that a burst of other load on the machine hits every implementation alike.
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            samples[name].append(run())
    results = {name: (statistics.median(t for t, _ in s), s[-1][1]) for name, s in samples.items()}
    ref = results.get("pytorch eager", (None,))[0]
    print(f"seed program fit(epochs={args.epochs}): 1000 x 10 -> Dense 64 relu -> 64 relu -> 1, Adam, MSE, "
          f"batch 32; median of {args.repeats}")
    print(f"machine: {cpu_name()}, {fusednn.get_num_threads()} threads; "
          f"Python {platform.python_version()}, NumPy {np.__version__}, PyTorch {torch_version}, "
          f"fusednn {fusednn.__version__}")
    print(f"{'implementation':<16}{'fit wall (s)':>14}{'ms/step':>10}{'vs PyTorch':>12}{'last loss':>11}")
    steps = args.epochs * 32
    for name, (t, loss) in results.items():
        ratio = f"{t / ref:.2f}x" if ref else "-"
        print(f"{name:<16}{t:>14.3f}{t / steps * 1e3:>10.3f}{ratio:>12}{loss:>11.4f}")
    print("command: python " + " ".join(sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
