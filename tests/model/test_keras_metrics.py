"""Keras metric objects: standalone update_state/result/reset_state against Keras 3
itself (torch backend) in float64 inputs, AUC against scikit-learn within its
interpolation error, and the objects inside fit/evaluate (fused where the
accumulators allow it, per-op and said so otherwise)."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # the oracle's backend: torch is a test dependency
K = pytest.importorskip("keras")

import fusednn  # noqa: E402
from fusednn import keras as F  # noqa: E402

rng = np.random.default_rng(0)
Y1 = (rng.random((301, 1)) > 0.4).astype(np.float64)
P1 = np.clip(Y1 * 0.3 + rng.random((301, 1)) * 0.7, 0, 1)
Y4 = np.eye(4)[rng.integers(0, 4, 301)]
P4 = rng.random((301, 4))
P4 /= P4.sum(axis=1, keepdims=True)
W = rng.random(301)

CASES = [
    ("AUC", {}, "1"), ("AUC", {"curve": "PR"}, "1"), ("AUC", {"num_thresholds": 7, "summation_method": "minoring"}, "1"),
    ("AUC", {"summation_method": "majoring", "curve": "PR"}, "1"), ("AUC", {"thresholds": [0.2, 0.5, 0.9]}, "1"),
    ("AUC", {"multi_label": True}, "4"), ("AUC", {"curve": "PR", "multi_label": True, "label_weights": [1, 2, 0, 1]}, "4"),
    ("AUC", {}, "4"),
    ("Precision", {}, "1"), ("Recall", {"thresholds": [0.3, 0.6]}, "1"), ("Precision", {"class_id": 2}, "4"),
    ("Recall", {"top_k": 2}, "4"), ("Precision", {"top_k": 1, "class_id": 1}, "4"),
    ("F1Score", {}, "4"), ("F1Score", {"average": "macro", "threshold": 0.3}, "4"), ("F1Score", {"average": "weighted"}, "4"),
    ("F1Score", {"average": "micro"}, "4"), ("FBetaScore", {"beta": 2.0, "average": "macro"}, "4"),
    ("BinaryAccuracy", {}, "1"), ("BinaryAccuracy", {"threshold": 0.7}, "4"), ("CategoricalAccuracy", {}, "4"),
    ("TopKCategoricalAccuracy", {"k": 2}, "4"), ("MeanSquaredError", {}, "4"), ("RootMeanSquaredError", {}, "4"),
    ("MeanAbsoluteError", {}, "4"), ("MeanAbsolutePercentageError", {}, "4"), ("R2Score", {}, "4"),
    ("R2Score", {"class_aggregation": None}, "4"),
    ("R2Score", {"class_aggregation": "variance_weighted_average", "num_regressors": 2}, "4"),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("name, kw, data", CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_metric_matches_keras(name, kw, data, weighted):
    yt, yp = (Y1, P1) if data == "1" else (Y4, P4)
    km, fm = getattr(K.metrics, name)(**kw), getattr(F.metrics, name)(**kw)
    for lo, hi in ((0, 100), (100, 301)):  # accumulated over two batches
        sw = W[lo:hi] if weighted else None
        km.update_state(yt[lo:hi].astype("float32"), yp[lo:hi].astype("float32"),
                        None if sw is None else sw.astype("float32"))
        fm.update_state(yt[lo:hi], yp[lo:hi], sw)
    want = np.asarray(km.result(), dtype=np.float64)
    np.testing.assert_allclose(np.asarray(fm.result()), want, rtol=2e-5, atol=2e-6)
    assert fm.name == re.sub(r"_\d+$", "", km.name)  # Keras numbers repeated default names
    fm.reset_state()
    fm.update_state(yt[:50], yp[:50])
    again = getattr(F.metrics, name)(**kw)
    np.testing.assert_allclose(np.asarray(fm.result()), np.asarray(again(yt[:50], yp[:50])))


def test_sparse_categorical_accuracy_and_accuracy_match_keras():
    labels = Y4.argmax(axis=1)
    assert F.metrics.SparseCategoricalAccuracy()(labels, P4) == pytest.approx(
        float(K.metrics.SparseCategoricalAccuracy()(labels, P4.astype("float32"))))
    a, b = np.round(Y4), np.round(P4 * 1.5)
    assert F.metrics.Accuracy()(a, b) == pytest.approx(float(K.metrics.Accuracy()(a, b)))


def test_auc_close_to_scikit_learn():
    """Keras' 200-threshold AUC is an approximation: within 1e-2 of the exact values."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    y, p = Y1.ravel(), P1.ravel()
    assert F.metrics.AUC()(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-2)
    assert F.metrics.AUC(curve="PR")(y, p) == pytest.approx(average_precision_score(y, p), abs=2e-2)
    z = np.log(p + 1e-3) - np.log1p(-p + 1e-3)  # logits
    assert F.metrics.AUC(from_logits=True)(y, z) == pytest.approx(roc_auc_score(y, z), abs=1e-2)


def test_metric_argument_errors():
    with pytest.raises(ValueError, match="num_thresholds"):
        F.metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="curve"):
        F.metrics.AUC(curve="XY")
    with pytest.raises(ValueError, match="Threshold"):
        F.metrics.Precision(thresholds=1.5)
    with pytest.raises(ValueError, match="average"):
        F.metrics.F1Score(average="samples")
    with pytest.raises(ValueError, match="class_aggregation"):
        F.metrics.R2Score(class_aggregation="x")


def _regression(backend_name):
    r = np.random.default_rng(1)
    x = r.standard_normal((70, 3))
    y = (x @ [1.0, -1.0, 0.5] + 0.3 * r.standard_normal(70)).reshape(-1, 1)
    F.utils.set_random_seed(0)
    m = F.Sequential([F.layers.Dense(8, activation="relu", input_shape=(3,)), F.layers.Dense(1)])
    return m, x, y


def test_fused_metrics_in_fit_and_evaluate(backend_name):
    """mae / RootMeanSquaredError / Precision / Recall / BinaryAccuracy come from the
    device accumulators (fused on cpu and cuda); history keys are Keras'."""
    m, x, y = _regression(backend_name)
    m.compile("adam", "mse", metrics=["mae", F.metrics.RootMeanSquaredError(), F.metrics.MeanSquaredError()])
    if backend_name != "numpy":
        assert m.fused_reason is None
    h = m.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, verbose=0)
    assert sorted(h.history) == ["loss", "mae", "mean_squared_error", "root_mean_squared_error", "val_loss",
                                 "val_mae", "val_mean_squared_error", "val_root_mean_squared_error"]
    got = m.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    p = m.predict(x, verbose=0).astype(np.float64)
    assert got["root_mean_squared_error"] == pytest.approx(np.sqrt(np.mean((p - y) ** 2)), rel=1e-5)
    assert got["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)
    assert got["mean_squared_error"] == pytest.approx(got["loss"], rel=1e-5)

    yb = (y > 0).astype(np.float64)
    F.utils.set_random_seed(0)
    c = F.Sequential([F.layers.Dense(8, activation="relu", input_shape=(3,)), F.layers.Dense(1, activation="sigmoid")])
    c.compile("adam", "binary_crossentropy",
              metrics=[F.metrics.Precision(), F.metrics.Recall(), F.metrics.BinaryAccuracy()])
    if backend_name != "numpy":
        assert c.fused_reason is None
    c.fit(x, yb, epochs=2, verbose=0)
    got = c.evaluate(x, yb, verbose=0, return_dict=True)
    p = c.predict(x, verbose=0)
    for name in ("precision", "recall", "binary_accuracy"):
        ref = getattr(F.metrics, {"precision": "Precision", "recall": "Recall",
                                  "binary_accuracy": "BinaryAccuracy"}[name])()(yb, p)
        assert got[name] == pytest.approx(ref, rel=1e-6), name


def test_host_metrics_are_not_fused_and_say_so(backend_name):
    _, x, y = _regression(backend_name)
    yb = (y > 0).astype(np.float64)
    m = F.Sequential([F.layers.Dense(8, activation="relu", input_shape=(3,)), F.layers.Dense(1, activation="sigmoid")])
    m.compile("adam", "binary_crossentropy", metrics=["acc"])
    fused_without = m.fused_reason is None
    m.compile("adam", "binary_crossentropy", metrics=[F.metrics.Precision(top_k=1, name="ml"), "acc"])
    if fused_without:  # cpu, cuda: a top-k Precision is what keeps it off the fused path, and the model says so
        assert "'ml'" in m.fused_reason and "not fused" in m.fused_reason
    m.compile("adam", "binary_crossentropy", metrics=["AUC", F.metrics.AUC(curve="PR", name="pr"), "acc"])
    if backend_name == "cpu":  # one-curve AUCs accumulate in the fused trainer (metric-object kernel)
        assert m.fused_reason is None
    h = m.fit(x, yb, batch_size=16, epochs=1, verbose=0, validation_data=(x, yb))
    assert {"AUC", "pr", "acc", "val_AUC", "val_pr"} <= set(h.history)
    got = m.evaluate(x, yb, verbose=0, return_dict=True)
    p = m.predict(x, verbose=0)
    assert got["AUC"] == pytest.approx(F.metrics.AUC()(yb, p), rel=1e-9)
    assert got["pr"] == pytest.approx(F.metrics.AUC(curve="PR")(yb, p), rel=1e-9)
    assert h.history["val_AUC"][0] == pytest.approx(got["AUC"], rel=1e-9)
    assert m.evaluate(x, yb, verbose=0) == [got["loss"], got["AUC"], got["pr"], got["acc"]]


def test_string_aliases():
    for name, cls in (("AUC", "AUC"), ("auc", "AUC"), ("mape", "MeanAbsolutePercentageError"),
                      ("RootMeanSquaredError", "RootMeanSquaredError"), ("r2_score", "R2Score"),
                      ("binary_accuracy", "BinaryAccuracy"), ("top_k_categorical_accuracy", "TopKCategoricalAccuracy"),
                      ("f1_score", "F1Score")):
        m = fusednn.metrics.get(name)  # what compile(metrics=[name]) uses
        assert type(m).__name__ == cls and m.name == name
    with pytest.raises(ValueError, match="unknown metric"):
        fusednn.metrics.get("aucc")
