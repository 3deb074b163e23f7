"""fusednn bench: results are checked before they are timed, and reported."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from fusednn import bench
from fusednn.bench import kernels


def test_each_result_is_checked_and_a_wrong_kernel_is_not_timed(monkeypatch):
    results = bench.run(["relu"], ["numpy"], quick=True, repeats=1, references=False)
    assert results and all(r.status == "ok" and r.median_s > 0 and r.rate > 0 for r in results)
    # a relu that is 0.1% off: reported as wrong, never timed
    monkeypatch.setattr(kernels.ops, "activation", lambda x, name, out=None: np.maximum(x, 0) * np.float32(1.001))
    broken = bench.run(["relu"], ["numpy"], quick=True, repeats=1, references=False)
    assert all(r.status == "wrong" and r.median_s is None and "not timed" in r.note for r in broken)


def test_ratio_against_the_reference_in_the_same_run():
    results = bench.run(["matmul"], ["numpy"], quick=True, repeats=1)
    fused = [r for r in results if r.impl == "fusednn-numpy" and r.size.startswith("32x10")]
    assert fused and fused[0].reference == "numpy" and fused[0].ratio > 0
    table = bench.format_table(results)
    assert "GFLOP/s" in table and "fusednn-numpy" in table


def test_cli_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "fusednn", "bench", "sgd_update", "--backend", "numpy", "--quick",
                        "--repeats", "1", "--no-references", "--json", str(path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(path.read_text())
    assert doc["machine"]["fusednn"] and doc["results"][0]["kernel"] == "sgd_update"
    assert np.isfinite(doc["results"][0]["rate"])
    bad = subprocess.run([sys.executable, "-m", "fusednn", "bench", "nosuchkernel"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown kernel" in bad.stderr
