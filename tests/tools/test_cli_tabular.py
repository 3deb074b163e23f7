"""`fusednn train / evaluate / predict` end to end through `python -m fusednn`, on small
generated CSV files (regression and classification), and bad CSV files."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import fusednn
from fusednn import csv_data, tabular


def fusednn_cmd(*args, backend="cpu"):
    if backend not in fusednn.available_backends():
        backend = "numpy"
    env = dict(os.environ, FUSEDNN_BACKEND=backend)
    return subprocess.run([sys.executable, "-m", "fusednn", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def features(n, seed=0):
    rng = np.random.default_rng(seed)
    # very different scales: training works only if the saved scaling is applied
    return rng.standard_normal((n, 3)) * [1.0, 50.0, 0.01] + [0.0, 1000.0, 0.0]


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    d = tmp_path_factory.mktemp("reg")
    x = features(400)
    y = 2 * x[:, 0] + 0.02 * (x[:, 1] - 1000) - 100 * x[:, 2] + 300
    rows = [[f"{v:.6f}" for v in r] + [f"{t:.6f}"] for r, t in zip(x, y)]
    rows[3][1] = ""  # a missing feature
    rows[8][3] = "NaN"  # a missing target
    write(d / "train.csv", ["x0", "x1", "x2", "price"], rows)
    xt = np.array([[float(f"{v:.6f}") for v in r] for r in features(50, seed=1)])  # as read back from the file
    yt = 2 * xt[:, 0] + 0.02 * (xt[:, 1] - 1000) - 100 * xt[:, 2] + 300
    # the columns in another order, an extra column: found by name
    write(d / "test.csv", ["id", "price", "x2", "x0", "x1"],
          [[i, f"{t:.6f}", f"{r[2]:.6f}", f"{r[0]:.6f}", f"{r[1]:.6f}"] for i, (r, t) in enumerate(zip(xt, yt))])
    run = fusednn_cmd("train", d / "train.csv", "--target", "price", "--layers", "16", "--epochs", "60",
                      "--lr", "0.01", "--seed", "3", "--out", d / "model.npz")
    return d, run, xt, yt


def test_train_regression(regression):
    d, run, _, _ = regression
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "task: regression" in out and "dropped 2 rows with missing or non-finite values (lines 5, 10)" in out
    assert "Epoch 60/60" in out  # the per-epoch progress lines (not a terminal here)
    r2 = float(out.split("R² ")[1].split()[0])
    assert r2 > 0.97
    model = fusednn.load_model(d / "model.npz")
    assert type(model.layers[0]).__name__ == "Normalization"
    assert model.metadata["task"] == "regression" and model.metadata["features"] == ["x0", "x1", "x2"]
    assert model.metadata["target"] == "price" and model.metadata["test_metrics"]["r2"] == pytest.approx(r2, abs=1e-4)


def test_evaluate_and_predict_apply_the_saved_scaling(regression):
    d, _, xt, yt = regression
    ev = fusednn_cmd("evaluate", d / "model.npz", d / "test.csv")
    assert ev.returncode == 0, ev.stderr
    r2 = float(ev.stdout.split("R² ")[1].split()[0])
    assert r2 > 0.95 and "(50 rows)" in ev.stdout
    pr = fusednn_cmd("predict", d / "model.npz", d / "test.csv", "--out", d / "preds.csv")
    assert pr.returncode == 0, pr.stderr
    with open(d / "preds.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["prediction"] and len(rows) == 51
    preds = np.array([float(r[0]) for r in rows[1:]], dtype=np.float32)
    # the CSV holds predict's float32 values exactly, computed on raw (unscaled) features
    model = fusednn.load_model(d / "model.npz")
    np.testing.assert_array_equal(preds, model.predict(xt, verbose=0)[:, 0])
    assert np.abs(preds - yt).mean() < 0.05 * yt.std()


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    d = tmp_path_factory.mktemp("cls")
    x = np.array([[float(f"{v:.6f}") for v in r] for r in features(450, seed=2)])  # as read back from the file
    score = x[:, 0] + 0.02 * (x[:, 1] - 1000)
    labels = np.where(score > 0.7, "high", np.where(score < -0.7, "low", "mid"))
    write(d / "train.csv", ["f0", "f1", "f2", "level"],
          [[f"{v:.6f}" for v in r] + [lab] for r, lab in zip(x, labels)])
    run = fusednn_cmd("train", d / "train.csv", "--target", "level", "--layers", "32", "--epochs", "60",
                      "--lr", "0.01", "--out", d / "model.npz", "--verbose", "0")
    return d, run, x, labels


def test_train_classification_infers_task_and_keeps_labels(classification):
    d, run, _, _ = classification
    assert run.returncode == 0, run.stderr
    assert "task: classification (the target has text values" in run.stdout
    acc = float(run.stdout.split("accuracy ")[1].split()[0])
    assert acc > 0.85
    for name in ("precision", "recall", "f1"):
        assert f"{name} " in run.stdout.split("test (")[1]
    model = fusednn.load_model(d / "model.npz")
    assert model.metadata["classes"] == ["high", "low", "mid"]
    assert model.layers[-1].activation == "softmax" and type(model.loss).__name__ == "SparseCategoricalCrossentropy"


def test_classification_evaluate_and_predict_labels(classification):
    d, _, x, labels = classification
    ev = fusednn_cmd("evaluate", d / "model.npz", d / "train.csv")
    assert ev.returncode == 0, ev.stderr
    assert float(ev.stdout.split("accuracy ")[1].split()[0]) > 0.85
    write(d / "new.csv", ["f0", "f1", "f2"], [[f"{v:.6f}" for v in r] for r in x[:20]] + [["1", "", "2"]])
    pr = fusednn_cmd("predict", d / "model.npz", d / "new.csv", "--out", "-")
    assert pr.returncode == 0, pr.stderr
    rows = list(csv.reader(pr.stdout.splitlines()))
    assert rows[0] == ["prediction", "probability_high", "probability_low", "probability_mid"]
    model = fusednn.load_model(d / "model.npz")
    probs = model.predict(x[:20], verbose=0)
    assert [r[0] for r in rows[1:21]] == [["high", "low", "mid"][k] for k in probs.argmax(axis=1)]
    np.testing.assert_array_equal(np.array([r[1:] for r in rows[1:21]], dtype=np.float32), probs)
    assert rows[21] == ["", "", "", ""]  # a row with a missing value gets no prediction
    assert "1 rows with missing" in pr.stderr
    assert np.mean([r[0] for r in rows[1:21]] == labels[:20]) > 0.8


def test_integer_target_is_classification_and_labels_stay_numbers(tmp_path):
    x = features(200, seed=4)
    y = (x[:, 0] > 0).astype(int) * 5 + 1  # classes 1 and 6
    write(tmp_path / "d.csv", ["a", "b", "c", "y"], [[f"{v:.5f}" for v in r] + [str(t)] for r, t in zip(x, y)])
    run = fusednn_cmd("train", tmp_path / "d.csv", "--target", "y", "--epochs", "5", "--out", tmp_path / "m.npz",
                      "--verbose", "0")
    assert run.returncode == 0, run.stderr
    assert "task: classification (the target has 2 distinct integer values)" in run.stdout
    assert fusednn.load_model(tmp_path / "m.npz").metadata["classes"] == [1, 6]
    forced = fusednn_cmd("train", tmp_path / "d.csv", "--target", "y", "--task", "regression", "--epochs", "2",
                         "--out", tmp_path / "r.npz", "--verbose", "0")
    assert forced.returncode == 0 and "task: regression (as requested)" in forced.stdout


BAD_CSVS = {
    "empty": ("", "is empty"),
    "header_only": ("a,b,y\n", "no data rows"),
    "missing_target": ("a,b,c\n1,2,3\n4,5,6\n", "no column 'y'; the columns are: a, b, c"),
    "non_numeric": ("a,b,y\n1,2,3\n4,oops,6\n7,8,9\n", "line 3, column 'b': 'oops' is not a number"),
    "ragged": ("a,b,y\n1,2,3\n4,5\n", "line 3: 2 cells, but the first row has 3"),
    "only_target": ("y\n1\n2\n", "no features left"),
    "one_class": ("a,y\n1,cat\n2,cat\n3,cat\n", "at least 2 classes"),
    "binary": ("\x00\x01\x02\xff\xfe", "not a UTF-8 text file"),
}


@pytest.mark.parametrize("kind", list(BAD_CSVS))
def test_bad_csv_gives_clear_error_and_exit_2(tmp_path, kind):
    content, message = BAD_CSVS[kind]
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode("latin-1"))
    run = fusednn_cmd("train", path, "--target", "y", "--epochs", "1", "--out", tmp_path / "m.npz")
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.startswith("fusednn train: error:") and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "m.npz").exists()


def test_evaluate_and_predict_errors(regression, tmp_path):
    d = regression[0]
    write(tmp_path / "nofeat.csv", ["x0", "price"], [["1", "2"]])
    for args, message in (
            (["evaluate", d / "model.npz", tmp_path / "nofeat.csv"], "needs the columns 'x1', 'x2'"),
            (["evaluate", d / "train.csv", d / "test.csv"], "not a fusednn model file"),
            (["predict", d / "model.npz", tmp_path / "missing.csv", "--out", tmp_path / "p.csv"], "No such file"),
            (["evaluate", d / "model.npz", write(tmp_path / "nolabel.csv", ["x0", "x1", "x2"], [["1", "2", "3"]])],
             "no target column 'price'"),
    ):
        run = fusednn_cmd(*args)
        assert run.returncode == 2 and message in run.stderr, run.stderr
    bad_arg = fusednn_cmd("train", d / "train.csv", "--target", "price", "--layers", "64,x", "--out", "m.npz")
    assert bad_arg.returncode == 2 and "--layers" in bad_arg.stderr


def test_csv_reader_details(tmp_path):
    p = tmp_path / "semi.csv"
    p.write_text("\ufeffa;b;label\n1,5;2;x\n\n3;4;y\n")  # BOM, semicolons, a blank line
    t = csv_data.read_csv(str(p))
    assert t.columns == ["a", "b", "label"] and t.lines == [2, 4] and t.has_header
    with pytest.raises(csv_data.DataError, match="'1,5' is not a number"):
        csv_data.numeric(t, [0])
    p.write_text("1,2,3\n4,NA,6\n")  # no header: columns 0, 1, 2
    t = csv_data.read_csv(str(p))
    assert not t.has_header and t.columns == ["0", "1", "2"] and t.index("2") == 2
    np.testing.assert_array_equal(csv_data.numeric(t, [1]), [[2.0], [np.nan]])
    assert tabular.infer_task(["1.5", "2", "3"])[0] == "regression"
    assert tabular.infer_task(["1", "2", "", "2"])[0] == "classification"
    assert tabular.infer_task([str(i) for i in range(21)])[0] == "regression"
