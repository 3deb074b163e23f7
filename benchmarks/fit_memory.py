"""Peak memory of fit() on the larger MLP workload (60 000 x 784 float32 inputs,
784 -> 256 -> 256 -> 10, batch 128, 1 epoch) against the size of the data set.

Target (issue 5): the peak during fit is at most dataset size + 100 MB, i.e. fit
makes no full copy of the data. Each backend runs in a fresh process; the peak
resident size is reset just before fit (Linux: /proc/self/clear_refs) and read
after it (VmHWM), so data creation does not count.

    python benchmarks/fit_memory.py [--backend cpu] [--backend numpy]
"""
from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import numpy as np, fusednn
from fusednn import keras
from fusednn.bench.training import WORKLOADS

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

w = WORKLOADS["mlp"]
x, y = w.data(0)
fusednn.set_backend(BACKEND)
model = keras.Sequential([keras.layers.Dense(256, activation="relu", input_shape=(784,)),
                          keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)])
model.compile(optimizer="adam", loss="mse")
model.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)  # first-use costs (imports, pools)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
model.fit(x, y, batch_size=128, epochs=1, verbose=0)
peak = status("VmHWM")
print(x.nbytes + y.nbytes, before, peak)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", action="append", choices=["cpu", "numpy", "cuda"])
    args = ap.parse_args()
    print(f"{'backend':<8} {'data MB':>8} {'extra peak during fit MB':>25}  target (<= 100 MB)")
    for backend in args.backend or ["cpu", "numpy"]:
        out = subprocess.run([sys.executable, "-c", CHILD.replace("BACKEND", repr(backend))],
                             capture_output=True, text=True, check=True).stdout.split()
        data, before, peak = map(int, out)
        extra = (peak - before) / 2**20
        print(f"{backend:<8} {data / 2**20:8.1f} {extra:25.1f}  {'met' if extra <= 100 else 'MISSED'}")
    print("command: python benchmarks/fit_memory.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
