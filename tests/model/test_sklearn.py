"""fusednn.sklearn's MLPClassifier/MLPRegressor: scikit-learn's own estimator checks,
the same numbers as scikit-learn's MLP (same init, shuffling and objective, so the
loss curves agree to float32 rounding), and use in Pipeline / GridSearchCV /
cross_val_score / pandas / pickle."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fusednn  # noqa: E402
from fusednn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Checks expected to fail, with the reason. Fitting with integer sample weights and
# fitting on the correspondingly repeated rows agree to float32 rounding (max relative
# difference ~5e-7, see test_sample_weight_equals_repeated_rows_in_float32), but these
# checks compare with rtol=1e-7, the float64 precision scikit-learn's own MLP computes in;
# fusednn computes in float32 (as Keras), and summing repeated rows in another order
# cannot give the same float32 bits.
_FLOAT32 = ("fusednn trains in float32: weighted and repeated-row fits agree to ~5e-7 relative, "
            "the check asks rtol=1e-7")
EXPECTED_FAILED = {
    name: {"check_sample_weight_equivalence_on_dense_data": _FLOAT32,
           "check_sample_weight_equivalence_on_sparse_data": _FLOAT32}
    for name in ("MLPClassifier", "MLPRegressor")}


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED[type(est).__name__])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:600] / 16.0, y[:600]


def _both(cls, sk_cls, x, y, **params):
    ours = cls(**params).fit(x, y)
    ref = sk_cls(**params).fit(x, y)
    return ours, ref


# n = 600 = 3 batches of 200: no smaller last batch, so the penalty matches exactly
@pytest.mark.parametrize("params", [
    dict(solver="adam", alpha=1e-3),
    dict(solver="sgd", learning_rate_init=0.1, momentum=0.9, alpha=1e-2, activation="tanh"),
    dict(solver="sgd", learning_rate_init=0.2, momentum=0.0, alpha=0.1, activation="logistic",
         learning_rate="invscaling"),
])
def test_classifier_matches_sklearn(digits, params):
    x, y = digits
    ours, ref = _both(MLPClassifier, neural_network.MLPClassifier, x, y, hidden_layer_sizes=(32,),
                      random_state=0, max_iter=8, **params)
    assert ours.out_activation_ == ref.out_activation_ == "softmax"
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=2e-4)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)
    assert ours.n_iter_ == ref.n_iter_ == 8 and ours.t_ == ref.t_
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=2e-4)


def test_binary_and_multilabel_match_sklearn(digits):
    x, y = digits
    yb = (y > 4).astype(int)
    ours, ref = _both(MLPClassifier, neural_network.MLPClassifier, x, yb, hidden_layer_sizes=(16,),
                      random_state=1, max_iter=5, alpha=1e-2)
    assert ours.out_activation_ == "logistic" and ours.n_outputs_ == 1
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=2e-4)
    assert ours.predict_proba(x).shape == (600, 2)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-3)
    xm, ym = make_multilabel_classification(n_samples=400, n_features=10, n_classes=4, random_state=0)
    xm = xm / xm.max()
    ours, ref = _both(MLPClassifier, neural_network.MLPClassifier, xm, ym, hidden_layer_sizes=(16,),
                      random_state=2, max_iter=5, alpha=1e-2, solver="sgd", learning_rate_init=0.05)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=2e-4)
    assert ours.predict(xm).shape == ym.shape
    np.testing.assert_array_equal(np.log(ours.predict_proba(xm[:5])), ours.predict_log_proba(xm[:5]))


@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_matches_sklearn(n_targets):
    x, y = make_regression(n_samples=400, n_features=8, n_targets=n_targets, noise=0.1, random_state=0)
    y = y / y.std()
    # alpha = 0 for several outputs: there scikit-learn's reported penalty differs (see fusednn.sklearn.mlp)
    alpha = 1e-2 if n_targets == 1 else 0.0
    for solver in ("adam", "sgd"):
        ours, ref = _both(MLPRegressor, neural_network.MLPRegressor, x, y, hidden_layer_sizes=(16, 8),
                          random_state=3, max_iter=6, alpha=alpha, solver=solver, learning_rate_init=0.01)
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=5e-4)
        assert ours.predict(x).shape == y.shape
        assert ours.out_activation_ == "identity"


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_sample_weight_and_last_partial_batch_match_sklearn(digits, solver):
    """650 samples: a last batch of 50, where the penalty's divisor is that batch's
    sample count (or weight sum), as in scikit-learn."""
    x, y = load_digits(return_X_y=True)
    x, y = x[:650] / 16.0, y[:650]
    w = np.random.default_rng(0).uniform(0, 3, 650)
    w[:5] = 0.0
    for kw in ({}, {"sample_weight": w}):
        params = dict(hidden_layer_sizes=(16,), random_state=0, max_iter=5, alpha=0.05, solver=solver)
        ours = MLPClassifier(**params).fit(x, y, **kw)
        ref = neural_network.MLPClassifier(**params).fit(x, y, **kw)
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=2e-5)
        for a, b in zip(ours.coefs_, ref.coefs_):
            np.testing.assert_allclose(a, b, atol=2e-5)
    xr, yr = make_regression(n_samples=450, n_features=5, n_targets=2, random_state=0)
    yr = yr / yr.std()
    params = dict(hidden_layer_sizes=(8,), random_state=0, max_iter=5, alpha=0.0, solver=solver,
                  learning_rate_init=0.01)
    wr = np.random.default_rng(1).uniform(0, 3, 450)
    ours = MLPRegressor(**params).fit(xr, yr, sample_weight=wr)
    ref = neural_network.MLPRegressor(**params).fit(xr, yr, sample_weight=wr)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=2e-5)


def test_sample_weight_equals_repeated_rows_in_float32():
    """What check_sample_weight_equivalence_* tests, at float32 tolerance."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)
    w = rng.integers(0, 3, 60)
    params = dict(hidden_layer_sizes=(8,), max_iter=20, random_state=0, shuffle=False)
    weighted = MLPClassifier(**params).fit(x, y, sample_weight=w)
    repeated = MLPClassifier(**params).fit(np.repeat(x, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.predict_proba(x), repeated.predict_proba(x), rtol=1e-5, atol=1e-6)
    m = MLPRegressor(**params)
    np.testing.assert_allclose(m.fit(x, y.astype(float), sample_weight=w).predict(x),
                               clone(m).fit(np.repeat(x, w, axis=0), np.repeat(y, w).astype(float)).predict(x),
                               rtol=1e-5, atol=1e-6)


def test_early_stopping_and_adaptive_lr_follow_sklearn(digits):
    x, y = digits
    params = dict(hidden_layer_sizes=(16,), random_state=0, max_iter=60, early_stopping=True,
                  n_iter_no_change=3, tol=1e-3, solver="sgd", learning_rate="adaptive", learning_rate_init=0.05)
    ours, ref = _both(MLPClassifier, neural_network.MLPClassifier, x, y, **params)
    assert ours.best_loss_ is None and len(ours.validation_scores_) == ours.n_iter_
    # the same validation split and the same scores (accuracy on 60 samples) epoch by epoch,
    # until float32 rounding flips a prediction
    k = min(len(ours.validation_scores_), len(ref.validation_scores_), 10)
    np.testing.assert_allclose(ours.validation_scores_[:k], ref.validation_scores_[:k], atol=1 / 60 + 1e-9)
    assert ours.best_validation_score_ == max(ours.validation_scores_)
    assert ours.score(x, y) > 0.8


def test_training_loss_stops_after_n_iter_no_change():
    x, y = make_regression(n_samples=100, n_features=3, random_state=0)
    params = dict(hidden_layer_sizes=(4,), tol=1e9, n_iter_no_change=2, max_iter=50, random_state=0)
    m, ref = _both(MLPRegressor, neural_network.MLPRegressor, x, y, **params)
    # the first epoch improves on inf; then 3 epochs without improvement (count > 2) stop it
    assert m.n_iter_ == ref.n_iter_ == 4


def test_partial_fit_matches_sklearn_and_requires_classes(digits):
    x, y = digits
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        MLPClassifier().partial_fit(x, y)
    ours = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    ref = neural_network.MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    classes = np.unique(y)
    for lo in (0, 200, 400):
        ours.partial_fit(x[lo:lo + 200], y[lo:lo + 200], classes=classes)
        ref.partial_fit(x[lo:lo + 200], y[lo:lo + 200], classes=classes)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=2e-4)
    assert ours.n_iter_ == ref.n_iter_ == 1 and len(ours.loss_curve_) == 3  # one epoch per call
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(x, y, classes=classes)


def test_refit_with_same_random_state_is_identical_and_pickles(digits):
    x, y = digits
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=7).fit(x, y)
    b = clone(a).fit(x, y)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(wa, wb)
    c = pickle.loads(pickle.dumps(a))
    assert "_net" not in c.__dict__ or c.__dict__["_net"] is None
    np.testing.assert_array_equal(c.predict_proba(x), a.predict_proba(x))
    assert "_net" not in clone(a).__dict__ and not hasattr(clone(a), "coefs_")


def test_warm_start_continues_like_sklearn(digits):
    x, y = digits
    params = dict(hidden_layer_sizes=(8,), max_iter=3, warm_start=True, random_state=0)
    ours, ref = MLPClassifier(**params).fit(x, y), neural_network.MLPClassifier(**params).fit(x, y)
    ours.fit(x, y)
    ref.fit(x, y)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=2e-5)
    assert ours.n_iter_ == ref.n_iter_ == 3 and len(ours.loss_curve_) == 6
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same classes"):
        ours.fit(x[y < 5], y[y < 5])


def test_errors_are_sklearns(digits):
    x, y = digits
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(x)
    m = MLPRegressor(max_iter=2).fit(x, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPRegressor is expecting 64 features as input"):
        m.predict(x[:, :3])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        m.predict(bad)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPRegressor().fit(bad, y)
    with pytest.raises(InvalidParameterError, match="solver"):
        MLPClassifier(solver="newton").fit(x, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be > 0"):
        MLPClassifier(hidden_layer_sizes=(3, 0)).fit(x, y)


def test_pipeline_grid_search_and_cross_val_score(digits):
    x, y = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0,
                                                         learning_rate_init=0.01))
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.75
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1], "mlpclassifier__hidden_layer_sizes": [(8,), (16,)]},
                        cv=2, n_jobs=2)
    grid.fit(x, y)
    assert grid.best_score_ > 0.7 and set(grid.best_params_) == {"mlpclassifier__alpha",
                                                                  "mlpclassifier__hidden_layer_sizes"}
    assert grid.predict(x[:7]).shape == (7,)


def test_pandas_feature_names(digits):
    pd = pytest.importorskip("pandas")
    x, y = digits
    df = pd.DataFrame(x[:, :10], columns=[f"f{i}" for i in range(10)])
    m = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3).fit(df, pd.Series(y.astype(float)))
    np.testing.assert_array_equal(m.feature_names_in_, df.columns)
    with pytest.raises(ValueError, match="feature names"):
        m.predict(df.rename(columns={"f0": "other"}))
    assert m.predict(df).shape == (600,)


def test_backends_agree(digits):
    x, y = digits
    if "cpu" not in fusednn.available_backends():
        pytest.skip("cpu backend not built")
    a = MLPClassifier(hidden_layer_sizes=(16,), max_iter=4, random_state=0, backend="numpy").fit(x, y)
    b = MLPClassifier(hidden_layer_sizes=(16,), max_iter=4, random_state=0, backend="cpu").fit(x, y)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-4)
    assert fusednn.get_backend().name == fusednn.get_backend().name  # the active backend is left as it was


@pytest.mark.gpu
def test_cuda_backend_follows_cpu(digits):
    """The fused cuda trainer with the regularizer, sample weights and the per-step
    penalty scale (650 samples: a last batch of 50) gives the cpu backend's curve."""
    x, y = load_digits(return_X_y=True)
    x, y = x[:650] / 16.0, y[:650]
    w = np.random.default_rng(0).uniform(0, 3, 650)
    params = dict(hidden_layer_sizes=(16,), max_iter=4, random_state=0, alpha=0.05)
    a = MLPClassifier(**params, backend="cpu").fit(x, y, sample_weight=w)
    b = MLPClassifier(**params, backend="cuda").fit(x, y, sample_weight=w)
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(b.predict_proba(x), a.predict_proba(x), atol=1e-4)


def test_max_iter_warns_convergence(digits):
    x, y = digits
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(x, y)
    assert any(issubclass(i.category, ConvergenceWarning) for i in w)


@pytest.mark.parametrize("y", [np.arange(500) % 10, np.arange(50) % 2, np.array(["b", "a", "c", "a"]),
                               np.array(["x", "y", "y"]), np.array([-3.0, 2.0, 0.0, 2.0]), np.array([True, False, True]),
                               np.array([5, 5, 7]), np.array([3, 1, 2]), np.array([4, 4, 4])])
def test_label_indicator_is_label_binarizers(y):
    """The classifier's targets: the fast path of _indicator gives LabelBinarizer's
    matrix (as bool) for binary, multi-class, string, float and one-class labels."""
    from sklearn.preprocessing import LabelBinarizer

    from fusednn.sklearn.mlp import _indicator

    lb = LabelBinarizer().fit(y)
    want = lb.transform(y).astype(bool)
    got = _indicator(lb, y)
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    subset = y[: max(1, len(y) // 2)]  # partial_fit: a batch with some of the classes
    assert np.array_equal(_indicator(lb, subset), lb.transform(subset).astype(bool))
