"""The compiled metrics of a model, accumulated over the batches of an epoch.

Classification metrics come from a confusion matrix and regression metrics from
error sums, both kept on the model's device and updated by a kernel per batch
(inside the fused trainer on the cpu and cuda backends), so an epoch's metrics cost one
read-back. Other metrics (user callables) are called per batch on host copies
and averaged by batch size, as Keras averages them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..metrics.compiled import Metric
from ..metrics.keras_objects import metric_needs


class EpochMetrics:
    """Accumulators for ``metrics`` on backend ``be``, for a model with ``output_dim``
    outputs; ``logits`` says the outputs the model hands over are pre-activation,
    which moves the binary threshold from 0.5 to 0, and ``folded`` names the output
    activation ('sigmoid', 'softmax') the loss folded in, which value-based metrics
    get applied first, as Keras hands them the model's output."""

    def __init__(self, metrics: list[Metric], be: Backend, output_dim: int, sparse: bool, logits: bool,
                 folded: str | None = None) -> None:
        self.metrics, self.be = metrics, be
        self.classes = output_dim if output_dim > 1 else 2
        self.binary = output_dim == 1
        self.sparse = sparse
        self.threshold = 0.0 if logits else 0.5
        self.folded = folded
        self.needs = [metric_needs(m, output_dim, sparse) for m in metrics]
        needs = set(self.needs)
        xp = be.xp
        self.counts = xp.zeros((self.classes, self.classes), dtype=np.float64) if "confusion" in needs else None
        self.sums = xp.zeros(2, dtype=np.float64) if "errors" in needs else None
        self.custom = [m for m, k in zip(metrics, self.needs) if k is None]
        # Keras metric objects that keep their own state, updated per batch on the host
        self.stateful = [m for m, k in zip(metrics, self.needs) if k == "state"]
        self.reset()

    def reset(self) -> None:
        """Start a new epoch (or evaluation)."""
        if self.counts is not None:
            self.counts.fill(0)
        if self.sums is not None:
            self.sums.fill(0)
        self.values = 0  # how many output values the error sums cover
        self.samples = 0
        self.custom_sums = [0.0] * len(self.custom)
        self.custom_counts = [0] * len(self.custom)
        for m in self.stateful:
            m.reset_state()

    def update(self, pred: Any, target: Any) -> None:
        """Add one batch: ``pred`` the model's outputs (as handed to the loss), ``target``
        the batch's targets, both on the device."""
        n = pred.shape[0]
        if self.counts is not None:
            self.be.confusion_update(self.counts, pred, target, self.classes, self.sparse, self.threshold)
        if self.folded is not None and (self.sums is not None or self.custom or self.stateful):
            out = self.be.empty(pred.shape)
            if self.folded == "softmax":
                pred = self.be.softmax(pred, out)
            else:
                pred = self.be.act_forward(pred, out, self.folded)
        if self.sums is not None:
            self.be.error_sums_update(self.sums, pred, target)
            self.values += int(pred.size)
        if self.custom or self.stateful:
            p, t = self.be.to_numpy(pred), self.be.to_numpy(target)
            for i, m in enumerate(self.custom):
                if hasattr(m, "sum_and_count"):  # a metric function: Keras' mean over all its values
                    total, count = m.sum_and_count(t, p)
                else:
                    total, count = float(m(t, p)) * n, n
                self.custom_sums[i] += total
                self.custom_counts[i] += count
            for m in self.stateful:
                m.update_state(t, p)
        self.samples += n

    def add_counted(self, samples: int, values: int) -> None:
        """Account for batches whose accumulators a fused trainer updated itself."""
        self.samples += samples
        self.values += values

    def result(self) -> dict[str, float]:
        """Each metric's value over what was added since :meth:`reset`, by name."""
        counts = np.asarray(self.be.to_numpy(self.counts)) if self.counts is not None else None
        sums = np.asarray(self.be.to_numpy(self.sums)) if self.sums is not None else None
        out, custom = {}, iter(zip(self.custom_sums, self.custom_counts))
        for m, needs in zip(self.metrics, self.needs):
            if needs == "state":
                out[m.name] = _host_result(m.result())
            elif needs == "confusion":
                out[m.name] = m.from_confusion(counts, self.binary)
            elif needs == "errors":
                out[m.name] = m.from_error_sums(sums, self.values)
            else:
                total, count = next(custom)
                out[m.name] = total / count if count else 0.0
        return out


def _host_result(value: Any) -> Any:
    """A metric's result as a float (or a host array for per-class results): a user
    metric's ``result()`` may return a keras.ops tensor or variable."""
    from ..autodiff import Tensor

    if isinstance(value, Tensor):
        value = value.numpy()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return float(value)
    return value
