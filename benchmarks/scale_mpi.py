"""Data-parallel scaling of the fused trainer over MPI on this machine, and what it
predicts for a cluster.

    python benchmarks/scale_mpi.py [--n 60000] [--batch 256] [--epochs 1] [--repeats 3] [--json FILE]

The model is 784 -> 256 (relu) -> 256 (relu) -> 10 (softmax, sparse cross-entropy,
Adam) on n random samples (MNIST's shape). Three set-ups, each in fresh processes:
one process with 1 compute thread (the reference), one process with 2 threads, and
2 MPI ranks (mpiexec -n 2) with 1 thread each and fusednn.distribution.DataParallel.
Each fit's epoch time is the median of --repeats fits after a warm-up fit; for the
2-rank run also the per-step gradient allreduce (time inside MPI, and the whole
between-phases hook: scale + allreduce + loss), the bytes per step, and a separate
allreduce micro-benchmark (8 bytes: latency; the gradient size: bandwidth). The last
table applies the README's model, T_step(p) = T_compute / p + T_allreduce(p), with the
measured one-thread compute time, to 8 and 64 ranks on 10 and 100 Gb/s networks.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def build(n: int, seed: int = 0):
    import fusednn

    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 784)).astype(np.float32)
    y = g.integers(0, 10, size=(n, 1)).astype(np.float32)
    fusednn.utils.set_random_seed(seed)
    model = fusednn.Sequential([fusednn.Input((784,)), fusednn.Dense(256, activation="relu"),
                                fusednn.Dense(256, activation="relu"), fusednn.Dense(10, activation="softmax")])
    model.compile(fusednn.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model, x, y


def worker(args: argparse.Namespace) -> None:
    import fusednn
    from fusednn import distribution

    fusednn.set_num_threads(args.threads)
    dp = None
    if args.dist:
        distribution.initialize()
        dp = distribution.DataParallel(timeout=600)
        distribution.set_distribution(dp)
    model, x, y = build(args.n)
    model.fit(x[:4096], y[:4096], batch_size=args.batch, epochs=1, verbose=0)  # warm-up: buffers, pages
    times, stats = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0)
        times.append((time.perf_counter() - t0) / args.epochs)
        if dp is not None:
            stats.append(dict(dp.last_fit_stats))
    out = {"epoch_s": statistics.median(times), "epoch_s_all": times, "steps": -(-args.n // args.batch),
           "params": model.count_params(), "threads": fusednn.get_num_threads()}
    if dp is None and args.threads == 1:
        out.update(hook_call_overhead())
    if dp is not None:
        s = stats[len(stats) // 2]
        out.update(allreduce_ms_per_step=1e3 * s["allreduce_s"] / s["steps"],
                   hook_ms_per_step=1e3 * s["hook_s"] / s["steps"], bytes_per_step=s["bytes_per_step"])
        out.update(micro_allreduce(dp.mpi(), s["bytes_per_step"] // 4))
    if distribution.is_chief():
        print("RESULT " + json.dumps(out), flush=True)


def hook_call_overhead(steps: int = 20000) -> dict:
    """What the native trainer's call into Python between the gradient and update phases
    costs per step, apart from the allreduce: an epoch of a tiny model (4 -> 4 -> 1,
    batch 4, so a step is a few microseconds) with a hook that returns at once, against
    the same epoch without a hook (medians of 5)."""
    import fusednn
    from fusednn.training import fused

    fusednn.utils.set_random_seed(0)
    m = fusednn.Sequential([fusednn.Input((4,)), fusednn.Dense(4, activation="relu"), fusednn.Dense(1)])
    m.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(steps * 4, 4)).astype(np.float32)
    y = x[:, :1].copy()
    m.fit(x[:64], y[:64], batch_size=4, epochs=1, verbose=0)
    ft = fused.trainer_for(m, 4)
    order = np.arange(len(x), dtype=np.int64)
    starts = np.arange(steps + 1, dtype=np.int64) * 4
    losses = np.zeros(steps, dtype=np.float32)
    res = {}
    params = m.optimizer.step_params(0, steps)
    for name, hook in (("none", None), ("noop", lambda step, rows: True)):
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            ft.trainer.run(x, y, order, ft.x_batch, ft.y_batch, losses, 0, steps, 0, False, None,
                           step_params=params, step_starts=starts, between=hook)
            ts.append(time.perf_counter() - t0)
        res[name] = statistics.median(ts) / steps
    return {"hook_call_us": 1e6 * (res["noop"] - res["none"]), "tiny_step_us": 1e6 * res["none"]}


def micro_allreduce(comm, floats: int, reps: int = 50) -> dict:
    """Median time of an in-place sum-allreduce of 2 floats (latency) and of the
    gradient's size (bandwidth), through the same communicator the trainer uses."""
    res = {}
    for name, size in (("latency", 2), ("gradient", floats)):
        buf = np.ones(size, dtype=np.float32)
        for _ in range(5):
            comm.allreduce_(buf)
        ts = []
        for _ in range(reps):
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce_(buf)
            ts.append(time.perf_counter() - t0)
        res[f"micro_{name}_us"] = 1e6 * statistics.median(ts)
        res[f"micro_{name}_min_us"] = 1e6 * min(ts)  # the least disturbed run, on a shared machine
    p = comm.size
    res["micro_busbw_GBps"] = 2 * (p - 1) / p * floats * 4 / (res["micro_gradient_us"] * 1e-6) / 1e9
    return res


def run(cmd: list[str], env: dict) -> dict:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


def predict(t_compute_ms: float, grad_bytes: int, ranks: int, gbit: float, alpha_us: float) -> tuple[float, float]:
    """(step ms, speed-up over one rank) of a ring allreduce: 2(p-1)/p * S / BW + 2(p-1) * alpha."""
    bw = gbit * 1e9 / 8
    t_ar = 2 * (ranks - 1) / ranks * grad_bytes / bw * 1e3 + 2 * (ranks - 1) * alpha_us * 1e-3
    step = t_compute_ms / ranks + t_ar
    return step, t_compute_ms / step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dist", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    from fusednn.distribution.launch import mpiexec_command

    common = [sys.executable, os.path.abspath(__file__), "--worker", "--n", str(args.n), "--batch",
              str(args.batch), "--epochs", str(args.epochs), "--repeats", str(args.repeats)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load = os.getloadavg()
    rows = {"1 process x 1 thread": run(common + ["--threads", "1"], env),
            "1 process x 2 threads": run(common + ["--threads", "2"], env),
            "2 ranks x 1 thread (MPI)": run(mpiexec_command(2, common + ["--threads", "1", "--dist"]), env)}
    ref = rows["1 process x 1 thread"]["epoch_s"]
    steps = rows["1 process x 1 thread"]["steps"]
    print(f"load average before the runs: {load[0]:.1f} on {os.cpu_count()} cores (other work shares this machine)")
    print(f"model 784-256-256-10 ({rows['1 process x 1 thread']['params']:,} parameters), n={args.n}, "
          f"global batch {args.batch} ({steps} steps/epoch), median of {args.repeats} fits of {args.epochs} epoch(s)")
    print(f"{'set-up':<26}{'epoch s':>9}{'speed-up':>10}{'ms/step':>9}{'allreduce ms/step':>19}"
          f"{'hook ms/step':>14}{'bytes/step':>12}")
    for name, r in rows.items():
        ar = f"{r['allreduce_ms_per_step']:.3f}" if "allreduce_ms_per_step" in r else "-"
        hook = f"{r['hook_ms_per_step']:.3f}" if "hook_ms_per_step" in r else "-"
        b = f"{r['bytes_per_step']:,}" if "bytes_per_step" in r else "-"
        print(f"{name:<26}{r['epoch_s']:>9.3f}{ref / r['epoch_s']:>9.2f}x{1e3 * r['epoch_s'] / steps:>9.3f}"
              f"{ar:>19}{hook:>14}{b:>12}")
    d = rows["2 ranks x 1 thread (MPI)"]
    print(f"allreduce micro-benchmark, 2 ranks, shared memory, median (min) of 50: {d['micro_latency_us']:.1f} "
          f"({d['micro_latency_min_us']:.1f}) us for 8 bytes, {d['micro_gradient_us']:.1f} "
          f"({d['micro_gradient_min_us']:.1f}) us for {d['bytes_per_step']:,} bytes "
          f"(bus bandwidth {d['micro_busbw_GBps']:.2f} GB/s at the median)")
    o = rows["1 process x 1 thread"]
    print(f"native -> Python hook call (GIL, call, return) without the allreduce: {o['hook_call_us']:.2f} us per step "
          f"(tiny model, {o['tiny_step_us']:.2f} us per step without it)")
    t_c = 1e3 * ref / steps
    print(f"\nmodel: T_step(p) = {t_c:.2f} ms / p + 2(p-1)/p * {d['bytes_per_step']:,} B / BW + 2(p-1) * alpha "
          "(ring allreduce; compute per step from the 1-thread run, assumed to split evenly)")
    print(f"{'ranks':>6}{'network':>10}{'alpha us':>10}{'step ms':>10}{'allreduce ms':>14}{'speed-up':>10}")
    preds = []
    for p in (2, 8, 64):
        for gbit, alpha in ((10, 20.0), (100, 5.0)):
            step, speed = predict(t_c, d["bytes_per_step"], p, gbit, alpha)
            preds.append({"ranks": p, "gbit": gbit, "alpha_us": alpha, "step_ms": step, "speedup": speed})
            print(f"{p:>6}{gbit:>7} Gb/s{alpha:>10.0f}{step:>10.3f}{step - t_c / p:>14.3f}{speed:>9.1f}x")
    print(f"\nreproduce: python benchmarks/scale_mpi.py --n {args.n} --batch {args.batch} --epochs {args.epochs} "
          f"--repeats {args.repeats}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "predictions": preds, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
