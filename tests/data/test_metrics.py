"""fusednn.metrics against sklearn.metrics (the oracle) on random labels, plus
hand-computed textbook values and the Keras-style metric objects."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from helpers import FakeCupy

from fusednn import metrics as fm

skm = pytest.importorskip("sklearn.metrics")
from sklearn.exceptions import UndefinedMetricWarning as SkUndefined  # noqa: E402

ZERO_DIVISIONS = ["warn", 0, 1, np.nan]


def _run(fn, *args, **kwargs):
    """(result or the exception type, messages of the UndefinedMetric/User warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(*args, **kwargs)
        except ValueError:
            result = ValueError
    messages = [str(w.message) for w in caught
                if issubclass(w.category, (SkUndefined, fm.UndefinedMetricWarning, UserWarning))]
    return result, messages


def _assert_same(ours, theirs):
    if theirs is ValueError or ours is ValueError:
        assert ours is theirs
        return
    if isinstance(theirs, tuple):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _assert_same(a, b)
        return
    if theirs is None:
        assert ours is None
        return
    assert np.shape(ours) == np.shape(theirs)
    np.testing.assert_allclose(np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float),
                               rtol=1e-12, atol=1e-12, equal_nan=True)


def _cases():
    """(id, y_true, y_pred, labels, pos_label) label sets that stress the edge cases."""
    rng = np.random.default_rng(0)
    n = 40
    yield "binary", rng.integers(0, 2, n), rng.integers(0, 2, n), None, 1
    yield "binary_pos0", rng.integers(0, 2, n), rng.integers(0, 2, n), None, 0
    # Nothing predicted positive: precision of the positive class is 0/0.
    yield "binary_no_pred_pos", rng.integers(0, 2, n), np.zeros(n, int), None, 1
    # Positive class absent from y_true and y_pred: everything is 0/0.
    yield "binary_one_label", np.zeros(n, int), np.zeros(n, int), None, 1
    yield "binary_strings", rng.choice(["cat", "dog"], n), rng.choice(["cat", "dog"], n), None, "dog"
    yield "binary_12", rng.integers(1, 3, n), rng.integers(1, 3, n), None, 2
    yield "multiclass", rng.integers(0, 5, n), rng.integers(0, 5, n), None, 1
    # Class 4 is never predicted; class 0 never occurs in y_true.
    yield "never_predicted", rng.integers(1, 5, n), rng.integers(0, 4, n), None, 1
    # Label 9 appears nowhere; labels reordered and a subset.
    yield "labels_absent", rng.integers(0, 4, n), rng.integers(0, 4, n), [3, 9, 0, 1], 1
    yield "labels_subset", rng.integers(0, 4, n), rng.integers(0, 4, n), [2, 1], 1
    yield "float_labels", rng.integers(0, 3, n).astype(float), rng.integers(0, 3, n), None, 1


CASES = list(_cases())


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("average", ["binary", None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS, ids=str)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
def test_prf_match_sklearn(case, average, zero_division, weighted):
    _, y_true, y_pred, labels, pos_label = case
    sw = np.random.default_rng(1).uniform(0.1, 2.0, len(y_true)) if weighted else None
    kw = dict(labels=labels, pos_label=pos_label, average=average, sample_weight=sw,
              zero_division=zero_division)
    for ours_fn, sk_fn in [(fm.precision_score, skm.precision_score),
                           (fm.recall_score, skm.recall_score),
                           (fm.f1_score, skm.f1_score),
                           (fm.precision_recall_fscore_support, skm.precision_recall_fscore_support)]:
        ours, ours_w = _run(ours_fn, y_true, y_pred, **kw)
        theirs, their_w = _run(sk_fn, y_true, y_pred, **kw)
        _assert_same(ours, theirs)
        assert ours_w == their_w, ours_fn.__name__


@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, np.inf])
@pytest.mark.parametrize("average", [None, "macro", "weighted"])
def test_fbeta_matches_sklearn(beta, average):
    _, y_true, y_pred, labels, _ = CASES[7]
    ours, _ = _run(fm.fbeta_score, y_true, y_pred, beta=beta, average=average, zero_division=0)
    theirs, _ = _run(skm.fbeta_score, y_true, y_pred, beta=beta, average=average, zero_division=0)
    _assert_same(ours, theirs)


def test_textbook_definitions():
    # TP=2, FP=1, FN=3: precision 2/3, recall 2/5, F1 = 2PR/(P+R) = 1/2.
    y_true = [1, 1, 1, 1, 1, 0, 0, 0]
    y_pred = [1, 1, 0, 0, 0, 1, 0, 0]
    assert fm.precision_score(y_true, y_pred) == pytest.approx(2 / 3)
    assert fm.recall_score(y_true, y_pred) == pytest.approx(2 / 5)
    p, r = 2 / 3, 2 / 5
    assert fm.f1_score(y_true, y_pred) == pytest.approx(2 * p * r / (p + r))
    assert fm.f1_score(y_true, y_pred) == pytest.approx(0.5)
    assert fm.accuracy_score(y_true, y_pred) == pytest.approx(4 / 8)  # TP + TN = 4
    np.testing.assert_array_equal(fm.confusion_matrix(y_true, y_pred), [[2, 1], [3, 2]])


def test_zero_division_gives_defined_values_and_our_warning():
    y_true, y_pred = [0, 1, 2, 2], [0, 0, 0, 0]  # classes 1 and 2 never predicted
    with pytest.warns(fm.UndefinedMetricWarning, match="no predicted samples"):
        p = fm.precision_score(y_true, y_pred, average=None)
    np.testing.assert_array_equal(p, [0.25, 0.0, 0.0])
    p1 = fm.precision_score(y_true, y_pred, average=None, zero_division=1)
    np.testing.assert_array_equal(p1, [0.25, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p_nan = fm.precision_score(y_true, y_pred, average="macro", zero_division=np.nan)
    assert p_nan == pytest.approx(0.25)  # undefined labels are left out of the mean
    assert issubclass(fm.UndefinedMetricWarning, UserWarning)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_accuracy_matches_sklearn(weighted, normalize):
    for _, y_true, y_pred, _, _ in CASES:
        sw = np.random.default_rng(2).uniform(0, 3, len(y_true)) if weighted else None
        ours = fm.accuracy_score(y_true, y_pred, normalize=normalize, sample_weight=sw)
        theirs = skm.accuracy_score(y_true, y_pred, normalize=normalize, sample_weight=sw)
        assert ours == pytest.approx(theirs, rel=1e-12)
        assert isinstance(ours, float)


@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
@pytest.mark.parametrize("weights", [None, "int", "float"])
def test_confusion_matrix_matches_sklearn(normalize, weights):
    rng = np.random.default_rng(3)
    for _, y_true, y_pred, labels, _ in CASES:
        sw = {None: None, "int": rng.integers(0, 4, len(y_true)),
              "float": rng.uniform(0, 2, len(y_true))}[weights]
        ours, ours_w = _run(fm.confusion_matrix, y_true, y_pred, labels=labels, sample_weight=sw,
                            normalize=normalize)
        theirs, their_w = _run(skm.confusion_matrix, y_true, y_pred, labels=labels, sample_weight=sw,
                               normalize=normalize)
        _assert_same(ours, theirs)
        assert ours.dtype == theirs.dtype
        assert ours_w == their_w


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="at least one label"):
        fm.confusion_matrix([0, 1], [1, 0], labels=[])
    with pytest.raises(ValueError, match="must be in y_true"):
        fm.confusion_matrix([0, 1], [1, 0], labels=[5])
    with pytest.raises(ValueError, match="normalize"):
        fm.confusion_matrix([0, 1], [1, 0], normalize="rows")


def test_input_validation():
    with pytest.raises(ValueError, match=r"3 != 4"):
        fm.accuracy_score([0, 1, 1], [0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"mix of binary and continuous"):
        fm.f1_score([0, 1, 1], [0.2, 0.7, 0.9])
    with pytest.raises(ValueError, match=r"mix of continuous and multiclass"):
        fm.accuracy_score([0.5, 1.5, 2.5], [0, 1, 2])
    with pytest.raises(ValueError, match="continuous"):
        fm.precision_score([0.5, 1.5], [0.5, 1.5])
    with pytest.raises(ValueError, match="average='binary'"):
        fm.precision_score([0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="pos_label=2 is not a valid label"):
        fm.recall_score([0, 1, 1], [1, 0, 1], pos_label=2)
    with pytest.raises(ValueError, match="average has to be one of"):
        fm.f1_score([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="zero_division"):
        fm.f1_score([0, 1], [0, 1], zero_division=0.5)
    with pytest.raises(ValueError, match="sample_weight"):
        fm.accuracy_score([0, 1], [0, 1], sample_weight=[1.0])
    with pytest.raises(ValueError, match="string and number"):
        fm.accuracy_score(["a", "b"], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        fm.accuracy_score([0.5, np.nan], [0, 1])
    with pytest.warns(UserWarning, match="pos_label"):
        fm.f1_score([0, 1, 2], [0, 2, 2], average="macro", pos_label=2)


def _reg_data(n_outputs, seed=4):
    rng = np.random.default_rng(seed)
    shape = (30,) if n_outputs == 1 else (30, n_outputs)
    y_true = rng.normal(size=shape)
    return y_true, y_true + rng.normal(scale=0.5, size=shape)


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("multioutput", ["raw_values", "uniform_average", "variance_weighted", "custom"])
@pytest.mark.parametrize("weighted", [False, True])
def test_regression_matches_sklearn(n_outputs, multioutput, weighted):
    y_true, y_pred = _reg_data(n_outputs)
    sw = np.random.default_rng(5).uniform(0.1, 2, len(y_true)) if weighted else None
    if multioutput == "custom":
        multioutput = np.array([0.2, 0.5, 0.3])
        if n_outputs == 1:  # weights over outputs make no sense for one output
            for ours_fn, sk_fn in [(fm.r2_score, skm.r2_score),
                                   (fm.mean_absolute_error, skm.mean_absolute_error)]:
                with pytest.raises(ValueError, match="multi-output"):
                    ours_fn(y_true, y_pred, multioutput=multioutput)
                with pytest.raises(ValueError, match="multi-output"):
                    sk_fn(y_true, y_pred, multioutput=multioutput)
            return
    pairs = [(fm.r2_score, skm.r2_score)]
    if not (isinstance(multioutput, str) and multioutput == "variance_weighted"):
        pairs += [(fm.mean_absolute_error, skm.mean_absolute_error),
                  (fm.mean_squared_error, skm.mean_squared_error)]
    for ours_fn, sk_fn in pairs:
        ours = ours_fn(y_true, y_pred, sample_weight=sw, multioutput=multioutput)
        theirs = sk_fn(y_true, y_pred, sample_weight=sw, multioutput=multioutput)
        _assert_same(ours, theirs)
        assert type(ours) is type(theirs)


@pytest.mark.parametrize("force_finite", [True, False])
def test_r2_constant_y_true(force_finite):
    y_true = np.column_stack([np.full(6, 2.0), np.full(6, 2.0), np.arange(6.0)])
    y_pred = np.column_stack([np.full(6, 2.0), np.arange(6.0), np.arange(6.0) + 0.5])
    for mo in ["raw_values", "uniform_average", "variance_weighted"]:
        ours, _ = _run(fm.r2_score, y_true, y_pred, multioutput=mo, force_finite=force_finite)
        theirs, _ = _run(skm.r2_score, y_true, y_pred, multioutput=mo, force_finite=force_finite)
        _assert_same(ours, theirs)
    if force_finite:  # exact constant prediction scores 1, a wrong one 0, as sklearn defines it
        np.testing.assert_array_equal(fm.r2_score(y_true, y_pred, multioutput="raw_values")[:2], [1.0, 0.0])


def test_regression_errors():
    with pytest.warns(fm.UndefinedMetricWarning):
        assert np.isnan(fm.r2_score([1.0], [2.0]))
    with pytest.raises(ValueError, match="5 != 4"):
        fm.mean_absolute_error(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match="number of output"):
        fm.mean_squared_error(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fm.mean_squared_error([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="multioutput"):
        fm.mean_absolute_error([1.0, 2.0], [1.0, 2.0], multioutput="variance_weighted")


def test_device_arrays_are_copied_with_get():
    y_true, y_pred = [0, 1, 1, 0], [0, 1, 0, 0]
    assert fm.f1_score(FakeCupy(y_true), FakeCupy(y_pred)) == pytest.approx(skm.f1_score(y_true, y_pred))
    assert fm.r2_score(FakeCupy([1.0, 2.0, 3.0]), FakeCupy([1.0, 2.5, 3.0])) == pytest.approx(
        skm.r2_score([1.0, 2.0, 3.0], [1.0, 2.5, 3.0]))
    assert fm.get("acc")(FakeCupy(np.eye(3)), FakeCupy(np.eye(3))) == 1.0


def test_keras_metrics_binary_outputs():
    rng = np.random.default_rng(6)
    probs = rng.uniform(size=(50, 1))
    y_true = rng.integers(0, 2, 50)
    labels = (probs[:, 0] > 0.5).astype(int)
    assert fm.get("accuracy")(y_true, probs) == pytest.approx(skm.accuracy_score(y_true, labels))
    precision = fm.get("precision")(y_true.reshape(-1, 1), probs)
    assert precision == pytest.approx(skm.precision_score(y_true, labels))
    assert fm.get("recall")(y_true, probs[:, 0]) == pytest.approx(skm.recall_score(y_true, labels))
    assert fm.get("f1")(y_true, probs) == pytest.approx(skm.f1_score(y_true, labels))
    # A batch with no positive prediction gives a defined 0, silently.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fm.get("precision")(y_true, np.zeros((50, 1))) == 0.0


def test_keras_metrics_multiclass_outputs():
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(60, 4))
    y_sparse = rng.integers(0, 4, 60)
    y_onehot = np.eye(4)[y_sparse]
    pred = scores.argmax(axis=1)
    acc = skm.accuracy_score(y_sparse, pred)
    assert fm.get("accuracy")(y_sparse, scores) == pytest.approx(acc)
    assert fm.get("accuracy")(y_onehot, scores) == pytest.approx(acc)
    assert fm.get("f1")(y_onehot, scores) == pytest.approx(skm.f1_score(y_sparse, pred, average="macro"))
    assert fm.Recall(average="weighted")(y_sparse, scores) == pytest.approx(
        skm.recall_score(y_sparse, pred, average="weighted"))
    with pytest.raises(ValueError, match="one-hot"):
        fm.get("accuracy")(np.eye(3)[y_sparse % 3], scores)


def test_keras_regression_metrics_and_registry():
    rng = np.random.default_rng(8)
    y = rng.normal(size=20)
    out = rng.normal(size=(20, 1))
    assert fm.get("mae")(y, out) == pytest.approx(skm.mean_absolute_error(y, out[:, 0]))
    assert fm.get("mse")(y, out) == pytest.approx(skm.mean_squared_error(y, out[:, 0]))
    assert fm.get("acc").name == "acc"
    assert fm.get("accuracy").name == "accuracy"
    assert fm.get("mse").name == "mse"
    m = fm.F1Score(name="f1_macro", average="macro")
    assert fm.get(m) is m

    def my_metric(y_true, y_pred):
        return 0.5

    wrapped = fm.get(my_metric)
    assert wrapped.name == "my_metric" and wrapped(y, out) == 0.5
    with pytest.raises(ValueError, match="valid names: .*accuracy.*f1.*mae.*mse.*precision.*recall"):
        fm.get("roc")  # ('auc' is a Keras name since issue 12)
    with pytest.raises(ValueError, match="valid names"):
        fm.get(3)
