"""The Keras-style metric objects that ``compile(metrics=[...])`` takes.

:class:`Accuracy`, :class:`Precision`, :class:`Recall`, :class:`F1Score`,
:class:`MeanAbsoluteError` and :class:`MeanSquaredError`, found by name with
:func:`get`, take a model's raw outputs and turn them into labels the way Keras
does before scoring with the functions of :mod:`fusednn.metrics.functional`. During
training they are computed from on-device accumulators (``needs``: a confusion
matrix or error sums, see :mod:`fusednn.training.epoch_metrics`).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..arrays import to_host
from .functional import (accuracy_score, f1_score, mean_absolute_error, mean_squared_error, precision_score,
                         recall_score)

__all__ = ["Metric", "Accuracy", "Precision", "Recall", "F1Score", "MeanAbsoluteError", "MeanSquaredError", "get"]


def _predicted_labels(y_pred_raw: np.ndarray) -> np.ndarray:
    # One output unit is a sigmoid probability (Keras thresholds it at 0.5); several are class scores.
    if y_pred_raw.ndim == 1 or y_pred_raw.shape[-1] == 1:
        return (y_pred_raw.reshape(len(y_pred_raw)) > 0.5).astype(np.int64)
    return np.argmax(y_pred_raw, axis=-1)


def _true_labels(y_true: np.ndarray, y_pred_raw: np.ndarray) -> np.ndarray:
    if y_true.ndim == 2 and y_true.shape[1] > 1:
        if y_pred_raw.ndim != 2 or y_pred_raw.shape[1] != y_true.shape[1]:
            raise ValueError(
                f"one-hot y_true has shape {y_true.shape} but the outputs have shape {y_pred_raw.shape}"
            )
        return np.argmax(y_true, axis=1)
    return y_true.reshape(len(y_true))


class Metric:
    """A named metric for ``compile(metrics=[...])``: ``metric(y_true, y_pred_raw)``
    scores a model's raw outputs against the targets and returns a float; ``name``
    is the key it is reported under (``History`` gets ``name`` and ``val_`` + name).

    During ``fit``/``evaluate`` a metric whose ``needs`` is 'confusion' or 'errors'
    is computed from counts the model accumulates on the device over the epoch
    (:meth:`from_confusion`, :meth:`from_error_sums`), so it costs no host round
    trip per step; other metrics are called on each batch and averaged."""

    name = "metric"
    needs: str | None = None  # 'confusion', 'errors' or None (called per batch)

    def from_confusion(self, counts: np.ndarray, binary: bool) -> float:
        """The metric from an epoch's confusion matrix (rows: true class, columns:
        predicted); ``binary`` when it came from a single sigmoid-like output."""
        raise NotImplementedError

    def from_error_sums(self, sums: np.ndarray, count: int) -> float:
        """The metric from (sum |pred - target|, sum (pred - target)^2) over ``count`` values."""
        raise NotImplementedError

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        if name is not None:
            self.name = name
        dname = getattr(dtype, "name", dtype)
        if dname not in (None, "float32", "float64"):
            raise NotImplementedError(f"metric {self.name!r}: dtype {dname!r} is not supported")
        self.dtype = dname or "float32"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "update_state" in cls.__dict__ and not cls.__module__.startswith("fusednn."):
            cls.needs = "state"  # a user's keras.metrics.Metric subclass: updated per batch on the host

    def add_variable(self, shape: Any = (), initializer: Any = "zeros", dtype: Any = None, aggregation: str = "sum",
                     name: str | None = None) -> Any:
        """Keras' ``Metric.add_variable`` (also ``add_weight``): a state variable on the host
        that :meth:`reset_state` returns to its initial value; see :mod:`.custom`."""
        from .custom import add_variable

        return add_variable(self, shape, initializer, dtype, name)

    add_weight = add_variable

    def reset_state(self) -> None:
        """Return every variable made by :meth:`add_variable` to its initial value (Keras'
        default; subclasses with other state override it)."""
        from .custom import reset_variables

        reset_variables(self)

    def __call__(self, y_true: Any, y_pred_raw: Any, sample_weight: Any = None) -> Any:
        update = getattr(self, "update_state", None)
        if update is None:
            raise NotImplementedError
        update(y_true, y_pred_raw, sample_weight)  # a stateful metric: update, then read, as Keras
        return self.result()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Accuracy(Metric):
    """Fraction of samples whose predicted class is the true class: outputs of one
    unit are thresholded at 0.5, several are argmaxed; one-hot targets are argmaxed,
    integer targets used as they are."""

    name = "accuracy"
    needs = "confusion"

    def __call__(self, y_true: Any, y_pred_raw: Any) -> float:
        raw = to_host(y_pred_raw)
        return accuracy_score(_true_labels(to_host(y_true), raw), _predicted_labels(raw))

    def from_confusion(self, counts: np.ndarray, binary: bool) -> float:
        total = counts.sum()
        return float(np.trace(counts) / total) if total else 0.0


class _ClassScore(Metric):
    """Shared body of precision/recall/F1: labels as :class:`Accuracy` makes them,
    then the sklearn function with ``average='binary'`` for one output unit and
    ``'macro'`` for several (``average='auto'``), and ``zero_division=0`` so that a
    batch or epoch without some class gives a defined value and no warning."""

    _score: Callable[..., Any]

    def __init__(self, name: str | None = None, *, average: str | None = "auto",
                 zero_division: Any = 0) -> None:
        super().__init__(name)
        self.average = average
        self.zero_division = zero_division

    needs = "confusion"
    _which = ""  # 'precision', 'recall' or 'f1'

    def __call__(self, y_true: Any, y_pred_raw: Any) -> float:
        raw = to_host(y_pred_raw)
        average = self.average
        if average == "auto":
            average = "binary" if raw.ndim == 1 or raw.shape[-1] == 1 else "macro"
        return type(self)._score(_true_labels(to_host(y_true), raw), _predicted_labels(raw),
                                 average=average, zero_division=self.zero_division)

    def from_confusion(self, counts: np.ndarray, binary: bool) -> float:
        """Textbook per-class precision TP/(TP+FP), recall TP/(TP+FN) and F1 from the
        counts; class 1 for a binary output, else averaged as ``average`` says."""
        tp = np.diag(counts).astype(np.float64)
        pred, true = counts.sum(axis=0), counts.sum(axis=1)
        zd = float(self.zero_division) if self.zero_division not in ("warn", None) else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(pred > 0, tp / pred, zd)
            r = np.where(true > 0, tp / true, zd)
            f = np.where(p + r > 0, 2 * p * r / (p + r), zd)
        score = {"precision": p, "recall": r, "f1": f}[self._which]
        average = self.average
        if average == "auto":
            average = "binary" if binary else "macro"
        if average == "binary":
            return float(score[1])
        if average == "micro":  # every class counted together: accuracy for single-label data
            total = counts.sum()
            return float(tp.sum() / total) if total else zd
        present = (pred + true) > 0  # sklearn averages over the labels that occur
        if average == "weighted":
            return float(np.average(score[present], weights=true[present])) if true.sum() else zd
        return float(score[present].mean()) if present.any() else zd


class Precision(_ClassScore):
    """Precision TP/(TP+FP) of the predicted labels (see :class:`_ClassScore`)."""

    name = "precision"
    _score = precision_score
    _which = "precision"


class Recall(_ClassScore):
    """Recall TP/(TP+FN) of the predicted labels (see :class:`_ClassScore`)."""

    name = "recall"
    _score = recall_score
    _which = "recall"


class F1Score(_ClassScore):
    """F1, the harmonic mean of precision and recall (see :class:`_ClassScore`)."""

    name = "f1"
    _score = f1_score
    _which = "f1"


class _RegressionScore(Metric):
    _score: Callable[..., float]
    needs = "errors"

    def __call__(self, y_true: Any, y_pred_raw: Any) -> float:
        raw, y_true = to_host(y_pred_raw), to_host(y_true)
        # Targets given as (N,) for outputs of shape (N, 1) are the same values.
        if y_true.size == raw.size:
            y_true = y_true.reshape(raw.shape)
        return type(self)._score(y_true, raw)


class MeanAbsoluteError(_RegressionScore):
    """Mean absolute error over all samples and outputs."""

    name = "mae"
    _score = mean_absolute_error

    def from_error_sums(self, sums: np.ndarray, count: int) -> float:
        return float(sums[0] / count) if count else 0.0


class MeanSquaredError(_RegressionScore):
    """Mean squared error over all samples and outputs."""

    name = "mse"
    _score = mean_squared_error

    def from_error_sums(self, sums: np.ndarray, count: int) -> float:
        return float(sums[1] / count) if count else 0.0


class _FunctionMetric(Metric):
    def __init__(self, fn: Callable[[Any, Any], float]) -> None:
        super().__init__(getattr(fn, "__name__", "metric"))
        self.fn = fn

    def sum_and_count(self, y_true: Any, y_pred_raw: Any) -> tuple[float, int]:
        """The sum and number of the values ``fn`` returns for a batch: Keras averages a
        metric function's values over every value of the epoch (a per-sample array counts
        each sample, a scalar counts once)."""
        from ..keras_ops import convert_to_numpy

        v = np.asarray(convert_to_numpy(self.fn(y_true, y_pred_raw)), dtype=np.float64)
        return float(v.sum()), int(v.size)

    def __call__(self, y_true: Any, y_pred_raw: Any, sample_weight: Any = None) -> float:
        total, count = self.sum_and_count(y_true, y_pred_raw)
        return total / count if count else 0.0


_REGISTRY: dict[str, type[Metric]] = {
    "accuracy": Accuracy,
    "acc": Accuracy,
    "precision": Precision,
    "recall": Recall,
    "f1": F1Score,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def get(identifier: str | Callable[[Any, Any], float]) -> Metric:
    """The metric for a Keras-style name ('accuracy'/'acc', 'precision', 'recall',
    'f1', 'mae', 'mse'), reported under the name as given; a :class:`Metric` is
    returned as is and any other callable ``fn(y_true, y_pred_raw)`` is wrapped and
    reported under its ``__name__``. Unknown names raise ValueError listing the valid ones."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        cls = _REGISTRY.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown metric {identifier!r}; valid names: {', '.join(sorted(_REGISTRY))}")
        return cls(name=identifier)
    if callable(identifier):
        return _FunctionMetric(identifier)
    raise ValueError(
        f"metric must be a name or a callable, got {type(identifier).__name__}; "
        f"valid names: {', '.join(sorted(_REGISTRY))}"
    )


def names() -> list[str]:
    """The metric names :func:`get` knows."""
    return sorted(_REGISTRY)
