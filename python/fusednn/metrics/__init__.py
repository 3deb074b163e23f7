"""Metrics: ``functional`` holds scikit-learn's functions (``accuracy_score``,
``f1_score``, ``r2_score``, ...) on host arrays; ``compiled`` holds the Keras metric
objects that ``compile(metrics=[...])`` takes (found by name with :func:`get`).
Both are exported here, so ``fusednn.metrics.f1_score`` and
``fusednn.metrics.Precision`` work as before the split."""
from . import compiled, functional
from .compiled import Accuracy, F1Score, MeanAbsoluteError, MeanSquaredError, Metric, Precision, Recall, get
from .functional import (UndefinedMetricWarning, accuracy_score, confusion_matrix, f1_score, fbeta_score,
                         mean_absolute_error, mean_squared_error, precision_recall_fscore_support, precision_score,
                         r2_score, recall_score)

__all__ = [*functional.__all__, *compiled.__all__]
