"""``fusednn bench``: kernel timings users can trust.

Each case runs on every selected fusednn backend and on the reference libraries
present (NumPy always; PyTorch CPU when installed; CuPy/cuBLAS with a GPU), all
in the same process and run. Every implementation's output is first checked
against a float64 expected result: a wrong one is reported, not timed. Timings
are medians over several repeats after a warm-up, with the spread, and each
fusednn row carries its ratio to the reference (NumPy on the host, CuPy on the
GPU): above 1 means fusednn is faster.
"""
from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np

from .. import backends
from .kernels import KERNELS, Case, cases
from .timing import Timing, measure

__all__ = ["Result", "run", "format_table", "write_json", "plot", "KERNELS"]


@dataclass
class Result:
    """One implementation of one case."""

    kernel: str
    size: str
    impl: str  # "fusednn-cpu", "numpy", "torch-cpu", "cupy", ...
    status: str  # "ok", "wrong", "error", "skipped"
    median_s: float | None = None
    low_s: float | None = None
    high_s: float | None = None
    rate: float | None = None  # GFLOP/s or GB/s
    unit: str = ""
    ratio: float | None = None  # reference time / this time (fusednn rows)
    reference: str | None = None
    of_copy: float | None = None  # rate / copy bandwidth (bandwidth-bound host rows)
    error: float | None = None
    note: str = ""


class _Impl:
    """Where one implementation's arrays live and how to wait for it."""

    def __init__(self, name: str, xp: Any, to_host, sync, kind: str):
        self.name, self.xp, self.to_host, self.sync, self.kind = name, xp, to_host, sync, kind


def _impls(backend_names: Iterable[str], with_refs: bool) -> list[_Impl]:
    out = []
    avail = backends.available()
    for name in backend_names:
        if name not in avail:
            continue
        be = backends.backend(name)
        out.append(_Impl(f"fusednn-{name}", be.xp, be.to_numpy, be.synchronize, name))
    if not with_refs:
        return out
    out.append(_Impl("numpy", np, np.asarray, lambda: None, "numpy-ref"))
    try:
        import torch

        out.append(_Impl("torch-cpu", torch, lambda t: t.detach().numpy() if hasattr(t, "detach") else t,
                         lambda: None, "torch-ref"))
    except ImportError:
        pass
    if "cuda" in avail:
        import cupy

        out.append(_Impl("cupy", cupy, cupy.asnumpy, lambda: cupy.cuda.get_current_stream().synchronize(),
                         "cupy-ref"))
    return out


def _place(impl: _Impl, xs: dict[str, np.ndarray]) -> dict[str, Any]:
    if impl.kind == "torch-ref":
        import torch

        return {k: torch.from_numpy(v.copy()) for k, v in xs.items()}
    if impl.kind in ("cuda", "cupy-ref"):
        import cupy

        return {k: cupy.asarray(v) for k, v in xs.items()}
    return {k: v.copy() for k, v in xs.items()}


def _factory(case: Case, impl: _Impl):
    if impl.kind in ("numpy", "cpu", "cuda"):
        return case.fusednn
    return case.refs.get(impl.kind.replace("-ref", ""))


def _rel_error(got: Any, impl: _Impl, expected: np.ndarray) -> float:
    g = np.asarray(impl.to_host(got), dtype=np.float64).reshape(expected.shape)
    if not np.all(np.isfinite(g)):
        return float("inf")
    return float(np.max(np.abs(g - expected)) / max(np.max(np.abs(expected)), 1e-30))


def run(kernels: Iterable[str] | None = None, backend_names: Iterable[str] | None = None, *,
        quick: bool = False, repeats: int = 7, references: bool = True, seed: int = 0,
        progress=None) -> list[Result]:
    """Run the selected cases and return one :class:`Result` per implementation and case.

    ``kernels`` filters by kernel name prefix (see ``KERNELS``); ``backend_names`` picks
    fusednn backends (default: every available one); ``quick`` uses fewer sizes."""
    wanted = list(kernels) if kernels else None
    names = list(backend_names) if backend_names else backends.available()
    impls = _impls(names, references)
    previous = backends.get_backend().name
    results: list[Result] = []
    try:
        for case in cases(quick):
            if wanted and not any(case.kernel == w or case.kernel.startswith(w + "+") for w in wanted):
                continue
            rng = np.random.default_rng(seed)
            xs = case.make(rng)
            expected = case.expected(xs)
            rows = []
            for impl in impls:
                factory = _factory(case, impl)
                if factory is None:
                    continue
                if impl.kind in ("numpy", "cpu", "cuda"):
                    backends.set_backend(impl.kind)  # NumPy inputs follow the active host backend
                r = Result(case.kernel, case.size, impl.name, "ok", unit=case.unit)
                try:
                    fn = factory(impl.xp, _place(impl, xs))
                    err = _rel_error(fn(), impl, expected)
                    r.error = err
                    if not err <= max(case.tol, 1e-7):
                        r.status = "wrong"
                        r.note = f"max rel error {err:.2e} > {case.tol:.1e}: not timed"
                    else:
                        t: Timing = measure(fn, impl.sync, repeats=repeats)
                        r.median_s, r.low_s, r.high_s = t.median, t.low, t.high
                        r.rate = case.work / t.median / 1e9
                except Exception as e:  # a failing implementation is reported, the run goes on
                    r.status = "error"
                    r.note = f"{type(e).__name__}: {e}"[:200]
                rows.append(r)
                if progress:
                    progress(r)
            _fill_ratios(rows)
            results += rows
    finally:
        backends.set_backend(previous)
    _fill_copy_fractions(results)
    return results


def _fill_ratios(rows: list[Result]) -> None:
    by_impl = {r.impl: r for r in rows}
    for r in rows:
        if not r.impl.startswith("fusednn-") or r.median_s is None:
            continue
        ref_name = "cupy" if r.impl == "fusednn-cuda" else "numpy"
        ref = by_impl.get(ref_name)
        if ref is not None and ref.median_s:
            r.ratio = ref.median_s / r.median_s
            r.reference = ref_name


def _fill_copy_fractions(results: list[Result]) -> None:
    copy_rate = {(r.size, "cupy" if r.impl in ("cupy", "fusednn-cuda") else "numpy"): r.rate
                 for r in results if r.kernel == "copy" and r.impl in ("numpy", "cupy") and r.rate}
    for r in results:
        if r.unit == "GB/s" and r.rate and r.kernel != "copy":
            c = copy_rate.get((r.size, "cupy" if r.impl in ("cupy", "fusednn-cuda") else "numpy"))
            if c:
                r.of_copy = r.rate / c


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def format_table(results: list[Result]) -> str:
    """A fixed-width table, one row per implementation and case."""
    head = f"{'kernel':<14} {'size':<26} {'impl':<14} {'median':>9} {'spread':>7} {'rate':>14} {'ratio':>7} {'of copy':>8}  note"
    lines = [head, "-" * len(head)]
    last = None
    for r in results:
        key = (r.kernel, r.size)
        if last is not None and key != last:
            lines.append("")
        last = key
        spread = f"{(r.high_s - r.low_s) / r.median_s * 100:.0f}%" if r.median_s else "-"
        rate = f"{r.rate:.1f} {r.unit}" if r.rate is not None else r.status.upper()
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        of_copy = f"{r.of_copy:.2f}" if r.of_copy is not None else ""
        lines.append(f"{r.kernel:<14} {r.size:<26} {r.impl:<14} {_fmt_time(r.median_s):>9} {spread:>7} "
                     f"{rate:>14} {ratio:>7} {of_copy:>8}  {r.note}")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import fusednn

    info: dict[str, Any] = {
        "fusednn": fusednn.__version__, "python": platform.python_version(), "numpy": np.__version__,
        "platform": platform.platform(), "threads": fusednn.get_num_threads(), "command": " ".join(sys.argv),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        info["cpu"] = platform.processor()
    k = backends.native("cpu")
    if k is not None:
        info["simd"] = k.simd_path()
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def write_json(results: list[Result], path: str, extra: dict | None = None) -> None:
    """Write the results and the machine description as JSON."""
    import datetime

    doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
           "results": [asdict(r) for r in results], **(extra or {})}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def plot(results: list[Result], path: str) -> None:
    """Bar chart of each fusednn row's ratio to its reference (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'fusednn[plot]'") from None
    rows = [r for r in results if r.ratio is not None]
    if not rows:
        raise RuntimeError("nothing to plot: no fusednn row has a reference timing")
    fig, ax = plt.subplots(figsize=(10, max(3, 0.28 * len(rows))))
    labels = [f"{r.kernel} {r.size} [{r.impl.replace('fusednn-', '')}]" for r in rows]
    ax.barh(range(len(rows)), [r.ratio for r in rows], color=["tab:green" if r.ratio >= 1 else "tab:red" for r in rows])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed relative to reference (NumPy on CPU, CuPy on GPU); >1 is faster")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
