"""``fusednn bench training``: whole training runs against the frameworks installed.

Two workloads, the same work for every implementation (architecture, Adam with
Keras' hyperparameters, MSE, batch size, epochs, per-epoch shuffling):

- ``seed``: the product brief's Keras program, 1000x10 inputs, Dense 64 relu ->
  64 relu -> 1, batch 32, 100 epochs (3 200 steps);
- ``mlp``: 60 000 x 784 inputs, 784 -> 256 relu -> 256 relu -> 10, MSE on one-hot
  targets, batch 128, 1 epoch (469 steps).

Implementations: fusednn ``fit`` on each available backend, a PyTorch eager loop
(CPU, and CUDA when a GPU is present), a plain NumPy loop, scikit-learn's
MLPRegressor (seed only) and Keras when importable. Each is timed (training only,
median of ``repeats`` runs) and reports the final training loss, so that speed
is never bought with a wrong result.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-7


@dataclass
class Workload:
    name: str
    n: int
    sizes: tuple[int, ...]  # input, hidden..., output
    batch: int
    epochs: int

    def data(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        # float32 from the start: no float64 copy of a large set ever exists
        x = rng.random((self.n, self.sizes[0]), dtype=np.float32)
        if self.sizes[-1] == 1:
            y = rng.random((self.n, 1), dtype=np.float32)
        else:
            y = np.eye(self.sizes[-1], dtype=np.float32)[rng.integers(0, self.sizes[-1], self.n)]
        return x, y

    @property
    def steps(self) -> int:
        return -(-self.n // self.batch) * self.epochs

    @property
    def flops(self) -> float:
        """Multiply-adds of forward + both backward products, times two, over all steps."""
        macs = sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        back = macs + sum(a * b for a, b in zip(self.sizes[1:-1], self.sizes[2:]))
        return 2.0 * (macs + back) * self.n * self.epochs


WORKLOADS = {
    "seed": Workload("seed", 1000, (10, 64, 64, 1), 32, 100),
    "mlp": Workload("mlp", 60000, (784, 256, 256, 10), 128, 1),
}


@dataclass
class Run:
    workload: str
    impl: str
    seconds: float | None
    low: float | None
    high: float | None
    loss: float | None
    note: str = ""
    ratio: float | None = None  # this time / fusednn-cpu's time


# ------------------------------------------------------------ implementations
def _fusednn(backend: str) -> Callable[[Workload, np.ndarray, np.ndarray, int], tuple[float, float]]:
    def run(w: Workload, x, y, seed):
        import fusednn
        from fusednn import keras

        prev = fusednn.get_backend().name
        fusednn.set_backend(backend)
        try:
            fusednn.utils.set_random_seed(seed)
            layers = [keras.layers.Dense(w.sizes[1], activation="relu", input_shape=(w.sizes[0],))]
            layers += [keras.layers.Dense(u, activation="relu") for u in w.sizes[2:-1]]
            layers += [keras.layers.Dense(w.sizes[-1])]
            model = keras.Sequential(layers)
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=LR, beta_1=B1, beta_2=B2, epsilon=EPS),
                          loss="mse")
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=w.batch, epochs=w.epochs, verbose=0)
            dt = time.perf_counter() - t0
            return dt, float(model.evaluate(x, y, batch_size=4096, verbose=0))
        finally:
            fusednn.set_backend(prev)
    return run


def _torch(device: str):
    def run(w: Workload, x, y, seed):
        import torch

        import fusednn

        if device == "cpu":
            torch.set_num_threads(fusednn.get_num_threads())
        torch.manual_seed(seed)
        mods: list = []
        for i, (a, b) in enumerate(zip(w.sizes[:-1], w.sizes[1:])):
            mods.append(torch.nn.Linear(a, b))
            if i < len(w.sizes) - 2:
                mods.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*mods).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(B1, B2), eps=EPS)
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(w.epochs):
            perm = torch.randperm(w.n, device=device)
            for s in range(0, w.n, w.batch):
                idx = perm[s:s + w.batch]
                loss = torch.nn.functional.mse_loss(model(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        sync()
        dt = time.perf_counter() - t0
        with torch.no_grad():
            final = float(torch.nn.functional.mse_loss(model(xt), yt))
        return dt, final
    return run


def _numpy_loop(w: Workload, x, y, seed):
    """A plain float32 NumPy training loop, as a user would write it."""
    rng = np.random.default_rng(seed)
    Ws, bs = [], []
    for a, b in zip(w.sizes[:-1], w.sizes[1:]):
        lim = np.sqrt(6 / (a + b))
        Ws.append(rng.uniform(-lim, lim, (a, b)).astype(np.float32))
        bs.append(np.zeros(b, np.float32))
    params = Ws + bs
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    L = len(Ws)
    t = 0
    t0 = time.perf_counter()
    for _ in range(w.epochs):
        perm = rng.permutation(w.n)
        for s in range(0, w.n, w.batch):
            idx = perm[s:s + w.batch]
            acts = [x[idx]]
            for i in range(L):
                z = acts[-1] @ Ws[i] + bs[i]
                acts.append(np.maximum(z, 0) if i < L - 1 else z)
            g = (2.0 / acts[-1].size) * (acts[-1] - y[idx])
            grads_w, grads_b = [None] * L, [None] * L
            for i in reversed(range(L)):
                if i < L - 1:
                    g = g * (acts[i + 1] > 0)
                grads_w[i] = acts[i].T @ g
                grads_b[i] = g.sum(axis=0)
                if i:
                    g = g @ Ws[i].T
            t += 1
            alpha = np.float32(LR * np.sqrt(1 - B2**t) / (1 - B1**t))
            for p, gr, mm, vv in zip(params, grads_w + grads_b, m, v):
                mm += (gr - mm) * np.float32(1 - B1)
                vv += (gr * gr - vv) * np.float32(1 - B2)
                p -= alpha * mm / (np.sqrt(vv) + np.float32(EPS))
    dt = time.perf_counter() - t0
    a = x
    for i in range(L):
        a = a @ Ws[i] + bs[i]
        if i < L - 1:
            a = np.maximum(a, 0)
    return dt, float(np.mean((a - y) ** 2))


def _sklearn(w: Workload, x, y, seed):
    import warnings

    from sklearn.neural_network import MLPRegressor

    reg = MLPRegressor(hidden_layer_sizes=w.sizes[1:-1], activation="relu", solver="adam", alpha=0.0,
                       batch_size=w.batch, learning_rate_init=LR, beta_1=B1, beta_2=B2, epsilon=EPS,
                       max_iter=w.epochs, shuffle=True, tol=0.0, n_iter_no_change=w.epochs + 1,
                       random_state=seed)
    target = y.ravel() if y.shape[1] == 1 else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": max_iter is the point
        t0 = time.perf_counter()
        reg.fit(x, target)
        dt = time.perf_counter() - t0
    pred = reg.predict(x).reshape(y.shape)
    return dt, float(np.mean((pred - y) ** 2))


def _keras(w: Workload, x, y, seed):
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((w.sizes[0],))] + [keras.layers.Dense(u, activation="relu") for u in w.sizes[1:-1]]
    model = keras.Sequential(layers + [keras.layers.Dense(w.sizes[-1])])
    model.compile(optimizer=keras.optimizers.Adam(LR), loss="mse")
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=w.batch, epochs=w.epochs, verbose=0)
    dt = time.perf_counter() - t0
    return dt, float(model.evaluate(x, y, verbose=0))


def _fusednn_cuda_path(flag: str) -> Callable[[Workload, np.ndarray, np.ndarray, int], tuple[float, float]]:
    """fusednn on cuda with an opt-in trainer path (FUSEDNN_CUDA_GRAPH / FUSEDNN_CUDA_PERSISTENT)
    switched on for the run; a model the persistent kernel cannot hold falls back (to graph
    replay when both flags are set, else the per-op path) and says so in the note."""
    inner = _fusednn("cuda")

    def run(w: Workload, x, y, seed):
        import os

        old = os.environ.get(flag)
        os.environ[flag] = "1"
        try:
            return inner(w, x, y, seed)
        finally:
            if old is None:
                del os.environ[flag]
            else:
                os.environ[flag] = old
    return run


def implementations(workload: str) -> dict[str, Callable]:
    """Every implementation that can run here, by name."""
    import importlib.util

    from .. import backends

    impls: dict[str, Callable] = {f"fusednn-{b}": _fusednn(b) for b in backends.available()}
    if "cuda" in impls:  # the opt-in trainer paths, timed beside the default
        impls["fusednn-cuda-graph"] = _fusednn_cuda_path("FUSEDNN_CUDA_GRAPH")
        impls["fusednn-cuda-persist"] = _fusednn_cuda_path("FUSEDNN_CUDA_PERSISTENT")
    if importlib.util.find_spec("torch"):
        impls["torch-cpu"] = _torch("cpu")
        import torch

        if torch.cuda.is_available():
            impls["torch-cuda"] = _torch("cuda")
    impls["numpy-loop"] = _numpy_loop
    if workload == "seed" and importlib.util.find_spec("sklearn"):
        impls["sklearn"] = _sklearn
    if importlib.util.find_spec("keras"):
        impls["keras"] = _keras
    return impls


def run(workloads: list[str] | None = None, impls: list[str] | None = None, repeats: int = 3,
        seed: int = 0, progress: Callable[[Run], None] | None = None) -> list[Run]:
    """Time each implementation on each workload; ``repeats`` runs each, median reported."""
    out: list[Run] = []
    for wname in workloads or list(WORKLOADS):
        w = WORKLOADS[wname]
        x, y = w.data(seed)
        available = implementations(wname)
        names = [n for n in available if impls is None or n in impls]
        rows = []
        for name in names:
            fn = available[name]
            # the NumPy backend and the slow frameworks run the long workload once
            k = 1 if (name in ("fusednn-numpy", "keras", "sklearn") or (wname == "mlp" and not name.startswith("fusednn-c"))) else repeats
            try:
                if name.startswith("torch"):  # PyTorch initialises lazily: warm it up untimed
                    fn(dataclasses.replace(w, n=256, epochs=1), x[:256], y[:256], seed)
                times, loss = [], None
                for r in range(k):
                    dt, loss = fn(w, x, y, seed)
                    times.append(dt)
                row = Run(wname, name, statistics.median(times), min(times), max(times), loss,
                          note=f"{k} run{'s' if k > 1 else ''}")
            except Exception as e:  # report and go on
                row = Run(wname, name, None, None, None, None, note=f"{type(e).__name__}: {e}"[:160])
            rows.append(row)
            if progress:
                progress(row)
        base = next((r.seconds for r in rows if r.impl == "fusednn-cpu" and r.seconds), None)
        for r in rows:
            if base and r.seconds:
                r.ratio = r.seconds / base
        out += rows
    return out


def format_table(runs: list[Run]) -> str:
    head = f"{'workload':<9} {'impl':<20} {'time (median)':>14} {'range':>17} {'final loss':>11} {'vs fusednn-cpu':>15}  note"
    lines = [head, "-" * len(head)]
    for r in runs:
        t = f"{r.seconds:.3f} s" if r.seconds is not None else "FAILED"
        rng = f"{r.low:.3f}-{r.high:.3f} s" if r.low is not None else ""
        loss = f"{r.loss:.4g}" if r.loss is not None else ""
        ratio = f"{r.ratio:.1f}x slower" if r.ratio and r.ratio > 1.05 else (f"{r.ratio:.2f}x" if r.ratio else "")
        lines.append(f"{r.workload:<9} {r.impl:<20} {t:>14} {rng:>17} {loss:>11} {ratio:>15}  {r.note}")
    return "\n".join(lines)
