"""Keras metric objects accumulated in the fused trainer (AUC, top-k, F1/F-beta, R²,
MAPE, exact accuracy), compiled metrics weighted by sample/class weights, and sample
weights with every loss: fused == per-op on cpu (the same kernels), the numpy backend
as the float64 reference, evaluate() against the standalone objects, hand computations
and scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import backends
from fusednn import keras as F

M = F.metrics
needs_cpu = pytest.mark.skipif("cpu" not in backends.available(), reason="the C++ extension is not built")

rng = np.random.default_rng(3)
X = rng.random((230, 6)).astype(np.float32)
YB = (X[:, :1] + 0.4 * rng.standard_normal((230, 1)) > 0.5).astype(np.float32)
LAB = np.minimum((X[:, 1] * 4).astype(int), 3)
Y4 = np.eye(4, dtype=np.float32)[LAB]
YR = (X[:, :2] @ np.array([[1.0, -0.5], [0.3, 2.0]], np.float32) + 0.1).astype(np.float32)
W = (0.2 + rng.random(230)).astype(np.float32)


@pytest.fixture(autouse=True)
def _restore_backend():
    previous = fusednn.get_backend().name
    yield
    fusednn.set_backend(previous)


def _binary_metrics():
    return [M.AUC(), M.AUC(curve="PR", name="pr"), M.AUC(num_thresholds=17, summation_method="minoring", name="mi"),
            M.F1Score(threshold=0.5), M.R2Score(), M.MeanAbsolutePercentageError(), M.Accuracy(name="exact"),
            "accuracy", "mae", M.RootMeanSquaredError(), M.Precision(), M.Recall()]


def _multi_metrics():
    return [M.TopKCategoricalAccuracy(k=2), M.F1Score(average="macro"), M.F1Score(average="micro", name="f1mi"),
            M.FBetaScore(average="weighted", beta=2.0), M.F1Score(name="f1none"), M.AUC(), "mae",
            M.R2Score(class_aggregation="variance_weighted_average"), "accuracy"]


def _fit(backend, fused, metrics, loss, y, out, act, sw=None, cw=None, epochs=2):
    fusednn.set_backend(backend)
    fusednn.utils.set_random_seed(5)
    m = F.Sequential([F.layers.Dense(8, activation="relu", input_shape=(6,)), F.layers.Dense(out, activation=act)])
    m.compile(optimizer="adam", loss=loss, metrics=metrics, fused=fused)
    h = m.fit(X, y, epochs=epochs, batch_size=32, verbose=0, sample_weight=sw, class_weight=cw)
    return m, h.history


def _same(a, b, rtol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k], dtype=np.float64), np.asarray(b[k], dtype=np.float64),
                                   rtol=rtol, atol=0 if rtol == 0 else 1e-9, err_msg=k)


CASES = [("binary", _binary_metrics, "binary_crossentropy", YB, 1, "sigmoid"),
         ("categorical", _multi_metrics, "categorical_crossentropy", Y4, 4, "softmax"),
         ("sparse", lambda: [M.SparseTopKCategoricalAccuracy(k=2), "accuracy"], "sparse_categorical_crossentropy",
          LAB.astype(np.float32), 4, "softmax"),
         ("from_logits", lambda: [M.AUC(from_logits=True), M.AUC(name="raw"), M.F1Score(threshold=0.5), "accuracy"],
          F.losses.BinaryCrossentropy(from_logits=True), YB, 1, "linear"),
         ("multilabel", lambda: [M.AUC(multi_label=True, name="ml"), M.AUC(label_weights=[1, 2, 0.5], name="lw"),
                                 M.AUC(multi_label=True, label_weights=[1, 0, 2], curve="PR", name="mlw"),
                                 M.Precision(thresholds=[0.7, 0.2, 0.5], name="p3"), M.Recall(class_id=1, name="r1"),
                                 M.Precision(), M.Recall(thresholds=0.3, class_id=2, name="r2")],
          "binary_crossentropy", (YR > 0.8).astype(np.float32)[:, [0, 1, 0]], 3, "sigmoid"),
         ("regression", lambda: [M.R2Score(), M.MeanAbsolutePercentageError(), M.Accuracy(), "mse",
                                 M.RootMeanSquaredError()], "mse", YR, 2, "linear")]


@needs_cpu
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fused_equals_per_op_and_numpy(case, weighted):
    _, metrics, loss, y, out, act = case
    sw = W if weighted else None
    fm, fh = _fit("cpu", "auto", metrics(), loss, y, out, act, sw)
    assert fm.fused_reason is None
    pm, ph = _fit("cpu", False, metrics(), loss, y, out, act, sw)
    _same({k: v for k, v in fh.items() if k != "loss"}, {k: v for k, v in ph.items() if k != "loss"})
    np.testing.assert_allclose(fh["loss"], ph["loss"], rtol=1e-6)
    nm, nh = _fit("numpy", False, metrics(), loss, y, out, act, sw)
    _same(fh, nh, rtol=2e-5)
    fe = fm.evaluate(X, y, verbose=0, sample_weight=sw, return_dict=True)
    pe = pm.evaluate(X, y, verbose=0, sample_weight=sw, return_dict=True)
    _same(fe, pe)


@needs_cpu
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
def test_evaluate_matches_standalone_objects_and_sklearn(weighted):
    sk = pytest.importorskip("sklearn.metrics")
    sw = W if weighted else None
    m, _ = _fit("cpu", "auto", _binary_metrics(), "binary_crossentropy", YB, 1, "sigmoid", sw)
    got = m.evaluate(X, YB, verbose=0, sample_weight=sw, return_dict=True, batch_size=40)
    p = m.predict(X, verbose=0).astype(np.float64)
    for obj in _binary_metrics():
        if isinstance(obj, str):
            continue
        obj.update_state(YB, p, sw)
        np.testing.assert_allclose(np.asarray(got[obj.name], np.float64), np.asarray(obj.result(), np.float64),
                                   rtol=1e-6, err_msg=obj.name)
    # scikit-learn: the AUC within Keras' 200-threshold interpolation, F1 and R² exactly
    assert got["auc"] == pytest.approx(sk.roc_auc_score(YB[:, 0], p[:, 0], sample_weight=sw), abs=5e-3)
    f1 = sk.f1_score(YB[:, 0], p[:, 0] > 0.5, sample_weight=sw)
    assert float(np.asarray(got["f1_score"]).reshape(-1)[0]) == pytest.approx(f1, rel=1e-6)
    assert got["r2_score"] == pytest.approx(sk.r2_score(YB[:, 0], p[:, 0], sample_weight=sw), rel=1e-5, abs=1e-6)


@needs_cpu
def test_multilabel_thresholds_match_standalone_objects():
    _, metrics, loss, y, out, act = [c for c in CASES if c[0] == "multilabel"][0]
    m, _ = _fit("cpu", "auto", metrics(), loss, y, out, act, W)
    assert m.fused_reason is None
    got = m.evaluate(X, y, verbose=0, sample_weight=W, return_dict=True)
    p = m.predict(X, verbose=0).astype(np.float64)
    for obj in metrics():
        obj.update_state(y, p, W)
        np.testing.assert_allclose(np.asarray(got[obj.name], np.float64), np.asarray(obj.result(), np.float64),
                                   rtol=1e-6, atol=1e-12, err_msg=obj.name)


@needs_cpu
def test_multiclass_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    m, _ = _fit("cpu", "auto", _multi_metrics(), "categorical_crossentropy", Y4, 4, "softmax", W, epochs=3)
    got = m.evaluate(X, Y4, verbose=0, sample_weight=W, return_dict=True)
    p = m.predict(X, verbose=0).astype(np.float64)
    top = np.argmax(p, axis=1)
    for avg, name in (("macro", "f1_score"), ("micro", "f1mi")):
        # Keras' macro average covers every class; scikit-learn's too with labels given
        want = sk.f1_score(LAB, top, average=avg, sample_weight=W, labels=range(4), zero_division=0)
        assert got[name] == pytest.approx(want, rel=1e-6, abs=1e-9), name
    np.testing.assert_allclose(got["f1none"], sk.f1_score(LAB, top, average=None, sample_weight=W, labels=range(4),
                                                          zero_division=0), rtol=1e-6, atol=1e-9)
    rank = (p > p[np.arange(len(p)), LAB][:, None]).sum(axis=1)
    assert got["top_k_categorical_accuracy"] == pytest.approx(np.dot(W, rank < 2) / W.sum(), rel=1e-6)
    auc = M.AUC()
    auc.update_state(Y4, p, W)
    assert got["auc"] == pytest.approx(auc.result(), rel=1e-6)


@needs_cpu
def test_weighted_metrics_by_hand():
    """evaluate(sample_weight=) weighs the means and the confusion counts as Keras does."""
    m, _ = _fit("cpu", "auto", ["accuracy", "mae", "mse", M.Precision(), M.Recall(), M.MeanAbsolutePercentageError()],
                "binary_crossentropy", YB, 1, "sigmoid", W)
    got = m.evaluate(X, YB, verbose=0, sample_weight=W, return_dict=True, batch_size=64)
    p = m.predict(X, verbose=0).astype(np.float64)[:, 0]
    y, w = YB[:, 0].astype(np.float64), W.astype(np.float64)
    pred = p > 0.5
    assert got["accuracy"] == pytest.approx(np.dot(w, pred == (y > 0.5)) / w.sum(), rel=1e-9)
    assert got["mae"] == pytest.approx(np.dot(w, np.abs(p - y)) / w.sum(), rel=1e-5)
    assert got["mse"] == pytest.approx(np.dot(w, (p - y) ** 2) / w.sum(), rel=1e-5)
    tp, fp, fn = np.dot(w, pred & (y == 1)), np.dot(w, pred & (y == 0)), np.dot(w, ~pred & (y == 1))
    assert got["precision"] == pytest.approx(tp / (tp + fp), rel=1e-9)
    assert got["recall"] == pytest.approx(tp / (tp + fn), rel=1e-9)
    mape = 100 * np.abs(p - y) / np.maximum(np.abs(y), 1e-7)
    assert got["mean_absolute_percentage_error"] == pytest.approx(np.dot(w, mape) / w.sum(), rel=1e-5)
    # weights of one: the unweighted values
    ones = m.evaluate(X, YB, verbose=0, sample_weight=np.ones(230), return_dict=True)
    plain = m.evaluate(X, YB, verbose=0, return_dict=True)
    for k in plain:
        assert ones[k] == pytest.approx(plain[k], rel=1e-6), k


@needs_cpu
def test_class_weight_weighs_the_metrics_fused_as_per_op():
    cw = {0: 0.3, 1: 2.0}
    fm, fh = _fit("cpu", "auto", ["accuracy", M.AUC(), "mae"], "binary_crossentropy", YB, 1, "sigmoid", cw=cw)
    assert fm.fused_reason is None
    _, ph = _fit("cpu", False, ["accuracy", M.AUC(), "mae"], "binary_crossentropy", YB, 1, "sigmoid", cw=cw)
    _, uh = _fit("cpu", "auto", ["accuracy", M.AUC(), "mae"], "binary_crossentropy", YB, 1, "sigmoid")
    _same({k: v for k, v in fh.items() if k != "loss"}, {k: v for k, v in ph.items() if k != "loss"})
    assert fh["accuracy"] != uh["accuracy"]  # the weights count


LOSSES = ["mae", "mape", "msle", F.losses.Huber(0.7), "log_cosh", "hinge", "squared_hinge", "categorical_hinge",
          "kl_divergence", "poisson", "cosine_similarity"]


@needs_cpu
@pytest.mark.parametrize("loss", LOSSES, ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_sample_weights_with_every_loss(loss):
    """Fused (cpu) == per-op; the weighted evaluate loss equals sum(w_i l_i)/n in float64."""
    y = np.abs(YR) + 0.05 if loss in ("kl_divergence", "poisson", "msle") else YR
    if loss in ("hinge", "squared_hinge"):
        y = (YR > 1).astype(np.float32)  # {0, 1} labels: Keras converts them to {-1, 1}
    act = "softplus" if loss in ("kl_divergence", "poisson", "msle") else "linear"
    fm, fh = _fit("cpu", "auto", [], loss, y, 2, act, W)
    assert fm.fused_reason is None
    _, ph = _fit("cpu", False, [], loss, y, 2, act, W)
    np.testing.assert_allclose(fh["loss"], ph["loss"], rtol=1e-6)
    _, nh = _fit("numpy", False, [], loss, y, 2, act, W)
    np.testing.assert_allclose(fh["loss"], nh["loss"], rtol=2e-5)
    got = fm.evaluate(X, y, verbose=0, sample_weight=W, batch_size=230)
    p = fm.predict(X, verbose=0).astype(np.float64)
    obj = fusednn.losses.get(loss) if isinstance(loss, str) else loss
    per_row = np.array([obj(y[i:i + 1].astype(np.float64), p[i:i + 1]) for i in range(230)])
    if loss in ("hinge", "squared_hinge"):  # the batch's labels are all 0/1, so converted for every row
        yy = 2 * y.astype(np.float64) - 1
        m_ = np.maximum(1 - yy * p, 0)
        per_row = (m_ if loss == "hinge" else m_ * m_).mean(axis=1)
    assert got == pytest.approx(np.dot(W.astype(np.float64), per_row) / 230, rel=2e-5)


@needs_cpu
@pytest.mark.parametrize("loss", [F.losses.CategoricalCrossentropy(label_smoothing=0.2),
                                  F.losses.BinaryCrossentropy(label_smoothing=0.1)], ids=["categorical", "binary"])
def test_sample_weights_with_label_smoothing(loss):
    y, out, act = (Y4, 4, "softmax") if isinstance(loss, F.losses.CategoricalCrossentropy) else (YB, 1, "sigmoid")
    fm, fh = _fit("cpu", "auto", ["accuracy"], loss, y, out, act, W)
    assert fm.fused_reason is None
    _, ph = _fit("cpu", False, ["accuracy"], loss, y, out, act, W)
    np.testing.assert_allclose(fh["loss"], ph["loss"], rtol=1e-6)
    assert fh["accuracy"] == ph["accuracy"]
    got = fm.evaluate(X, y, verbose=0, sample_weight=W, batch_size=230, return_dict=True)["loss"]
    p = np.clip(fm.predict(X, verbose=0).astype(np.float64), 1e-7, 1 - 1e-7)
    ls = loss.label_smoothing
    if out == 1:
        t = y * (1 - ls) + 0.5 * ls
        per_row = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=1)
    else:
        t = y * (1 - ls) + ls / out
        per_row = -(t * np.log(p)).sum(axis=1)
    assert got == pytest.approx(np.dot(W, per_row) / 230, rel=1e-4)


@needs_cpu
def test_what_stays_per_op_says_why():
    fusednn.set_backend("cpu")
    for metric, why in ((M.Precision(top_k=1), "'precision'"), (M.Recall(class_id=3), "'recall'")):  # (no output 3)
        m = F.Sequential([F.layers.Dense(4, input_shape=(6,)), F.layers.Dense(1, activation="sigmoid")])
        m.compile("adam", "binary_crossentropy", metrics=[metric])
        assert why in m.fused_reason
    m = F.Sequential([F.layers.Dense(4, input_shape=(6,)), F.layers.Dense(4, activation="softmax")])
    m.compile("adam", F.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=[M.F1Score()])
    assert "label smoothing" in m.fused_reason


def test_sparse_top_k_matches_keras():
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")  # the oracle's backend, as in test_keras_metrics
    K = pytest.importorskip("keras")
    labels = LAB[:50].astype(np.float32)
    p = rng.random((50, 4)).astype(np.float32)
    km, fm = K.metrics.SparseTopKCategoricalAccuracy(k=2), M.SparseTopKCategoricalAccuracy(k=2)
    km.update_state(labels, p, W[:50])
    fm.update_state(labels, p, W[:50])
    assert fm.result() == pytest.approx(float(km.result()), rel=1e-6)
    assert fm.get_config()["k"] == 2 and fm.name == "sparse_top_k_categorical_accuracy"
    assert fusednn.metrics.get("sparse_top_k_categorical_accuracy").k == 5


@pytest.mark.gpu
@pytest.mark.parametrize("case", [CASES[0], CASES[1]], ids=["binary", "categorical"])
def test_cuda_metric_objects_match_cpu(monkeypatch, case):
    """Unverified here (no GPU in this session): the opt-in CUDA metric-object kernels and
    weighted LossFn loss in the CUDA fused trainer against the cuda per-op path (the same
    GEMMs; its metrics from the float64 host reference)."""
    from fusednn.backends import cuda as cuda_backend

    monkeypatch.setattr(cuda_backend.CudaBackend, "trainer_metric_objects", True)
    _, metrics, loss, y, out, act = case
    cm, ch = _fit("cuda", "auto", metrics(), loss, y, out, act, W)
    assert cm.fused_reason is None
    _, h = _fit("cuda", False, metrics(), loss, y, out, act, W)
    _same(ch, h, rtol=1e-5)
    lm, lh = _fit("cuda", "auto", [], "log_cosh", YR, 2, "linear", W)
    assert lm.fused_reason is None
    _, lc = _fit("cuda", False, [], "log_cosh", YR, 2, "linear", W)
    np.testing.assert_allclose(lh["loss"], lc["loss"], rtol=1e-4)


def test_class_weight_does_not_weigh_validation_split():
    """Keras 3 splits (x, y, sample_weight) for validation_split and applies class_weight
    to the training batches only."""
    fusednn.set_backend("numpy")
    fusednn.utils.set_random_seed(0)
    m = F.Sequential([F.layers.Dense(4, input_shape=(6,)), F.layers.Dense(1, activation="sigmoid")])
    m.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    h = m.fit(X, YB, epochs=1, validation_split=0.25, class_weight={0: 0.2, 1: 5.0}, verbose=0)
    split = int(np.floor(230 * 0.75))
    want = m.evaluate(X[split:], YB[split:], verbose=0, return_dict=True)
    assert h.history["val_loss"][0] == pytest.approx(want["loss"], rel=1e-6)
    assert h.history["val_accuracy"][0] == pytest.approx(want["accuracy"], rel=1e-12)
    h = m.fit(X, YB, epochs=1, validation_split=0.25, class_weight={0: 0.2, 1: 5.0}, sample_weight=W, verbose=0)
    want = m.evaluate(X[split:], YB[split:], sample_weight=W[split:], verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(want[0], rel=1e-6)
