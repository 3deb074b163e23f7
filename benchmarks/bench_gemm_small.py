"""The small GEMMs of scikit-learn-sized MLP training: fusednn's CPU matmul against
NumPy/OpenBLAS, same run.

    python benchmarks/bench_gemm_small.py [--repeats 7] [--threads 1] [--baseline OTHER/_cpu.so]

One training step of a (features -> 100 relu -> outputs) network on a batch of
200 rows runs five products: the two forward ones (A·W + b, fused epilogue), the
two weight gradients Xᵀ·G (transpose_a) and the input gradient G·Wᵀ
(transpose_b). The shapes below are those of the digits (64 features, 10
classes), breast-cancer (30, 1 logistic output), diabetes (10, 1) and
California-like (8, 1) tasks of bench_sklearn.py. Each row times both
libraries writing into a preallocated output (NumPy: ``np.matmul(..., out=)``
on the transposed views, which OpenBLAS reads in place), ``--inner`` calls per
sample, the two libraries' samples taken in turn, and reports the median of
``--repeats`` samples per call in µs of process CPU time (Python call overhead
included on both sides, about 1 µs each). Every product is first
checked against a float64 product. ``--baseline`` loads another build of the
``_cpu`` extension (e.g. one built from an earlier commit) and times it in the same
run, as a third column, so that a kernel change is measured against its predecessor.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fusednn
from fusednn import backends
from fusednn.backends import activation_code

# (label, M, N, K, transpose_a, transpose_b, bias+relu epilogue)
SHAPES = [
    ("digits fwd1 X·W1+b relu", 200, 100, 64, False, False, True),
    ("digits fwd2 H·W2+b", 200, 10, 100, False, False, False),
    ("digits dW2 Hᵀ·G", 100, 10, 200, True, False, False),
    ("digits dH G·W2ᵀ", 200, 100, 10, False, True, False),
    ("digits dW1 Xᵀ·G", 64, 100, 200, True, False, False),
    ("bc fwd1 X·W1+b relu", 200, 100, 30, False, False, True),
    ("bc dW2 Hᵀ·g", 100, 1, 200, True, False, False),
    ("bc dH g·W2ᵀ", 200, 100, 1, False, True, False),
    ("bc dW1 Xᵀ·G", 30, 100, 200, True, False, False),
    ("diabetes fwd1 X·W1+b relu", 200, 100, 10, False, False, True),
    ("diabetes dW1 Xᵀ·G", 10, 100, 200, True, False, False),
    ("calif dW1 Xᵀ·G", 8, 100, 200, True, False, False),
    ("issue 64x10 K=200 (TN)", 64, 10, 200, True, False, False),
    ("hidden 100x100 K=200 (TN)", 100, 100, 200, True, False, False),
    ("hidden G·Wᵀ 200x100 K=100 (NT)", 200, 100, 100, False, True, False),
]


def per_call_us(fns, inner: int, repeats: int) -> list[float]:
    """Median µs per call of each function in ``fns``, sampled in turn (so that both
    libraries see the same machine state), timed as this process's CPU time: the
    shared machine deschedules us often, and wall time would count that."""
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.process_time()
            for _ in range(inner):
                fn()
            samples[i].append((time.process_time() - t0) / inner * 1e6)
    return [statistics.median(s) for s in samples]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--inner", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", help="path of another build's _cpu extension module, timed beside this one")
    args = ap.parse_args()
    fusednn.set_num_threads(args.threads)
    k = backends.native("cpu")
    base = None
    if args.baseline:
        spec = importlib.util.spec_from_file_location("_cpu", args.baseline)
        base = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(base)
        if hasattr(base, "set_num_threads"):
            base.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0]
    print(f"# fusednn {fusednn.__version__} threads={args.threads} repeats={args.repeats} inner={args.inner}; "
          f"load average {load:.2f}")
    extra_head, extra_rule = (" baseline µs | baseline/fusednn |", "---|---|") if base else ("", "")
    print(f"| product | M×N×K | fusednn µs | NumPy µs | NumPy/fusednn |{extra_head}")
    print(f"|---|---|---|---|---|{extra_rule}")
    ratios = []
    with threadpool_limits(args.threads):
        for label, M, N, K, ta, tb, epi in SHAPES:
            a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
            b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
            bias = rng.standard_normal(N).astype(np.float32) if epi else None
            act = activation_code("relu" if epi else "linear")
            out = np.empty((M, N), np.float32)
            out_np = np.empty((M, N), np.float32)
            av, bv = (a.T if ta else a), (b.T if tb else b)
            ref = av.astype(np.float64) @ bv.astype(np.float64)
            if epi:
                ref = np.maximum(ref + bias, 0)
            k.matmul(a, b, ta, tb, bias, act, out)
            err = np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30)
            assert err < 1e-5, (label, err)

            def ours():
                k.matmul(a, b, ta, tb, bias, act, out)

            if epi:
                def theirs():
                    np.matmul(av, bv, out=out_np)
                    np.add(out_np, bias, out=out_np)
                    np.maximum(out_np, 0, out=out_np)
            else:
                def theirs():
                    np.matmul(av, bv, out=out_np)

            fns = [ours, theirs]
            if base is not None:
                out_b = np.empty((M, N), np.float32)
                base.matmul(a, b, ta, tb, bias, act, out_b)
                assert np.max(np.abs(out_b - ref)) / max(np.max(np.abs(ref)), 1e-30) < 1e-5, label
                fns.append(lambda: base.matmul(a, b, ta, tb, bias, act, out_b))
            times = per_call_us(fns, args.inner, args.repeats)
            t_f, t_n = times[0], times[1]
            ratios.append(t_n / t_f)
            extra = f" {times[2]:.2f} | {times[2] / t_f:.2f} |" if base is not None else ""
            print(f"| {label} | {M}×{N}×{K} | {t_f:.2f} | {t_n:.2f} | {t_n / t_f:.2f} |{extra}", flush=True)
    gm = float(np.exp(np.mean(np.log(ratios))))
    print(f"# geometric mean NumPy/fusednn: {gm:.2f}; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
