"""Dropout + BatchNormalization MLP on the cpu backend against PyTorch eager, same run,
and (``--baseline SITE``) the brief's all-Dense program against another build of
fusednn (to check that the layer steps cost the all-Dense fused path nothing).

    python benchmarks/bench_layers.py [--epochs 20] [--repeats 5] [--baseline /path/to/site-packages]

The model: 1000 samples x 10 features -> Dense(64) -> BatchNormalization -> relu ->
Dropout(0.2) -> Dense(64) -> BatchNormalization -> relu -> Dropout(0.2) -> Dense(1),
MSE, Adam (Keras defaults), batch 32, shuffled every epoch. PyTorch runs the same
model (nn.BatchNorm1d with Keras' momentum/epsilon, nn.Dropout) as an eager loop over
a shuffled index, on ``--torch-threads`` threads (default one). Times are medians of ``--repeats``
fits; the all-Dense comparison runs each build in its own subprocess, alternating.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

N, D, H = 1000, 10, 64

_ALL_DENSE = r"""
import os, sys, time, numpy as np
if os.environ.get("FUSEDNN_BENCH_BASELINE"):  # import the baseline, not an editable install's redirect
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
import fusednn
print(fusednn.__file__, file=sys.stderr)
from fusednn import keras
fusednn.set_backend("cpu")
rng = np.random.default_rng(0)
x = rng.normal(size=(1000, 10)).astype(np.float32); y = (x @ rng.normal(size=(10, 1))).astype(np.float32)
keras.utils.set_random_seed(0)
m = keras.Sequential([keras.layers.Dense(64, activation="relu", input_shape=(10,)),
                      keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
m.compile("adam", "mse")
m.fit(x, y, epochs=2, batch_size=32, verbose=0)
t = time.perf_counter(); m.fit(x, y, epochs=100, batch_size=32, verbose=0); print(time.perf_counter() - t)
"""


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = (np.tanh(x @ rng.normal(size=(D, 1))) + 0.1 * rng.normal(size=(N, 1))).astype(np.float32)
    return x, y


def fit_fusednn(x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    import fusednn
    from fusednn import keras

    fusednn.set_backend("cpu")
    keras.utils.set_random_seed(0)
    L = keras.layers
    m = keras.Sequential([L.Dense(H, input_shape=(D,)), L.BatchNormalization(), L.Activation("relu"), L.Dropout(0.2),
                          L.Dense(H), L.BatchNormalization(), L.Activation("relu"), L.Dropout(0.2), L.Dense(1)])
    m.compile("adam", "mse")
    assert m.fused_reason is None, m.fused_reason
    m.fit(x, y, epochs=1, batch_size=32, verbose=0)  # warm-up: buffers, trainer
    t = time.perf_counter()
    m.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return time.perf_counter() - t


def fit_torch(x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    import torch
    from torch import nn

    torch.manual_seed(0)
    bn = dict(momentum=0.01, eps=1e-3)  # Keras' momentum 0.99 in PyTorch's convention
    model = nn.Sequential(nn.Linear(D, H), nn.BatchNorm1d(H, **bn), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(H, H), nn.BatchNorm1d(H, **bn), nn.ReLU(), nn.Dropout(0.2), nn.Linear(H, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = nn.MSELoss()

    def run(k: int) -> None:
        model.train()
        for _ in range(k):
            perm = torch.randperm(N)
            for lo in range(0, N, 32):
                idx = perm[lo:lo + 32]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()

    run(1)
    t = time.perf_counter()
    run(epochs)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--torch-threads", type=lambda v: [int(t) for t in v.split(",")], default=[1],
                    help="PyTorch thread counts to time, comma-separated (default 1: on a loaded 2-core "
                         "machine its 2-thread pool spins and runs ~50x slower)")
    ap.add_argument("--baseline", help="site-packages dir of another fusednn build for the all-Dense comparison")
    args = ap.parse_args()
    x, y = data()
    import fusednn

    threads = fusednn.backends.cpu.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
        have_torch = True
    except ImportError:
        have_torch = False
    ours = [fit_fusednn(x, y, args.epochs) for _ in range(args.repeats)]
    refs: dict[int, list[float]] = {}
    if have_torch:
        for k in args.torch_threads:
            torch.set_num_threads(k)
            refs[k] = [fit_torch(x, y, args.epochs) for _ in range(args.repeats)]
    print(f"Dropout+BatchNorm MLP {N}x{D}->{H}->{H}->1, Adam, batch 32, {args.epochs} epochs, "
          f"{threads} threads, median of {args.repeats}")
    print(f"{'engine':<28}{'fit s':>10}{'ms/epoch':>10}{'ratio':>8}")
    med = statistics.median(ours)
    print(f"{'fusednn cpu (fused)':<28}{med:>10.4f}{1e3 * med / args.epochs:>10.3f}{1.0:>8.2f}")
    for k, ref in refs.items():
        mr = statistics.median(ref)
        label = f"torch {torch.__version__} eager, {k} thr"
        print(f"{label:<28}{mr:>10.4f}{1e3 * mr / args.epochs:>10.3f}{mr / med:>8.2f}  (torch / fusednn)")
    if args.baseline:
        times: dict[str, list[float]] = {"baseline": [], "this build": []}
        where: dict[str, str] = {}
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            for name, path in (("baseline", args.baseline), ("this build", None)):
                env = dict(os.environ)
                if path:
                    env.update(PYTHONPATH=path, FUSEDNN_BENCH_BASELINE="1")
                out = subprocess.run([sys.executable, "-c", _ALL_DENSE], env=env, capture_output=True, text=True,
                                     check=True, cwd="/")
                times[name].append(float(out.stdout.strip().splitlines()[-1]))
                where[name] = out.stderr.strip().splitlines()[-1]
        b, t = statistics.median(times["baseline"]), statistics.median(times["this build"])
        print(f"\nAll-Dense 1000x10->64->64->1, Adam, batch 32, 100 epochs (fit, median of {args.repeats}):")
        print(f"  baseline {b:.4f} s   this build {t:.4f} s   ratio {t / b:.3f}")
        print(f"  baseline: {where['baseline']}; this build: {where['this build']}")
        print(f"  baseline runs {[round(v, 4) for v in times['baseline']]}")
        print(f"  this build runs {[round(v, 4) for v in times['this build']]}")
    print(f"command: python benchmarks/bench_layers.py --epochs {args.epochs} --repeats {args.repeats} "
          f"--torch-threads {','.join(map(str, args.torch_threads))}"
          + (f" --baseline {args.baseline}" if args.baseline else ""))


if __name__ == "__main__":
    main()
