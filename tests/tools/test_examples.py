"""The examples and `fusednn demo` run end to end and reach what they promise."""
from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusednn import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_seed_program_runs_unchanged(name):
    import fusednn

    if name not in fusednn.available_backends():
        pytest.skip(f"the {name} backend is not available here")
    env = dict(os.environ, FUSEDNN_BACKEND=name)
    run = subprocess.run([sys.executable, str(EXAMPLES / "seed_keras.py")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    # verbose='auto' off a terminal: one line per epoch of the first fit
    epoch_losses = [float(v) for v in re.findall(r"^Epoch \d+/100 - 32/32 .* loss: ([\d.]+)$", out, re.M)]
    assert len(epoch_losses) == 100
    losses = [float(v) for v in re.findall(r"^Epoch \d+: Loss = ([\d.e-]+)$", out, re.M)]
    assert len(losses) == 10
    # y is uniform on [0, 1): the best constant predictor's loss is its variance, 1/12
    assert losses[-1] < 0.75 / 12 and epoch_losses[-1] < 1 / 12
    assert out.count("Predictions: [[") == 1


def test_linear_regression_reaches_w2_b1(host_backend_name, capsys):
    main = runpy.run_path(str(EXAMPLES / "linear_regression.py"), run_name="example")["main"]
    w, b = main()
    assert abs(w - 2) < 1e-3 and abs(b - 1) < 1e-3
    losses = [float(v) for v in re.findall(r"loss = ([\d.e+-]+)", capsys.readouterr().out)]
    assert len(losses) == 11 and losses[-1] < 1e-6 * losses[0]
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # falls as it trains


def test_demo_command(host_backend_name, capsys):
    assert cli.main(["demo", "--backend", host_backend_name, "--epochs", "20"]) == 0
    out = capsys.readouterr().out
    assert f"on the {host_backend_name} backend" in out
    assert re.search(r"fit\(epochs=20, batch_size=32\) on 1000 samples: [\d.]+ s wall", out)
    losses = [float(v) for v in re.findall(r"^Epoch \d+: Loss = ([\d.]+)$", out, re.M)]
    assert len(losses) == 10 and losses[-1] < 1 / 12
    preds = re.search(r"Predictions \(first 5 of 100\): (.*)$", out, re.M).group(1).split(", ")
    assert len(preds) == 5 and all(np.isfinite(float(p)) for p in preds)
