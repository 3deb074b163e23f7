"""Evaluation metrics with scikit-learn's names, signatures and semantics.

The functions (``accuracy_score``, ``precision_score``, ``recall_score``,
``f1_score``, ``fbeta_score``, ``precision_recall_fscore_support``,
``confusion_matrix``, ``mean_absolute_error``, ``mean_squared_error``,
``r2_score``) work on host arrays in pure NumPy: they take lists, NumPy arrays
or CuPy arrays (copied to the host once) and return Python floats or NumPy
arrays, as ``sklearn.metrics`` does. Precision is TP/(TP+FP), recall is
TP/(TP+FN) and F1 is their harmonic mean 2PR/(P+R) = 2TP/(2TP+FP+FN).

The Keras-style metric objects that ``compile(metrics=...)`` takes are in
:mod:`fusednn.metrics.compiled`.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..arrays import to_host

__all__ = [
    "UndefinedMetricWarning",
    "accuracy_score",
    "precision_recall_fscore_support",
    "precision_score",
    "recall_score",
    "f1_score",
    "fbeta_score",
    "confusion_matrix",
    "mean_absolute_error",
    "mean_squared_error",
    "r2_score",
]


class UndefinedMetricWarning(UserWarning):
    """Warning raised when a metric is ill-defined (a zero denominator) and
    ``zero_division='warn'`` stands in 0.0 for it, as scikit-learn's
    warning of the same name does."""


# --------------------------------------------------------------------------- input checks

def _check_lengths(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: Any) -> np.ndarray | None:
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.ndim == 0:
            raise ValueError(f"{name} must be an array of samples, got the scalar {y!r}")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred have different lengths: {len(y_true)} != {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("Found empty input array (y_true and y_pred); at least 1 sample is required")
    if sample_weight is None:
        return None
    sw = to_host(sample_weight)
    if sw.shape != (len(y_true),):
        raise ValueError(
            f"sample_weight has shape {sw.shape} but y_true and y_pred have length {len(y_true)}"
        )
    return sw


def _type_of_target(y: np.ndarray, name: str) -> str:
    """'binary', 'multiclass', 'continuous' or 'multioutput', as sklearn's type_of_target."""
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] > 1):
        return "multioutput"
    if y.dtype.kind == "f" and np.any(y != np.round(y)):
        if not np.all(np.isfinite(y)):
            raise ValueError(f"Input {name} contains NaN or infinity.")
        return "continuous"
    return "multiclass" if np.unique(y).size > 2 else "binary"


def _check_targets(y_true: Any, y_pred: Any, sample_weight: Any = None):
    """Validate a classification pair: (type, sorted present labels, y_true, y_pred, weights)."""
    y_true, y_pred = to_host(y_true), to_host(y_pred)
    sw = _check_lengths(y_true, y_pred, sample_weight)
    type_true, type_pred = _type_of_target(y_true, "y_true"), _type_of_target(y_pred, "y_pred")
    types = {type_true, type_pred}
    if types == {"binary", "multiclass"}:
        types = {"multiclass"}
    if len(types) > 1:
        raise ValueError(f"Classification metrics can't handle a mix of {type_true} and {type_pred} targets")
    y_type = types.pop()
    if y_type not in ("binary", "multiclass"):
        raise ValueError(f"{y_type} targets are not supported by classification metrics")
    y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
    if len({y.dtype.kind in "USO" for y in (y_true, y_pred)}) > 1:
        raise ValueError("Mix of label input types (string and number)")
    present = np.union1d(y_true, y_pred)
    if y_type == "binary" and present.size > 2:
        y_type = "multiclass"
    return y_type, present, y_true, y_pred, sw


def _encode(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Index of each value in `labels` (any order), or len(labels) where absent."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    pos = np.clip(np.searchsorted(sorted_labels, values), 0, len(labels) - 1)
    found = sorted_labels[pos] == values
    return np.where(found, order[pos], len(labels))


# --------------------------------------------------------------------------- classification

def accuracy_score(y_true: Any, y_pred: Any, *, normalize: bool = True, sample_weight: Any = None) -> float:
    """Fraction (``normalize=True``) or weighted count (``normalize=False``) of samples
    whose predicted label equals the true label, as ``sklearn.metrics.accuracy_score``."""
    _, _, y_true, y_pred, sw = _check_targets(y_true, y_pred, sample_weight)
    score = y_true == y_pred
    if normalize:
        return float(np.average(score, weights=sw))
    return float(score.sum() if sw is None else np.dot(score, sw))


_AVERAGES = (None, "micro", "macro", "weighted", "binary")


def _zero_division_value(zero_division: Any) -> float:
    if isinstance(zero_division, str) and zero_division == "warn":
        return 0.0
    if isinstance(zero_division, (int, float)) and not isinstance(zero_division, bool):
        if zero_division in (0, 1):
            return float(zero_division)
        if np.isnan(zero_division):
            return np.nan
    raise ValueError(f"zero_division must be 'warn', 0, 1 or np.nan, got {zero_division!r}")


def _prf_divide(num, den, metric, modifier, warn_for, zero_division) -> np.ndarray:
    mask = den == 0
    result = np.asarray(num, dtype=np.float64) / np.where(mask, 1, den)
    if not mask.any():
        return result
    result[mask] = _zero_division_value(zero_division)
    if isinstance(zero_division, str) and metric in warn_for:
        # The message mirrors scikit-learn's so users can search for it.
        where = "due to" if result.shape[0] == 1 else "in labels with"
        warnings.warn(
            f"{metric.capitalize()} is ill-defined and being set to 0.0 {where} no {modifier} "
            "samples. Use `zero_division` parameter to control this behavior.",
            UndefinedMetricWarning,
            stacklevel=4,
        )
    return result


def _nanaverage(a: np.ndarray, weights: np.ndarray | None) -> float:
    # zero_division=np.nan marks undefined labels; they are left out of the mean.
    keep = ~np.isnan(a)
    if not keep.any():
        return np.nan
    if weights is None or weights[keep].sum() == 0:
        return float(np.mean(a[keep]))
    return float(np.average(a[keep], weights=weights[keep]))


def precision_recall_fscore_support(
    y_true: Any,
    y_pred: Any,
    *,
    beta: float = 1.0,
    labels: Any = None,
    pos_label: Any = 1,
    average: str | None = None,
    warn_for: tuple[str, ...] = ("precision", "recall", "f-score"),
    sample_weight: Any = None,
    zero_division: Any = "warn",
):
    """Per-label (``average=None``) or averaged precision, recall, F-beta and support,
    with scikit-learn's semantics for ``labels``, ``pos_label``, ``average`` and
    ``zero_division``; support is None once averaged. This is the one place the
    counts are taken; the single-score functions call it."""
    _zero_division_value(zero_division)
    if average not in _AVERAGES:
        raise ValueError(f"average has to be one of {_AVERAGES}")
    if beta < 0:
        raise ValueError(f"beta should be >= 0, got {beta}")
    y_type, present, y_true, y_pred, sw = _check_targets(y_true, y_pred, sample_weight)
    if average == "binary":
        if y_type != "binary":
            raise ValueError(
                f"Target is {y_type} but average='binary'. Please choose another average "
                f"setting, one of {[a for a in _AVERAGES if a != 'binary']}."
            )
        if pos_label not in present and len(present) >= 2:
            raise ValueError(f"pos_label={pos_label!r} is not a valid label. It should be one of {present}")
        labels = [pos_label]
    elif pos_label not in (None, 1):
        warnings.warn(
            f"Note that pos_label (set to {pos_label!r}) is ignored when average != 'binary' "
            f"(got {average!r}). You may use labels=[pos_label] to specify a single positive class.",
            UserWarning,
            stacklevel=3,
        )
    labels = present if labels is None else to_host(labels).reshape(-1)
    n = len(labels)
    t, p = _encode(y_true, labels), _encode(y_pred, labels)
    # Index n collects samples whose label is not selected; it is dropped below.
    tp_sum = np.bincount(t[t == p], weights=None if sw is None else sw[t == p], minlength=n + 1)[:n]
    pred_sum = np.bincount(p, weights=sw, minlength=n + 1)[:n]
    true_sum = np.bincount(t, weights=sw, minlength=n + 1)[:n]
    if average == "micro":
        tp_sum, pred_sum, true_sum = (np.array([s.sum()]) for s in (tp_sum, pred_sum, true_sum))

    precision = _prf_divide(tp_sum, pred_sum, "precision", "predicted", warn_for, zero_division)
    recall = _prf_divide(tp_sum, true_sum, "recall", "true", warn_for, zero_division)
    if np.isposinf(beta):
        f_score = recall
    elif beta == 0:
        f_score = precision
    else:
        # From counts, not from P and R, so a label with TP = 0 scores 0 rather than 0/0.
        beta2 = beta * beta
        f_score = _prf_divide(
            (1 + beta2) * tp_sum, beta2 * true_sum + pred_sum, "f-score", "true nor predicted",
            warn_for, zero_division,
        )
    if average is None:
        return precision, recall, f_score, true_sum
    weights = true_sum if average == "weighted" else None
    return _nanaverage(precision, weights), _nanaverage(recall, weights), _nanaverage(f_score, weights), None


def precision_score(y_true: Any, y_pred: Any, *, labels: Any = None, pos_label: Any = 1,
                    average: str | None = "binary", sample_weight: Any = None,
                    zero_division: Any = "warn"):
    """Precision TP/(TP+FP): of the samples predicted as a label, the fraction that
    truly have it; a float, or one value per label when ``average=None``."""
    p, _, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, pos_label=pos_label, average=average,
        warn_for=("precision",), sample_weight=sample_weight, zero_division=zero_division,
    )
    return p


def recall_score(y_true: Any, y_pred: Any, *, labels: Any = None, pos_label: Any = 1,
                 average: str | None = "binary", sample_weight: Any = None,
                 zero_division: Any = "warn"):
    """Recall TP/(TP+FN): of the samples that truly have a label, the fraction
    predicted as it; a float, or one value per label when ``average=None``."""
    _, r, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, pos_label=pos_label, average=average,
        warn_for=("recall",), sample_weight=sample_weight, zero_division=zero_division,
    )
    return r


def fbeta_score(y_true: Any, y_pred: Any, *, beta: float, labels: Any = None, pos_label: Any = 1,
                average: str | None = "binary", sample_weight: Any = None,
                zero_division: Any = "warn"):
    """F-beta (1+b^2)PR/(b^2 P + R), computed from counts as (1+b^2)TP/((1+b^2)TP + b^2 FN + FP);
    ``beta`` > 1 favours recall, < 1 precision."""
    _, _, f, _ = precision_recall_fscore_support(
        y_true, y_pred, beta=beta, labels=labels, pos_label=pos_label, average=average,
        warn_for=("f-score",), sample_weight=sample_weight, zero_division=zero_division,
    )
    return f


def f1_score(y_true: Any, y_pred: Any, *, labels: Any = None, pos_label: Any = 1,
             average: str | None = "binary", sample_weight: Any = None,
             zero_division: Any = "warn"):
    """F1, the harmonic mean 2PR/(P+R) of precision and recall (= 2TP/(2TP+FP+FN));
    a float, or one value per label when ``average=None``."""
    return fbeta_score(y_true, y_pred, beta=1.0, labels=labels, pos_label=pos_label,
                       average=average, sample_weight=sample_weight, zero_division=zero_division)


def confusion_matrix(y_true: Any, y_pred: Any, *, labels: Any = None, sample_weight: Any = None,
                     normalize: str | None = None) -> np.ndarray:
    """Matrix C with C[i, j] the (weighted) number of samples of true label i predicted
    as label j, rows and columns in the order of ``labels`` (default: sorted labels
    seen in either array); ``normalize`` 'true'/'pred'/'all' divides by row, column
    or grand totals, as ``sklearn.metrics.confusion_matrix``."""
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be one of None, 'true', 'pred', 'all', got {normalize!r}")
    _, present, y_true, y_pred, sw = _check_targets(y_true, y_pred, sample_weight)
    if labels is None:
        labels = present
    else:
        labels = to_host(labels).reshape(-1)
        if labels.size == 0:
            raise ValueError("'labels' should contain at least one label.")
        if np.intersect1d(y_true, labels).size == 0:
            raise ValueError("At least one label specified must be in y_true")
    n = len(labels)
    t, p = _encode(y_true, labels), _encode(y_pred, labels)
    keep = (t < n) & (p < n)
    if sw is None:
        sw = np.ones(len(y_true), dtype=np.int64)
    dtype = np.int64 if sw.dtype.kind in "iub" else np.float64
    cm = np.bincount(t[keep] * n + p[keep], weights=sw[keep], minlength=n * n)
    cm = cm.reshape(n, n).astype(dtype)
    with np.errstate(all="ignore"):
        if normalize == "true":
            cm = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            cm = cm / cm.sum(axis=0, keepdims=True)
        elif normalize == "all":
            cm = cm / cm.sum()
    cm = np.nan_to_num(cm)
    if cm.shape == (1, 1):
        warnings.warn(
            "A single label was found in 'y_true' and 'y_pred'. For the confusion matrix to "
            "have the correct shape, use the 'labels' parameter to pass all known labels.",
            UserWarning,
            stacklevel=2,
        )
    return cm


# --------------------------------------------------------------------------- regression

def _check_reg_targets(y_true: Any, y_pred: Any, sample_weight: Any, multioutput: Any,
                       allowed: tuple[str, ...]):
    y_true = to_host(y_true).astype(np.float64)
    y_pred = to_host(y_pred).astype(np.float64)
    sw = _check_lengths(y_true, y_pred, sample_weight)
    y_true = y_true.reshape(len(y_true), -1) if y_true.ndim == 1 else y_true
    y_pred = y_pred.reshape(len(y_pred), -1) if y_pred.ndim == 1 else y_pred
    if y_true.ndim != 2 or y_pred.ndim != 2:
        raise ValueError(
            f"y_true and y_pred must be 1-d or 2-d, got shapes {y_true.shape} and {y_pred.shape}"
        )
    if y_true.shape[1] != y_pred.shape[1]:
        raise ValueError(
            f"y_true and y_pred have different number of output ({y_true.shape[1]}!={y_pred.shape[1]})"
        )
    for name, a in (("y_true", y_true), ("y_pred", y_pred)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"Input {name} contains NaN or infinity.")
    if isinstance(multioutput, str):
        if multioutput not in allowed:
            raise ValueError(
                f"Allowed 'multioutput' string values are {allowed}. You provided multioutput={multioutput!r}"
            )
    else:
        multioutput = to_host(multioutput).astype(np.float64)
        if y_true.shape[1] == 1:
            raise ValueError("Custom weights are useful only in multi-output cases.")
        if multioutput.shape != (y_true.shape[1],):
            raise ValueError(
                f"There must be equally many custom weights ({multioutput.shape}) "
                f"as outputs ({y_true.shape[1]})."
            )
    return y_true, y_pred, None if sw is None else sw.astype(np.float64), multioutput


def _average_outputs(errors: np.ndarray, multioutput: Any):
    if isinstance(multioutput, str):
        if multioutput == "raw_values":
            return errors
        return float(np.mean(errors))
    return float(np.average(errors, weights=multioutput))


def mean_absolute_error(y_true: Any, y_pred: Any, *, sample_weight: Any = None,
                        multioutput: Any = "uniform_average"):
    """Mean of |y_true - y_pred| per output, then averaged over outputs
    (``'uniform_average'``), returned per output (``'raw_values'``) or weighted by
    an array of output weights."""
    y_true, y_pred, sw, multioutput = _check_reg_targets(
        y_true, y_pred, sample_weight, multioutput, ("raw_values", "uniform_average"))
    return _average_outputs(np.average(np.abs(y_pred - y_true), weights=sw, axis=0), multioutput)


def mean_squared_error(y_true: Any, y_pred: Any, *, sample_weight: Any = None,
                       multioutput: Any = "uniform_average"):
    """Mean of (y_true - y_pred)^2 per output, then averaged over outputs as in
    :func:`mean_absolute_error`."""
    y_true, y_pred, sw, multioutput = _check_reg_targets(
        y_true, y_pred, sample_weight, multioutput, ("raw_values", "uniform_average"))
    return _average_outputs(np.average((y_pred - y_true) ** 2, weights=sw, axis=0), multioutput)


def r2_score(y_true: Any, y_pred: Any, *, sample_weight: Any = None,
             multioutput: Any = "uniform_average", force_finite: bool = True):
    """Coefficient of determination 1 - SS_res/SS_tot per output, averaged as
    ``multioutput`` says ('variance_weighted' weights outputs by SS_tot). With
    ``force_finite`` a constant y_true scores 1.0 when predicted exactly and 0.0
    otherwise instead of NaN/-inf, as scikit-learn does; fewer than two samples give
    NaN with an :class:`UndefinedMetricWarning`."""
    y_true, y_pred, sw, multioutput = _check_reg_targets(
        y_true, y_pred, sample_weight, multioutput, ("raw_values", "uniform_average", "variance_weighted"))
    if len(y_true) < 2:
        warnings.warn("R^2 score is not well-defined with less than two samples.",
                      UndefinedMetricWarning, stacklevel=2)
        return float("nan")
    w = 1.0 if sw is None else sw[:, None]
    numerator = np.sum(w * (y_true - y_pred) ** 2, axis=0)
    denominator = np.sum(w * (y_true - np.average(y_true, axis=0, weights=sw)) ** 2, axis=0)
    if force_finite:
        scores = np.ones(y_true.shape[1])
        valid = (denominator != 0) & (numerator != 0)
        scores[valid] = 1 - numerator[valid] / denominator[valid]
        scores[(numerator != 0) & (denominator == 0)] = 0.0
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = 1 - numerator / denominator
    if isinstance(multioutput, str) and multioutput == "variance_weighted":
        # All-constant outputs give all-zero weights; fall back to a plain mean as sklearn does.
        multioutput = denominator if np.any(denominator != 0) else "uniform_average"
    return _average_outputs(scores, multioutput)
