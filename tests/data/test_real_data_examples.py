"""The real-data examples run end to end and meet their accuracy targets (timings
are reported by the examples, never asserted)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the examples compare against scikit-learn (pip install scikit-learn)")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, *args: str) -> str:
    r = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                       timeout=300, cwd=EXAMPLES)
    assert r.returncode == 0, r.stderr
    return r.stdout


def row(out: str, prefix: str) -> list[float]:
    line = next(ln for ln in out.splitlines() if ln.startswith(prefix))
    return [float(v) for v in re.findall(r"-?\d+\.\d+", line)]


def test_digits_accuracy():
    out = run("digits.py")
    assert row(out, "fusednn")[0] >= 0.96


def test_breast_cancer_f1():
    out = run("breast_cancer.py")
    assert row(out, "fusednn")[3] >= 0.95


def test_diabetes_r2_close_to_sklearn():
    out = run("diabetes.py")
    ours, theirs = row(out, "fusednn")[0], row(out, "sklearn")[0]
    assert ours >= theirs - 0.03
