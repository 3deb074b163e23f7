"""Metrics: ``functional`` holds scikit-learn's functions (``accuracy_score``,
``f1_score``, ``r2_score``, ...) on host arrays; ``compiled`` holds the Keras metric
objects that ``compile(metrics=[...])`` takes (found by name with :func:`get`).
Both are exported here, so ``fusednn.metrics.f1_score`` and
``fusednn.metrics.Precision`` work as before the split."""
from . import compiled, functional
from .compiled import Accuracy, F1Score, MeanAbsoluteError, MeanSquaredError, Metric, Precision, Recall
from .keras_objects import BY_NAME as _KERAS_NAMES
from .functional import (UndefinedMetricWarning, accuracy_score, confusion_matrix, f1_score, fbeta_score,
                         mean_absolute_error, mean_squared_error, precision_recall_fscore_support, precision_score,
                         r2_score, recall_score)

__all__ = [*functional.__all__, *compiled.__all__]


def get(identifier):  # noqa: ANN001, ANN201 (the signature of compiled.get)
    """The metric for a name, as :func:`compiled.get` finds it ('accuracy'/'acc',
    'precision', 'recall', 'f1', 'mae', 'mse', instances, callables), else a Keras 3
    metric class by its name ('AUC', 'auc', 'mape', 'RootMeanSquaredError',
    'r2_score', ...: :data:`keras_objects.BY_NAME`), reported under the name as given.
    Unknown names raise ValueError listing every valid one."""
    try:
        return compiled.get(identifier)
    except ValueError:
        if isinstance(identifier, str) and identifier in _KERAS_NAMES:
            return _KERAS_NAMES[identifier](name=identifier)
        if isinstance(identifier, str):
            valid = sorted({*compiled.names(), *_KERAS_NAMES})
            raise ValueError(f"unknown metric {identifier!r}; valid names: {', '.join(valid)}") from None
        raise
