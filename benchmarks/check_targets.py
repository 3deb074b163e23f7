"""Issue 14's targets, read from one gpu_check.sh run's JSON (bench_cuda.json and
bench_training.json in DIR), printed as a met / MISSED table.

    python benchmarks/check_targets.py DIR

Targets (H200): the brief's program (seed workload, 100 epochs) <= 30 ms on cuda,
>= 100x PyTorch CUDA eager and >= 2x our cpu backend; the 784-256-256-10 MLP one epoch
<= 0.1 s; FP32 GEMM >= 0.95x cuBLAS at 2048^3 and 4096^3 and >= 1.0x on the MLP
shapes; TF32 >= 0.6x cuBLAS TF32 at 4096^3; elementwise kernels >= 85 % of copy
bandwidth. For each cuda training figure the best of the three trainer paths (per-op,
graph, persistent) is used and named. Only reads files: no GPU needed.
"""
from __future__ import annotations

import json
import os
import sys

MLP_SHAPES = {(32, 64, 10), (32, 64, 64), (128, 256, 784), (128, 256, 256), (128, 10, 256)}


def _load(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def training_rows(doc: dict | None) -> list[tuple[str, str, str]]:
    if not doc:
        return [("training targets", "no bench_training.json", "MISSING")]
    t = {(r["workload"], r["impl"]): r["seconds"] for r in doc.get("runs", []) if r.get("seconds")}
    out = []
    for wl in ("seed", "mlp"):
        cuda = {impl: s for (w, impl), s in t.items() if w == wl and impl.startswith("fusednn-cuda")}
        if not cuda:
            out.append((f"{wl}: fusednn on cuda", "no timing", "MISSING"))
            continue
        best_impl, best = min(cuda.items(), key=lambda kv: kv[1])
        paths = ", ".join(f"{k.removeprefix('fusednn-')} {v * 1e3:.1f} ms" for k, v in sorted(cuda.items()))
        if wl == "seed":
            out.append(("seed 100 epochs <= 30 ms", f"{best * 1e3:.1f} ms ({paths})", "met" if best <= 0.030 else "MISSED"))
            torch = t.get((wl, "torch-cuda"))
            if torch:
                r = torch / best
                out.append(("seed >= 100x torch-cuda eager", f"{r:.0f}x ({torch:.2f} s / {best_impl})",
                            "met" if r >= 100 else "MISSED"))
            cpu = t.get((wl, "fusednn-cpu"))
            if cpu:
                r = cpu / best
                out.append(("seed >= 2x fusednn-cpu", f"{r:.2f}x ({cpu * 1e3:.1f} ms / {best_impl})",
                            "met" if r >= 2 else "MISSED"))
        else:
            out.append(("mlp 1 epoch <= 0.1 s", f"{best:.3f} s ({paths})", "met" if best <= 0.1 else "MISSED"))
    return out


def gemm_rows(doc: dict | None) -> list[tuple[str, str, str]]:
    if not doc:
        return [("GEMM / streaming targets", "no bench_cuda.json", "MISSING")]
    by_shape: dict[tuple[int, int, int], dict[str, float]] = {}
    for r in doc.get("gemm", []):
        if r.get("correct") and r.get("median_ms"):
            by_shape.setdefault((r["M"], r["N"], r["K"]), {})[r["impl"]] = r["median_ms"]
    out = []
    for shape, times in sorted(by_shape.items()):
        ref = times.get("cublas fp32 (cupy)")
        ours = {k: v for k, v in times.items() if k.startswith("v") or k.startswith("auto")}
        if not ref or not ours:
            continue
        best_impl, best = min(ours.items(), key=lambda kv: kv[1])
        auto = next((v for k, v in ours.items() if k.startswith("auto")), None)
        want = 1.0 if shape in MLP_SHAPES else (0.95 if shape[0] >= 2048 else None)
        if want is None:
            continue
        r = ref / best
        note = f"best {best_impl} {r:.2f}x" + (f", auto {ref / auto:.2f}x" if auto else "")
        out.append((f"FP32 GEMM {shape[0]}x{shape[1]}x{shape[2]} >= {want}x cuBLAS", note, "met" if r >= want else "MISSED"))
        if shape == (4096, 4096, 4096):
            tf = times.get("tf32 mma.sync")
            ref_tf = times.get("torch tf32 (cuBLAS)")
            if tf and ref_tf:
                r = ref_tf / tf
                out.append(("TF32 4096^3 >= 0.6x cuBLAS TF32", f"{r:.2f}x", "met" if r >= 0.6 else "MISSED"))
    st = doc.get("stream")
    if st:
        low = min((r for r in st["rows"] if r.get("correct")), key=lambda r: r["fraction_of_copy"], default=None)
        if low:
            out.append(("elementwise >= 85% of copy", f"lowest {low['kernel']} {low['fraction_of_copy']:.1%}",
                        "met" if low["fraction_of_copy"] >= 0.85 else "MISSED"))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    d = argv[0]
    rows = training_rows(_load(os.path.join(d, "bench_training.json")))
    rows += gemm_rows(_load(os.path.join(d, "bench_cuda.json")))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    text = "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)
    print("issue 14 targets (H200)\n" + text)
    with open(os.path.join(d, "targets.txt"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
