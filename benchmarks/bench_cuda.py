"""Benchmark fusednn's CUDA kernels against cuBLAS (cupy.matmul) and the device's copy bandwidth.

    python benchmarks/bench_cuda.py [--quick] [--out DIR]

GEMM: every tile variant (the cp.async pipelines too), the automatic choice and the TF32
path at 256^3, 1024^3, 2048^3, 4096^3 and the two MLPs' shapes, against cupy.matmul in FP32 (CuPy's default,
TF32 off) and, for TF32, torch.matmul with allow_tf32 (when torch is there).
Streaming kernels at 2^26 floats as a fraction of the device-to-device copy
bandwidth measured in the same run (bytes read + written). Each case is checked
for correctness first (a wrong kernel is reported, not timed); times are CUDA-event
medians of >= 10 repeats after warm-up, each repeat a batch of calls long enough
(>= 1 ms) that the events' resolution does not matter. Small shapes therefore show
throughput including launch overhead, for fusednn and cuBLAS alike. A
per-call host overhead table (wall clock, Python included) follows.
Writes bench_cuda.json and bench_cuda.txt to --out (default $OUT when set).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

try:
    import cupy as cp
except ImportError:  # pragma: no cover - the script needs a GPU machine
    sys.exit("bench_cuda.py needs CuPy and a CUDA device")

import fusednn
from fusednn import _cuda

ACTS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}
ERRORS: list[str] = []


def log(msg: str) -> None:
    print(msg, flush=True)


def guarded(name: str, fn, *args, **kwargs):
    """Run one benchmark case; record and print a failure instead of stopping."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
        msg = f"{name}: {type(e).__name__}: {e}"
        ERRORS.append(msg)
        log("ERROR " + msg)
        traceback.print_exc(limit=3)
        return None


def time_ms(fn, reps: int, warmup: int = 3, min_batch_ms: float = 1.0) -> dict:
    """Median milliseconds per call of ``fn`` on the current stream, by CUDA events."""
    for _ in range(warmup):
        fn()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    fn()
    end.record()
    end.synchronize()
    one = max(cp.cuda.get_elapsed_time(start, end), 1e-3)
    inner = max(1, min(500, math.ceil(min_batch_ms / one)))
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / inner)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "calls_per_repeat": inner, "repeats": reps}


def time_torch_ms(torch, fn, reps: int, warmup: int = 3, min_batch_ms: float = 1.0) -> dict:
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    inner = max(1, min(500, math.ceil(min_batch_ms / max(start.elapsed_time(end), 1e-3))))
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "calls_per_repeat": inner, "repeats": reps}


def rel_err(x, ref) -> float:
    return float(cp.linalg.norm((x - ref).ravel()) / max(float(cp.linalg.norm(ref.ravel())), 1e-30))


def load_torch():
    try:
        import torch

        return torch if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - torch is an optional reference
        return None


# --------------------------------------------------------------------- GEMM
def bench_gemm(M: int, N: int, K: int, reps: int, torch) -> list[dict]:
    rows = []
    a = cp.random.standard_normal((M, K), dtype=cp.float32)
    b = cp.random.standard_normal((K, N), dtype=cp.float32)
    c = cp.empty((M, N), dtype=cp.float32)
    ref = cp.matmul(a, b)
    flop = 2.0 * M * N * K
    shape = f"{M}x{K}.{K}x{N}"

    def add(impl: str, t: dict | None, err: float | None, ok: bool, note: str = ""):
        row = {"shape": shape, "M": M, "N": N, "K": K, "impl": impl, "rel_err_vs_cublas": err,
               "correct": ok, "note": note}
        if t is not None:
            row.update(t)
            row["tflops"] = flop / (t["median_ms"] * 1e-3) / 1e12
        rows.append(row)
        tf = f"{row['tflops']:8.2f} TFLOP/s" if t is not None else "   not timed"
        log(f"  gemm {shape:>20s} {impl:>22s} {tf}  err {err if err is not None else float('nan'):.2e} {note}")

    t_ref = time_ms(lambda: cp.matmul(a, b, out=c), reps)
    add("cublas fp32 (cupy)", t_ref, 0.0, True)
    stream = cp.cuda.get_current_stream().ptr
    cases = [(f"v{v} {name}", v, False) for v, name in enumerate(_cuda.gemm_variants())]
    cases.append((f"auto (v{_cuda.gemm_pick_variant(M, N, K)})", -1, False))
    if _cuda.tf32_supported():
        cases.append(("tf32 mma.sync", -1, True))
    for impl, variant, tf32 in cases:
        c.fill(cp.nan)
        _cuda.matmul(a, b, False, False, None, 0, c, variant, tf32, stream)
        err = rel_err(c, ref)
        tol = 1e-2 if tf32 else 1e-4
        ok = bool(cp.isfinite(c).all()) and err < tol
        if not ok:
            add(impl, None, err, False, f"WRONG (tolerance {tol:g})")
            ERRORS.append(f"gemm {shape} {impl}: wrong result, rel err {err:.3g}")
            continue
        t = time_ms(lambda: _cuda.matmul(a, b, False, False, None, 0, c, variant, tf32, stream), reps)
        add(impl, t, err, True, f"{t_ref['median_ms'] / t['median_ms']:.2f}x cuBLAS fp32")
    if torch is not None:
        ta, tb = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
        tc = torch.empty((M, N), device="cuda")
        for allow, impl in ((False, "torch fp32"), (True, "torch tf32 (cuBLAS)")):
            prev = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = allow
            try:
                torch.matmul(ta, tb, out=tc)
                err = rel_err(cp.asarray(tc), ref)
                t = time_torch_ms(torch, lambda: torch.matmul(ta, tb, out=tc), reps)
                add(impl, t, err, True)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = prev
    return rows


# ------------------------------------------------------------ bandwidth-bound
def bench_stream(n: int, reps: int) -> tuple[dict, list[dict]]:
    rng = cp.random
    x = rng.standard_normal(n, dtype=cp.float32)
    y = rng.standard_normal(n, dtype=cp.float32)
    z = cp.empty(n, dtype=cp.float32)
    dst = cp.empty(n, dtype=cp.float32)
    nbytes = 4 * n
    copy = {}
    t = time_ms(lambda: dst.data.copy_from_device_async(x.data, nbytes), reps)
    copy["cudaMemcpyAsync D2D"] = {**t, "gbps": 2 * nbytes / (t["median_ms"] * 1e-3) / 1e9}
    t = time_ms(lambda: cp.copyto(dst, x), reps)
    copy["cupy.copyto"] = {**t, "gbps": 2 * nbytes / (t["median_ms"] * 1e-3) / 1e9}
    ceiling = max(v["gbps"] for v in copy.values())
    for k, v in copy.items():
        log(f"  copy {k:>22s} {v['gbps']:8.1f} GB/s (read + write)")
    stream = cp.cuda.get_current_stream().ptr
    ws = cp.empty(_cuda.mse_workspace_len(), dtype=cp.float64)
    loss = cp.empty(1, dtype=cp.float32)
    w, m, v, g = (rng.standard_normal(n, dtype=cp.float32) for _ in range(4))
    v = cp.abs(v)

    def sig(a):
        return 1 / (1 + cp.exp(-a))

    act_ref = {"relu": lambda a: cp.maximum(a, 0), "sigmoid": sig, "tanh": cp.tanh}
    bwd_ref = {"relu": lambda dy, yy: cp.where(yy > 0, dy, 0), "sigmoid": lambda dy, yy: dy * (yy * (1 - yy)),
               "tanh": lambda dy, yy: dy * (1 - yy * yy)}
    cases = []
    for act in ("relu", "sigmoid", "tanh"):
        cases.append((f"act_forward {act}", 2,
                      lambda act=act: _cuda.act_forward(x, ACTS[act], z, stream),
                      lambda act=act: rel_err(z, act_ref[act](x))))
    yact = {}
    for act in ("relu", "sigmoid", "tanh"):
        yact[act] = act_ref[act](x).astype(cp.float32)
        cases.append((f"act_backward {act}", 3,
                      lambda act=act: _cuda.act_backward(y, yact[act], ACTS[act], z, stream),
                      lambda act=act: rel_err(z, bwd_ref[act](y, yact[act]))))
    cases.append(("mse (into device float)", 2,
                  lambda: _cuda.mse(x, y, loss, ws, stream),
                  lambda: abs(float(loss[0]) - float(cp.mean((x.astype(cp.float64) - y) ** 2)))
                  / float(cp.mean((x.astype(cp.float64) - y) ** 2))))
    cases.append(("mse_grad", 3, lambda: _cuda.mse_grad(x, y, 2.0 / n, z, stream),
                  lambda: rel_err(z, (2.0 / n) * (x - y))))
    rows_, cols_ = n // 1024, 1024
    xb, bb = x.reshape(rows_, cols_), y[:cols_]
    zb = z.reshape(rows_, cols_)
    cases.append(("bias_act relu (65536x1024)", 2,
                  lambda: _cuda.bias_act(xb, bb, ACTS["relu"], zb, stream),
                  lambda: rel_err(zb, cp.maximum(xb + bb, 0))))
    # Optimizer updates change their inputs: timed only, checked by the tests.
    cases.append(("sgd_update momentum", 5,
                  lambda: _cuda.sgd_update(w, g, m, 1e-6, 0.9, False, stream), None))
    cases.append(("adam_update", 7,
                  lambda: _cuda.adam_update(w, g, m, v, 1e-6, 0.9, 0.999, 1e-7, 1000, stream), None))
    rows = []
    for name, passes, fn, check in cases:
        def one(name=name, passes=passes, fn=fn, check=check):
            z.fill(cp.nan)
            fn()
            err = check() if check else None
            if err is not None and not err < 1e-5:
                ERRORS.append(f"{name}: wrong result, rel err {err:.3g}")
                log(f"  {name:>28s} WRONG rel err {err:.3g} (not timed)")
                rows.append({"kernel": name, "n": n, "correct": False, "rel_err": err})
                return
            t = time_ms(fn, reps)
            gbps = passes * nbytes / (t["median_ms"] * 1e-3) / 1e9
            rows.append({"kernel": name, "n": n, "bytes": passes * nbytes, **t, "gbps": gbps,
                         "fraction_of_copy": gbps / ceiling, "correct": True, "rel_err": err})
            log(f"  {name:>28s} {gbps:8.1f} GB/s  {gbps / ceiling:6.1%} of copy")
        guarded(name, one)
    return {"ceiling_gbps": ceiling, **copy}, rows


# ------------------------------------------------------- per-call overhead
def bench_overhead(torch, calls: int = 2000) -> list[dict]:
    """Host wall-clock per call for the seed MLP's first layer, Python included."""
    rows = []
    x = cp.random.standard_normal((32, 10), dtype=cp.float32)
    w = cp.random.standard_normal((10, 64), dtype=cp.float32)
    b = cp.random.standard_normal(64, dtype=cp.float32)
    out = cp.empty((32, 64), dtype=cp.float32)
    stream = cp.cuda.get_current_stream().ptr
    fusednn.set_backend("cuda")
    fns = {
        "_cuda.matmul (bias+relu fused)": lambda: _cuda.matmul(x, w, False, False, b, 1, out, -1, False, stream),
        "fusednn.ops.linear (relu)": lambda: fusednn.ops.linear(x, w, b, activation="relu", out=out),
        "cupy matmul + bias + relu": lambda: cp.maximum(cp.matmul(x, w) + b, 0, out=out),
    }
    if torch is not None:
        tx, tw, tb = (torch.as_tensor(t, device="cuda") for t in (x, w, b))
        fns["torch relu(linear) eager"] = lambda: torch.relu(torch.nn.functional.linear(tx, tw.T, tb))
    for name, fn in fns.items():
        for _ in range(50):
            fn()
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        cp.cuda.Device().synchronize()
        us = (time.perf_counter() - t0) / calls * 1e6
        rows.append({"call": name, "us_per_call": us})
        log(f"  overhead {name:>34s} {us:7.2f} us/call")
    return rows


# ------------------------------------------------------------------- report
def table(result: dict) -> str:
    lines = [f"fusednn CUDA benchmark on {result['device']['name']} "
             f"(cc {result['device']['cc']}, {result['device']['sms']} SMs); "
             f"command: {result['command']}"]
    lines.append("")
    lines.append(f"{'GEMM shape':>20s} {'implementation':>22s} {'ms':>9s} {'TFLOP/s':>8s} {'vs cuBLAS':>9s}")
    ref_ms = {}
    for r in result["gemm"]:
        if r["impl"] == "cublas fp32 (cupy)":
            ref_ms[r["shape"]] = r["median_ms"]
    for r in result["gemm"]:
        if "median_ms" not in r:
            lines.append(f"{r['shape']:>20s} {r['impl']:>22s} {'WRONG':>9s} rel err {r['rel_err_vs_cublas']:.2e}")
            continue
        ratio = ref_ms.get(r["shape"], float("nan")) / r["median_ms"]
        lines.append(f"{r['shape']:>20s} {r['impl']:>22s} {r['median_ms']:9.4f} {r['tflops']:8.2f} {ratio:8.2f}x")
    st = result.get("stream")
    if st:
        lines.append("")
        lines.append(f"streaming at n = {st['n']} floats; copy ceiling {st['copy']['ceiling_gbps']:.0f} GB/s "
                     f"(read + write; cudaMemcpyAsync D2D {st['copy']['cudaMemcpyAsync D2D']['gbps']:.0f}, "
                     f"cupy.copyto {st['copy']['cupy.copyto']['gbps']:.0f})")
        lines.append(f"{'kernel':>30s} {'ms':>8s} {'GB/s':>8s} {'of copy':>8s}")
        for r in st["rows"]:
            if not r.get("correct"):
                lines.append(f"{r['kernel']:>30s} {'WRONG':>8s}")
                continue
            lines.append(f"{r['kernel']:>30s} {r['median_ms']:8.4f} {r['gbps']:8.1f} {r['fraction_of_copy']:8.1%}")
    if result.get("overhead"):
        lines.append("")
        lines.append("host wall clock per call, 32x10 @ 10x64 + bias + relu (Python included)")
        for r in result["overhead"]:
            lines.append(f"{r['call']:>40s} {r['us_per_call']:8.2f} us")
    if ERRORS:
        lines.append("")
        lines.append(f"{len(ERRORS)} error(s):")
        lines.extend("  " + e for e in ERRORS)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, no 4096^3")
    p.add_argument("--out", default=os.environ.get("OUT", ""), help="folder for bench_cuda.json/.txt")
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args(argv)
    reps = max(10, args.reps) if not args.quick else 5
    torch = load_torch()
    info = _cuda.device_info(_cuda.current_device())
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:])),
        "device": {"name": info["name"], "cc": "{}.{}".format(*info["compute_capability"]),
                   "sms": info["multiprocessors"], "total_memory": info["total_memory"]},
        "versions": {"fusednn": fusednn.__version__, "python": platform.python_version(),
                     "numpy": np.__version__, "cupy": cp.__version__,
                     "torch": getattr(torch, "__version__", None), "cuda_archs": _cuda.archs},
        "gemm_variants": _cuda.gemm_variants(),
        "gemm": [], "stream": None, "overhead": [],
    }
    log(f"device: {info['name']} cc {result['device']['cc']}; variants: {_cuda.gemm_variants()}")
    # the seed MLP's and the 784-256-256-10 MLP's forward products, then square ones
    shapes = [(32, 64, 10), (32, 64, 64), (128, 256, 784), (128, 256, 256), (128, 10, 256), (256, 256, 256),
              (1024, 1024, 1024), (2048, 2048, 2048)]
    if not args.quick:
        shapes.append((4096, 4096, 4096))
    for M, N, K in shapes:
        rows = guarded(f"gemm {M}x{N}x{K}", bench_gemm, M, N, K, reps, torch)
        result["gemm"].extend(rows or [])
    stream = guarded("streaming kernels", bench_stream, 1 << 26, reps)
    if stream:
        result["stream"] = {"n": 1 << 26, "copy": stream[0], "rows": stream[1]}
    result["overhead"] = guarded("overhead", bench_overhead, torch) or []
    result["errors"] = ERRORS
    text = table(result)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bench_cuda.json"), "w") as f:
            json.dump(result, f, indent=1, default=str)
        with open(os.path.join(args.out, "bench_cuda.txt"), "w") as f:
            f.write(text + "\n")
    print("\n" + text, flush=True)
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main())
