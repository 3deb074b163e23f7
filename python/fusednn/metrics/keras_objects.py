"""Keras 3's metric objects (``keras.metrics``) with their names, arguments and formulas.

Each is stateful as in Keras: ``update_state(y_true, y_pred, sample_weight=None)``
adds a batch, ``result()`` reads the value, ``reset_state()`` starts over, and
calling the object updates and returns the result. States are float64 host
arrays, so a metric used on its own is exact to float64.

Inside ``fit``/``evaluate`` the metrics that the model's on-device accumulators
already give (a confusion matrix, error sums) are computed from them without
per-step Python, in the fused trainer: ``MeanSquaredError``,
``RootMeanSquaredError``, ``MeanAbsoluteError`` always; ``CategoricalAccuracy``
and ``SparseCategoricalAccuracy`` always; ``BinaryAccuracy``, ``Precision`` and
``Recall`` at their default 0.5 threshold (no ``class_id``/``top_k``) on a model with
one output; and, through the metric-object kernels (``fusednn/metric_math.h``: float64
accumulators on the device, see :meth:`KerasMetric.device_spec`), ``AUC`` (per-threshold
bucket counts, pooled or per output for ``multi_label``/``label_weights``),
``Precision``/``Recall`` with ``thresholds`` or ``class_id`` (the same buckets), ``TopKCategoricalAccuracy``,
``SparseTopKCategoricalAccuracy``, ``F1Score``/``FBetaScore`` (per-class TP/FP/FN),
``R2Score``, ``MeanAbsolutePercentageError`` and ``Accuracy``. The others
(``Precision``/``Recall`` with ``top_k``, ``BinaryAccuracy`` with another threshold)
accumulate per batch on the host: the model then trains on the per-op path and says so in ``fused_reason``.
Sample weights (``sample_weight``, ``class_weight``) weigh every compiled metric as in
Keras: weighted means, weighted confusion counts.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from ..arrays import to_host
from .compiled import Metric

EPSILON = 1e-7  # keras.backend.epsilon()

__all__ = ["KerasMetric", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
           "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Precision", "Recall", "AUC", "F1Score", "FBetaScore", "MeanSquaredError",
           "RootMeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError", "R2Score", "metric_needs"]


def metric_needs(metric: Metric, output_dim: int, sparse: bool, folded: str | None = None) -> str | None:
    """Which accumulator ``metric`` takes on a model with ``output_dim`` outputs:
    'confusion' or 'errors' (on the device, fused), 'device' (its own float64
    accumulators updated by the metric-object kernel, fused), 'state' (a stateful
    metric updated per batch on the host) or None (a function called per batch and
    averaged). ``folded``: the output activation ('sigmoid'/'softmax') the loss folded
    in, which the metric must apply to the outputs it is handed."""
    needs_for = getattr(metric, "needs_for", None)
    need = needs_for(output_dim, sparse) if needs_for is not None else metric.needs
    if need == "state" and isinstance(metric, KerasMetric) and \
            metric.device_spec(output_dim, sparse, folded) is not None:
        return "device"
    return need


def _pre(folded: str | None) -> int:
    return {None: 0, "sigmoid": 1, "softmax": 2}[folded]


def _f64(a: Any) -> np.ndarray:
    return np.asarray(to_host(a), dtype=np.float64)


def _weights(sample_weight: Any, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = _f64(sample_weight).reshape(-1)
    if w.size == 1:
        return np.full(n, float(w[0]))
    if w.size != n:
        raise ValueError(f"sample_weight has {w.size} entries for {n} samples")
    return w


def _rows(y: np.ndarray) -> np.ndarray:
    return y.reshape(len(y), -1) if y.ndim != 1 else y.reshape(-1, 1)


class KerasMetric(Metric):
    """Base of the stateful Keras metrics: ``update_state``/``result``/``reset_state``,
    ``get_config``; inside ``fit`` it accumulates on the host per batch unless
    :meth:`needs_for` names a fused accumulator."""

    needs = "state"

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(name)
        self.dtype = dtype
        self.reset_state()

    def needs_for(self, output_dim: int, sparse: bool) -> str | None:
        return "state"

    def device_spec(self, output_dim: int, sparse: bool, folded: str | None) -> dict[str, Any] | None:
        """The metric-object kernel's spec for this metric on a model with ``output_dim``
        outputs (``sparse``: class-index targets; ``folded``: the output activation the
        metric must apply), ``{"kind", "pre", "k", "threshold", "thresholds", "sparse"}``
        (:mod:`fusednn.backends.metric_kernels`), or None where it has no kernel."""
        return None

    def from_device(self, acc: np.ndarray, samples: int, output_dim: int) -> Any:
        """Load the state from the kernel's accumulators ``acc`` (host float64) over
        ``samples`` rows and return :meth:`result`."""
        raise NotImplementedError

    def reset_state(self) -> None:
        raise NotImplementedError

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        raise NotImplementedError

    def result(self) -> Any:
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class _MeanMetric(KerasMetric):
    """Keras' MeanMetricWrapper: a per-sample value (mean over the last axis),
    averaged with the sample weights."""

    def reset_state(self) -> None:
        self.total, self.count = 0.0, 0.0

    def _values(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        yt, yp = _f64(y_true), _f64(y_pred)
        v = self._values(yt, yp).reshape(-1)
        w = _weights(sample_weight, len(v))
        self.total += float(np.dot(v, w))
        self.count += float(w.sum())

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def from_device(self, acc: np.ndarray, samples: int, output_dim: int) -> Any:
        self.total, self.count = float(acc[0]), float(acc[1])
        return self.result()


def _match_shape(yt: np.ndarray, yp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    yp = _rows(yp)
    return yt.reshape(yp.shape) if yt.size == yp.size else _rows(yt), yp


class Accuracy(_MeanMetric):
    """How often predictions equal the labels exactly (``keras.metrics.Accuracy``)."""

    def __init__(self, name: str = "accuracy", dtype: Any = None) -> None:
        super().__init__(name, dtype)

    def device_spec(self, output_dim, sparse, folded):
        return None if sparse else {"kind": "equal", "pre": _pre(folded)}

    def _values(self, yt, yp):
        yt, yp = _match_shape(yt, yp)
        return (yt == yp).mean(axis=1)


class BinaryAccuracy(_MeanMetric):
    """How often ``y_pred > threshold`` equals the 0/1 label (mean over outputs)."""

    def __init__(self, name: str = "binary_accuracy", dtype: Any = None, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        super().__init__(name, dtype)

    def needs_for(self, output_dim: int, sparse: bool) -> str | None:
        return "confusion" if output_dim == 1 and self.threshold == 0.5 and not sparse else "state"

    def from_confusion(self, counts: np.ndarray, binary: bool) -> float:
        total = counts.sum()
        return float(np.trace(counts) / total) if total else 0.0

    def device_spec(self, output_dim, sparse, folded):
        # another threshold (or several outputs): the threshold-bucket kernel of the AUC
        # family, pooled over the outputs; correct = TP + TN at the one threshold
        if sparse:
            return None
        return {"kind": "auc", "pre": _pre(folded), "k": 0,
                "thresholds": np.array([self.threshold], dtype=np.float64)}

    def from_device(self, acc: np.ndarray, samples: int, output_dim: int) -> Any:
        tp, _, tn, _ = _counts_from_buckets(acc, 1, output_dim, False)
        # the buckets count every element: per sample, the mean over its outputs as Keras
        self.total = float(tp[0, 0] + tn[0, 0]) / output_dim
        self.count = float(np.sum(acc[:4])) / output_dim
        return self.result()

    def _values(self, yt, yp):
        yt, yp = _match_shape(yt, yp)
        return (yt == (yp > self.threshold)).mean(axis=1)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(_MeanMetric):
    """How often the argmax of the prediction is the argmax of the one-hot label."""

    def __init__(self, name: str = "categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(name, dtype)

    def needs_for(self, output_dim: int, sparse: bool) -> str | None:
        return "confusion" if output_dim > 1 and not sparse else "state"

    def from_confusion(self, counts: np.ndarray, binary: bool) -> float:
        total = counts.sum()
        return float(np.trace(counts) / total) if total else 0.0

    def _values(self, yt, yp):
        yt, yp = _match_shape(yt, yp)
        return (np.argmax(yt, axis=1) == np.argmax(yp, axis=1)).astype(np.float64)


class SparseCategoricalAccuracy(_MeanMetric):
    """How often the argmax of the prediction is the integer label."""

    def __init__(self, name: str = "sparse_categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(name, dtype)

    def needs_for(self, output_dim: int, sparse: bool) -> str | None:
        return "confusion" if output_dim > 1 and sparse else "state"

    def from_confusion(self, counts: np.ndarray, binary: bool) -> float:
        total = counts.sum()
        return float(np.trace(counts) / total) if total else 0.0

    def _values(self, yt, yp):
        yp = _rows(yp)
        return (yt.reshape(len(yp)) == np.argmax(yp, axis=1)).astype(np.float64)


class TopKCategoricalAccuracy(_MeanMetric):
    """How often the one-hot label's class is among the ``k`` highest predictions
    (ties broken as ``in_top_k``: a class tied with the k-th value counts as in)."""

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy", dtype: Any = None) -> None:
        self.k = int(k)
        super().__init__(name, dtype)

    def device_spec(self, output_dim, sparse, folded):
        # the ranking of the outputs is that of the logits a folded softmax/sigmoid takes
        return None if sparse or output_dim < 2 else {"kind": "top_k", "k": self.k}

    def _values(self, yt, yp):
        yt, yp = _match_shape(yt, yp)
        target = np.argmax(yt, axis=1)
        score = yp[np.arange(len(yp)), target]
        # in_top_k: fewer than k classes score strictly higher than the target
        return ((yp > score[:, None]).sum(axis=1) < self.k).astype(np.float64)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(_MeanMetric):
    """How often the integer label is among the ``k`` highest predictions (ties as
    :class:`TopKCategoricalAccuracy`)."""

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy", dtype: Any = None) -> None:
        self.k = int(k)
        super().__init__(name, dtype)

    def device_spec(self, output_dim, sparse, folded):
        return {"kind": "top_k", "k": self.k, "sparse": True} if sparse and output_dim >= 2 else None

    def _values(self, yt, yp):
        yp = _rows(yp)
        target = yt.reshape(len(yp)).astype(np.int64)
        score = yp[np.arange(len(yp)), target]
        return ((yp > score[:, None]).sum(axis=1) < self.k).astype(np.float64)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class _RegressionMean(_MeanMetric):
    def needs_for(self, output_dim: int, sparse: bool) -> str | None:
        return "errors"


class MeanSquaredError(_RegressionMean):
    """mean((y_true - y_pred)^2)."""

    def __init__(self, name: str = "mean_squared_error", dtype: Any = None) -> None:
        super().__init__(name, dtype)

    def _values(self, yt, yp):
        yt, yp = _match_shape(yt, yp)
        return ((yt - yp) ** 2).mean(axis=1)

    def from_error_sums(self, sums: np.ndarray, count: int) -> float:
        return float(sums[1] / count) if count else 0.0


class MeanAbsoluteError(_RegressionMean):
    """mean(|y_true - y_pred|)."""

    def __init__(self, name: str = "mean_absolute_error", dtype: Any = None) -> None:
        super().__init__(name, dtype)

    def _values(self, yt, yp):
        yt, yp = _match_shape(yt, yp)
        return np.abs(yt - yp).mean(axis=1)

    def from_error_sums(self, sums: np.ndarray, count: int) -> float:
        return float(sums[0] / count) if count else 0.0


class RootMeanSquaredError(MeanSquaredError):
    """sqrt(mean((y_true - y_pred)^2)) over everything seen (not a mean of roots)."""

    def __init__(self, name: str = "root_mean_squared_error", dtype: Any = None) -> None:
        super().__init__(name, dtype)

    def result(self) -> float:
        return float(np.sqrt(super().result()))

    def from_error_sums(self, sums: np.ndarray, count: int) -> float:
        return float(np.sqrt(sums[1] / count)) if count else 0.0


class MeanAbsolutePercentageError(_MeanMetric):
    """100 * mean(|y_true - y_pred| / max(|y_true|, epsilon))."""

    def __init__(self, name: str = "mean_absolute_percentage_error", dtype: Any = None) -> None:
        super().__init__(name, dtype)

    def device_spec(self, output_dim, sparse, folded):
        return None if sparse else {"kind": "mape", "pre": _pre(folded)}

    def _values(self, yt, yp):
        yt, yp = _match_shape(yt, yp)
        return 100.0 * (np.abs(yt - yp) / np.maximum(np.abs(yt), EPSILON)).mean(axis=1)


class R2Score(KerasMetric):
    """The coefficient of determination per output, aggregated over outputs as
    ``class_aggregation`` says ('uniform_average', 'variance_weighted_average' or
    None for the per-output array); ``num_regressors`` gives the adjusted R²."""

    def __init__(self, class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
                 name: str = "r2_score", dtype: Any = None) -> None:
        if class_aggregation not in (None, "uniform_average", "variance_weighted_average"):
            raise ValueError("Invalid value for argument `class_aggregation`. Expected one of "
                             "{None, 'uniform_average', 'variance_weighted_average'}. "
                             f"Received: class_aggregation={class_aggregation}")
        if num_regressors < 0:
            raise ValueError(f"num_regressors must be >= 0, got {num_regressors}")
        self.class_aggregation, self.num_regressors = class_aggregation, int(num_regressors)
        super().__init__(name, dtype)

    def reset_state(self) -> None:
        self.sum = self.squared_sum = self.total_mse = None
        self.count = 0.0
        self.num_samples = 0

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        yt, yp = _match_shape(_f64(y_true), _f64(y_pred))
        w = _weights(sample_weight, len(yt))[:, None]
        if self.sum is None:
            d = yt.shape[1]
            self.sum, self.squared_sum, self.total_mse, self.count = np.zeros(d), np.zeros(d), np.zeros(d), np.zeros(d)
        self.sum += (yt * w).sum(axis=0)
        self.squared_sum += (yt * yt * w).sum(axis=0)
        self.total_mse += ((yt - yp) ** 2 * w).sum(axis=0)
        self.count += np.broadcast_to(w, yt.shape).sum(axis=0)
        self.num_samples += yt.size  # Keras counts values (ops.size), not rows

    def device_spec(self, output_dim, sparse, folded):
        return None if sparse else {"kind": "r2", "pre": _pre(folded)}

    def from_device(self, acc: np.ndarray, samples: int, output_dim: int) -> Any:
        d = output_dim
        if samples:
            self.sum, self.squared_sum = acc[:d].copy(), acc[d:2 * d].copy()
            self.total_mse, self.count = acc[2 * d:3 * d].copy(), acc[3 * d:].copy()
            self.num_samples = samples * d
        return self.result()

    def result(self) -> Any:
        if self.sum is None:
            return 0.0
        mean = self.sum / self.count
        total = self.squared_sum - self.sum * mean
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = 1.0 - self.total_mse / total
        raw = np.where(np.isinf(raw), 0.0, raw)  # as Keras (a constant target with no error gives nan)
        if self.class_aggregation == "uniform_average":
            r2 = float(raw.mean())
        elif self.class_aggregation == "variance_weighted_average":
            r2 = float(np.sum(raw * total / np.sum(total))) if np.sum(total) else 0.0
        else:
            r2 = raw
        if self.num_regressors:
            n, p = self.num_samples, self.num_regressors
            if p >= n - 1:
                warnings.warn("More independent predictors than datapoints in adjusted R2 score (or division by "
                              "zero). Falling back to standard R2 score.", stacklevel=2)
            else:
                r2 = 1 - (1 - r2) * (n - 1) / (n - p - 1)
        return r2

    def get_config(self):
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}


class _Thresholded(KerasMetric):
    """Shared body of Precision/Recall: counts over every element (or column
    ``class_id``) of ``y_pred > threshold`` against boolean labels, one count per
    threshold (default 0.5); with ``top_k`` only each row's k highest predictions
    can be positive."""

    def __init__(self, thresholds: float | Sequence[float] | None = None, top_k: int | None = None,
                 class_id: int | None = None, name: str | None = None, dtype: Any = None) -> None:
        if thresholds is None:  # Keras: 0.5, or no threshold at all (-inf) with top_k
            t = [0.5 if top_k is None else -np.inf]
        else:
            t = [float(thresholds)] if np.isscalar(thresholds) else [float(v) for v in thresholds]
            if any(not 0.0 <= v <= 1.0 for v in t):
                raise ValueError(f"Threshold values must be in [0, 1]. Received: {thresholds}")
        self.init_thresholds, self.thresholds = thresholds, np.array(t)
        self.top_k, self.class_id = top_k, class_id
        super().__init__(name, dtype)

    def needs_for(self, output_dim: int, sparse: bool) -> str | None:
        plain = self.init_thresholds in (None, 0.5) and self.top_k is None and self.class_id in (None, 0)
        return "confusion" if plain and output_dim == 1 and not sparse else "state"

    def reset_state(self) -> None:
        k = len(self.thresholds)
        self.true_positives, self.false_positives, self.false_negatives = np.zeros(k), np.zeros(k), np.zeros(k)

    def device_spec(self, output_dim, sparse, folded):
        if sparse or self.top_k is not None or (self.class_id is not None and not 0 <= self.class_id < output_dim):
            return None
        th = np.ascontiguousarray(np.sort(self.thresholds, kind="stable"), dtype=np.float64)
        return {"kind": "auc", "pre": _pre(folded), "k": 0 if self.class_id is None else 2 + self.class_id,
                "thresholds": th}

    def from_device(self, acc: np.ndarray, samples: int, output_dim: int) -> Any:
        order = np.argsort(self.thresholds, kind="stable")  # the kernel's thresholds are sorted
        tp, fp, _, fn = _counts_from_buckets(acc, len(self.thresholds), output_dim, False)
        for name, c in (("true_positives", tp), ("false_positives", fp), ("false_negatives", fn)):
            out = np.empty(len(order))
            out[order] = c[:, 0]
            setattr(self, name, out)
        return self.result()

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        yt, yp = _match_shape(_f64(y_true), _f64(y_pred))
        w = np.broadcast_to(_weights(sample_weight, len(yp))[:, None], yp.shape)
        if self.top_k is not None:  # keep each row's top k, the rest can never pass a threshold
            kth = -np.sort(-yp, axis=1)[:, min(self.top_k, yp.shape[1]) - 1:min(self.top_k, yp.shape[1])]
            yp = np.where(yp >= kth, yp, -np.inf)
        if self.class_id is not None:
            yt, yp, w = yt[:, self.class_id], yp[:, self.class_id], w[:, self.class_id]
        label = yt.reshape(-1).astype(bool)
        p, w = yp.reshape(-1), w.reshape(-1)
        above = p[None, :] > self.thresholds[:, None]
        self.true_positives += (above & label).astype(np.float64) @ w
        self.false_positives += (above & ~label).astype(np.float64) @ w
        self.false_negatives += (~above & label).astype(np.float64) @ w

    def _out(self, v: np.ndarray) -> Any:
        return float(v[0]) if np.isscalar(self.init_thresholds) or self.init_thresholds is None else v

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


def _counts_from_buckets(acc: np.ndarray, num_thresholds: int, cols: int,
                         per_output: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(TP, FP, TN, FN) per threshold (rows) and output (columns; one column when pooled)
    from the metric-object kernel's bucket sums: bucket b holds the elements above
    thresholds 0..b-1, so the count above threshold i sums buckets i+1.."""
    t1 = num_thresholds + 1
    if per_output:
        a = acc.reshape(cols, 2, t1)
        pos, neg = a[:, 0, :].T, a[:, 1, :].T
    else:
        pos, neg = acc[:t1, None], acc[t1:2 * t1, None]
    above = lambda h: np.cumsum(h[::-1], axis=0)[::-1][1:]  # noqa: E731
    below = lambda h: np.cumsum(h, axis=0)[:-1]  # noqa: E731
    return above(pos), above(neg), below(neg), below(pos)


def _div_no_nan(a: Any, b: Any) -> Any:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


class Precision(_Thresholded):
    """TP / (TP + FP) of ``y_pred > threshold`` (Keras' element-wise definition)."""

    def __init__(self, thresholds: Any = None, top_k: int | None = None, class_id: int | None = None,
                 name: str | None = "precision", dtype: Any = None) -> None:
        super().__init__(thresholds, top_k, class_id, name or "precision", dtype)

    def result(self) -> Any:
        return self._out(_div_no_nan(self.true_positives, self.true_positives + self.false_positives))

    def from_confusion(self, counts: np.ndarray, binary: bool) -> float:
        tp, fp = counts[1, 1], counts[0, 1]
        return float(tp / (tp + fp)) if tp + fp else 0.0


class Recall(_Thresholded):
    """TP / (TP + FN) of ``y_pred > threshold`` (Keras' element-wise definition)."""

    def __init__(self, thresholds: Any = None, top_k: int | None = None, class_id: int | None = None,
                 name: str | None = "recall", dtype: Any = None) -> None:
        super().__init__(thresholds, top_k, class_id, name or "recall", dtype)

    def result(self) -> Any:
        return self._out(_div_no_nan(self.true_positives, self.true_positives + self.false_negatives))

    def from_confusion(self, counts: np.ndarray, binary: bool) -> float:
        tp, fn = counts[1, 1], counts[1, 0]
        return float(tp / (tp + fn)) if tp + fn else 0.0


class AUC(KerasMetric):
    """Area under the ROC or PR curve, Keras' approximation: predictions counted
    against ``num_thresholds`` thresholds (evenly spaced in [0, 1] with -eps and
    1+eps at the ends, or ``thresholds``), then a Riemann sum ('interpolation':
    trapezoids for ROC, Davis & Goadrich's interpolation for PR; 'minoring',
    'majoring'). ``multi_label`` computes one AUC per output and averages them
    (``label_weights``); otherwise all outputs are pooled. ``from_logits`` applies
    a sigmoid first."""

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC", summation_method: str = "interpolation",
                 name: str | None = None, dtype: Any = None, thresholds: Sequence[float] | None = None,
                 multi_label: bool = False, num_labels: int | None = None, label_weights: Any = None,
                 from_logits: bool = False) -> None:
        if str(curve).upper() not in ("ROC", "PR"):
            raise ValueError(f'Invalid AUC curve value: "{curve}". Expected values are ["PR", "ROC"]')
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f'Invalid AUC summation method value: "{summation_method}". Expected values are '
                             '["interpolation", "majoring", "minoring"]')
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self.num_thresholds = len(inner) + 2
        else:
            if num_thresholds <= 1:
                raise ValueError("Argument `num_thresholds` must be an integer > 1. "
                                 f"Received: num_thresholds={num_thresholds}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        self._thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])
        self.curve, self.summation_method = str(curve).upper(), summation_method
        self.multi_label, self.num_labels = bool(multi_label), num_labels
        if num_labels and not multi_label:
            raise ValueError("`num_labels` is needed only when `multi_label` is True.")
        self.label_weights = None if label_weights is None else np.asarray(label_weights, dtype=np.float64)
        self.from_logits = bool(from_logits)
        self._init_thresholds = thresholds
        super().__init__(name or "auc", dtype)

    @property
    def thresholds(self) -> list[float]:
        return list(self._thresholds)

    def _per_output(self) -> bool:
        return self.multi_label or self.label_weights is not None

    def device_spec(self, output_dim, sparse, folded):
        if sparse:
            return None
        if self.from_logits and folded is not None:
            return None  # Keras would apply the sigmoid to the output activation's values
        if self.label_weights is not None and self.label_weights.shape != (output_dim,):
            return None  # update_state reports the mismatch
        pre = 1 if self.from_logits else _pre(folded)
        return {"kind": "auc", "pre": pre, "k": 1 if self._per_output() else 0,
                "thresholds": np.ascontiguousarray(self._thresholds, dtype=np.float64)}

    def from_device(self, acc: np.ndarray, samples: int, output_dim: int) -> Any:
        """The counts per threshold from the kernel's buckets: an element in bucket b is
        above thresholds 0..b-1 (``pred > threshold``)."""
        if samples:
            (self.true_positives, self.false_positives, self.true_negatives,
             self.false_negatives) = _counts_from_buckets(acc, self.num_thresholds, output_dim, self._per_output())
            if not self.multi_label and self.label_weights is not None:  # one curve, outputs weighted
                lw = self.label_weights[None, :]
                (self.true_positives, self.false_positives, self.true_negatives, self.false_negatives) = (
                    (c * lw).sum(axis=1, keepdims=True) for c in (self.true_positives, self.false_positives,
                                                                  self.true_negatives, self.false_negatives))
        return self.result()

    def reset_state(self) -> None:
        self.true_positives = self.false_positives = self.true_negatives = self.false_negatives = None

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        yt, yp = _match_shape(_f64(y_true), _f64(y_pred))
        if self.from_logits:
            yp = 1.0 / (1.0 + np.exp(-yp))
        w = np.broadcast_to(_weights(sample_weight, len(yp))[:, None], yp.shape)
        if not self.multi_label:
            if self.label_weights is not None:
                w = w * self.label_weights[None, :]
            yt, yp, w = yt.reshape(-1, 1), yp.reshape(-1, 1), w.reshape(-1, 1)
        label = yt.astype(bool)
        # counts per threshold (rows) and label (columns): pred > threshold, Keras' rule
        above = yp[None, :, :] > self._thresholds[:, None, None]
        pos, neg = (label * w)[None], (~label * w)[None]
        tp, fp = (above * pos).sum(axis=1), (above * neg).sum(axis=1)
        fn, tn = (~above * pos).sum(axis=1), (~above * neg).sum(axis=1)
        if self.true_positives is None:
            self.true_positives, self.false_positives = tp, fp
            self.true_negatives, self.false_negatives = tn, fn
        else:
            self.true_positives = self.true_positives + tp
            self.false_positives = self.false_positives + fp
            self.true_negatives = self.true_negatives + tn
            self.false_negatives = self.false_negatives + fn

    def _by_label(self, per_label: np.ndarray) -> float:
        if not self.multi_label:
            return float(per_label.sum())
        if self.label_weights is None:
            return float(per_label.mean())
        return float(_div_no_nan(np.sum(per_label * self.label_weights), np.sum(self.label_weights)))

    def _interpolate_pr_auc(self) -> float:
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        prec_slope = _div_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - prec_slope * p[1:]
        safe_p_ratio = np.where((p[:-1] > 0) & (p[1:] > 0), _div_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0)
        inc = _div_no_nan(prec_slope * (dtp + intercept * np.log(safe_p_ratio)), np.maximum(tp[1:] + fn[1:], 0))
        return self._by_label(inc.sum(axis=0))

    def result(self) -> float:
        if self.true_positives is None:
            return 0.0
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr_auc()
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        recall = _div_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _div_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _div_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return self._by_label(((x[:-1] - x[1:]) * heights).sum(axis=0))

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method, "thresholds": self._init_thresholds,
                "multi_label": self.multi_label, "num_labels": self.num_labels,
                "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
                "from_logits": self.from_logits}


class FBetaScore(KerasMetric):
    """F-beta per class from precision and recall, Keras 3's FBetaScore: with
    ``threshold=None`` each row's highest prediction(s) are the positives, else
    ``y_pred > threshold``; ``average`` None (the per-class array), 'micro',
    'macro' or 'weighted' (by each class's true count)."""

    def __init__(self, average: str | None = None, beta: float = 1.0, threshold: float | None = None,
                 name: str = "fbeta_score", dtype: Any = None) -> None:
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError("Invalid `average` argument value. Expected one of: "
                             f"{{None, 'micro', 'macro', 'weighted'}}. Received: average={average}")
        if not beta > 0.0:
            raise ValueError(f"`beta` value should be greater than zero. Received: beta={beta}")
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ValueError(f"`threshold` should be between 0 and 1. Received: threshold={threshold}")
        self.average, self.beta, self.threshold = average, float(beta), threshold
        super().__init__(name, dtype)

    def reset_state(self) -> None:
        self.true_positives = self.false_positives = self.false_negatives = self.intermediate_weights = None

    def device_spec(self, output_dim, sparse, folded):
        return None if sparse else {"kind": "fbeta", "pre": _pre(folded), "threshold": self.threshold}

    def from_device(self, acc: np.ndarray, samples: int, output_dim: int) -> Any:
        d = output_dim
        if samples:
            parts = [acc[i * d:(i + 1) * d].copy() for i in range(4)]
            if self.average == "micro":  # Keras sums over every axis
                parts = [np.float64(p.sum()) for p in parts]
            self.true_positives, self.false_positives, self.false_negatives, self.intermediate_weights = parts
        return self.result()

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        yt, yp = _match_shape(_f64(y_true), _f64(y_pred))
        if self.threshold is None:
            pred = ((yp >= yp.max(axis=-1, keepdims=True)) & (np.abs(yp) > 1e-9)).astype(np.float64)
        else:
            pred = (yp > self.threshold).astype(np.float64)
        w = _weights(sample_weight, len(yp))[:, None] if sample_weight is not None else np.ones((len(yp), 1))
        axis = None if self.average == "micro" else 0
        tp = (pred * yt * w).sum(axis=axis)
        fp = (pred * (1 - yt) * w).sum(axis=axis)
        fn = ((1 - pred) * yt * w).sum(axis=axis)
        iw = (yt * w).sum(axis=axis)
        if self.true_positives is None:
            self.true_positives, self.false_positives, self.false_negatives, self.intermediate_weights = tp, fp, fn, iw
        else:
            self.true_positives = self.true_positives + tp
            self.false_positives = self.false_positives + fp
            self.false_negatives = self.false_negatives + fn
            self.intermediate_weights = self.intermediate_weights + iw

    def result(self) -> Any:
        if self.true_positives is None:
            return 0.0
        precision = _div_no_nan(self.true_positives, self.true_positives + self.false_positives)
        recall = _div_no_nan(self.true_positives, self.true_positives + self.false_negatives)
        b2 = self.beta ** 2
        f = _div_no_nan((1 + b2) * precision * recall, b2 * precision + recall)
        if self.average == "weighted":
            weights = _div_no_nan(self.intermediate_weights, np.sum(self.intermediate_weights))
            return float(np.sum(f * weights))
        if self.average is not None:  # micro (already pooled) or macro
            return float(np.mean(f))
        return f

    def get_config(self):
        return {**super().get_config(), "average": self.average, "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """F1 per class (Keras 3's F1Score: FBetaScore with beta=1)."""

    def __init__(self, average: str | None = None, threshold: float | None = None, name: str = "f1_score",
                 dtype: Any = None) -> None:
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self):
        cfg = super().get_config()
        del cfg["beta"]
        return cfg


def _snake(name: str) -> str:
    import re
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


#: the metric classes by Keras name: the class name, its snake_case and Keras' short aliases
BY_NAME: dict[str, type[KerasMetric]] = {}
for _cls in (Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
             SparseTopKCategoricalAccuracy, Precision, Recall, AUC, F1Score, FBetaScore, MeanSquaredError, RootMeanSquaredError,
             MeanAbsoluteError, MeanAbsolutePercentageError, R2Score):
    BY_NAME[_cls.__name__] = BY_NAME[_snake(_cls.__name__)] = _cls
BY_NAME.update({"auc": AUC, "mape": MeanAbsolutePercentageError, "r2_score": R2Score, "f1_score": F1Score,
                "top_k_categorical_accuracy": TopKCategoricalAccuracy,
                "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy})
