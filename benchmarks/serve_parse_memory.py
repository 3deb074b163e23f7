"""Peak memory (tracemalloc) and time of parsing a ~16 MB /predict body to float32:
``fusednn.serve.parse_inputs`` against the reference ``json.loads`` -> float64 array ->
float32 (what the server did before), for random float32 values, single-digit integers
(most numbers per byte) and short floats (a new Python float per 4 bytes for json.loads).

Run: python benchmarks/serve_parse_memory.py
"""
from __future__ import annotations

import json
import multiprocessing
import threading
import time
import tracemalloc

import numpy as np

from fusednn import serve


def reference(body: bytes, dim: int, max_batch: int) -> np.ndarray:
    return np.array(json.loads(body)["inputs"], dtype=np.float64).astype(np.float32)


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _rss_growth(args: tuple) -> int:
    """Peak RSS growth of one parse over the RSS just before it (sampled every 2 ms by a
    thread), in a fresh process: the issue measured RSS."""
    kind, body, dim = args
    parse = reference if kind == 0 else serve.parse_inputs
    before, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample)
    t.start()
    parse(body, dim, 10_000)
    done.set()
    t.join()
    return max(peak[0], _rss()) - before


def main() -> None:
    rng = np.random.default_rng(0)
    cases = [("random float32 values", json.dumps({"inputs": rng.standard_normal((10_000, 80)).astype(
        np.float32).tolist()}).encode(), 80),
        ("single-digit integers", b'{"inputs": [' + b",".join([b"[" + b",".join([b"1"] * 800) + b"]"] * 10_000)
         + b"]}", 800),
        ("short floats (d.d)", b'{"inputs": [' + b",".join([b"[" + b",".join(
            b"%d.%d" % (k % 10, (k // 10) % 10) for k in range(800)) + b"]"] * 5_000) + b"]}", 800)]
    print("| body | size | parser | peak traced (tracemalloc) | traced / body | peak RSS growth | RSS growth / body "
          "| time (under tracemalloc) |")
    print("|---|---|---|---|---|---|---|---|")
    ctx = multiprocessing.get_context("spawn")
    for name, body, dim in cases:
        results = []
        for label, parse in (("json.loads (reference)", reference), ("fusednn.serve.parse_inputs", serve.parse_inputs)):
            tracemalloc.start()
            t0 = time.perf_counter()
            x = parse(body, dim, 10_000)
            seconds = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            results.append(x)
            with ctx.Pool(1) as pool:
                rss = pool.map(_rss_growth, [(len(results) - 1, body, dim)])[0]
            print(f"| {name} | {len(body) / 2**20:.1f} MiB | {label} | {peak / 2**20:.0f} MiB | "
                  f"{peak / len(body):.1f}x | {rss / 2**20:.0f} MiB | {rss / len(body):.1f}x | {seconds:.2f} s |")
        assert np.array_equal(results[0], results[1]), "the parsers disagree"
    print("# command: python benchmarks/serve_parse_memory.py")


if __name__ == "__main__":
    main()
