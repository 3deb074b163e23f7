"""State variables for metrics users write as Keras ``keras.metrics.Metric`` subclasses
(``__init__`` making variables with ``self.add_variable``, ``update_state``, ``result``,
optionally ``reset_state``). Inside ``fit``/``evaluate`` such a metric is updated once per
batch on host copies of the targets and outputs, like fusednn's own stateful metrics, so
a model with one trains on the per-op path (``model.fused_reason`` says so)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import autodiff as ad
from .. import initializers


def add_variable(metric: Any, shape: Any, initializer: Any, dtype: Any, name: str | None) -> ad.Variable:
    """A host :class:`~fusednn.autodiff.Variable` of ``shape`` (float32 unless ``dtype``),
    remembered with its initial value for :func:`reset_variables`."""
    shape = () if shape is None else tuple(int(s) for s in shape)
    dt = np.dtype(getattr(dtype, "name", dtype) or "float32")
    if isinstance(initializer, (str, dict, initializers.Initializer)):
        value = initializers.get(initializer)(shape)
    elif callable(initializer):
        value = initializer(shape, dtype=dt.name)
    else:
        value = np.full(shape, initializer)
    value = np.array(np.broadcast_to(np.asarray(ad.value_of(value), dtype=dt), shape))
    variables = metric.__dict__.setdefault("_metric_variables", [])
    var = ad.Variable(value, trainable=False, name=name or f"variable_{len(variables)}")
    variables.append((var, value.copy()))
    return var


def reset_variables(metric: Any) -> None:
    """Every variable of ``metric`` back to its initial value."""
    for var, initial in metric.__dict__.get("_metric_variables", []):
        var.assign(initial)
