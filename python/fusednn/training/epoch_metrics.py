"""The compiled metrics of a model, accumulated over the batches of an epoch.

Classification metrics come from a confusion matrix and regression metrics from
error sums, both kept on the model's device and updated by a kernel per batch
(inside the fused trainer on the cpu and cuda backends), so an epoch's metrics cost one
read-back. Keras metric objects with a kernel of their own (AUC, top-k, F-beta,
R², MAPE, exact accuracy: :meth:`KerasMetric.device_spec`) keep float64
accumulators on the device too, updated by the metric-object kernel
(``fusednn/metric_math.h``) in the fused trainer and on the per-op path alike.
Sample weights weigh every such accumulator (weighted confusion counts, weighted
sums), as Keras weighs its metrics. Other metrics (user callables) are called per
batch on host copies and averaged by batch size, as Keras averages them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..backends.metric_kernels import KINDS, PRES, acc_size
from ..metrics.compiled import Metric
from ..metrics.keras_objects import metric_needs


def _kernel_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A metric's spec with the kind and pre-activation as the kernel's codes."""
    out = dict(spec)
    out["kind"] = KINDS[spec["kind"]] if isinstance(spec["kind"], str) else int(spec["kind"])
    out["pre"] = int(spec.get("pre", 0)) if not isinstance(spec.get("pre"), str) else PRES[spec["pre"]]
    out.setdefault("k", 0)
    out.setdefault("threshold", None)
    out.setdefault("thresholds", None)
    out.setdefault("sparse", False)
    return out


class EpochMetrics:
    """Accumulators for ``metrics`` on backend ``be``, for a model with ``output_dim``
    outputs; ``logits`` says the outputs the model hands over are pre-activation,
    which moves the binary threshold from 0.5 to 0, and ``folded`` names the output
    activation ('sigmoid', 'softmax') the loss folded in, which value-based metrics
    get applied first, as Keras hands them the model's output."""

    def __init__(self, metrics: list[Metric], be: Backend, output_dim: int, sparse: bool, logits: bool,
                 folded: str | None = None) -> None:
        self.metrics, self.be = metrics, be
        self.output_dim = output_dim
        self.classes = output_dim if output_dim > 1 else 2
        self.binary = output_dim == 1
        self.sparse = sparse
        self.threshold = 0.0 if logits else 0.5
        self.folded = folded
        self.needs = [metric_needs(m, output_dim, sparse, folded) for m in metrics]
        needs = set(self.needs)
        xp = be.xp
        self.counts = xp.zeros((self.classes, self.classes), dtype=np.float64) if "confusion" in needs else None
        # the plain error sums (|d|, d^2) of unweighted batches of an unfolded output
        self.sums = xp.zeros(2, dtype=np.float64) if "errors" in needs and folded is None else None
        # The metric-object kernel's specs and accumulators: the confusion counts of weighted
        # batches, the error sums of weighted batches (or of a folded output), and the metric
        # objects with a kernel of their own.
        self.conf_spec = self._spec({"kind": "confusion", "k": self.classes, "sparse": sparse,
                                     "threshold": self.threshold}) if "confusion" in needs else None
        pre = PRES[folded]
        self.err_spec = self._spec({"kind": "error_sums", "pre": pre}) if "errors" in needs else None
        self.device = [(m, self._spec(m.device_spec(output_dim, sparse, folded)))
                       for m, k in zip(metrics, self.needs) if k == "device"]
        self.custom = [m for m, k in zip(metrics, self.needs) if k is None]
        # Keras metric objects that keep their own state, updated per batch on the host
        self.stateful = [m for m, k in zip(metrics, self.needs) if k == "state"]
        self.reset()

    def _spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` in the kernel's codes with its zeroed accumulators as ``acc``."""
        s = _kernel_spec(spec)
        name = [k for k, v in KINDS.items() if v == s["kind"]][0]
        n_th = 0 if s["thresholds"] is None else len(s["thresholds"])
        s["acc"] = self.be.xp.zeros(acc_size(name, self.output_dim, int(s["k"]), n_th), dtype=np.float64)
        if s["thresholds"] is not None:
            s["thresholds"] = self.be.xp.asarray(np.ascontiguousarray(s["thresholds"], dtype=np.float64))
        return s

    def accumulators(self) -> list[Any]:
        """Every device accumulator array (to sum them over the ranks of a distribution)."""
        out = [a for a in (self.counts, self.sums) if a is not None]
        out += [s["acc"] for s in (self.conf_spec, self.err_spec) if s is not None]
        return out + [s["acc"] for _, s in self.device]

    def needs_kernels(self, weighted: bool) -> bool:
        """Whether a fused run (with or without sample weights) needs the metric-object kernel."""
        return "extra" in self.trainer_metrics(weighted)

    def reset(self) -> None:
        """Start a new epoch (or evaluation)."""
        for a in self.accumulators():
            a.fill(0)
        self.values = 0  # how many output values the plain error sums cover
        self.samples = 0
        self.custom_sums = [0.0] * len(self.custom)
        for m in self.stateful:
            m.reset_state()

    def trainer_metrics(self, weighted: bool) -> dict[str, Any]:
        """What the fused trainer's ``run`` takes as ``metrics`` for a run with or without
        sample weights (which weigh the metric-object kernel's accumulators)."""
        extra = [s for _, s in self.device]
        if weighted:
            extra += [s for s in (self.conf_spec, self.err_spec) if s is not None]
        elif self.sums is None and self.err_spec is not None:
            extra.append(self.err_spec)
        out = {"counts": None if weighted else self.counts, "classes": self.classes, "sparse": self.sparse,
               "threshold": self.threshold, "sums": None if weighted else self.sums}
        if extra:
            out["extra"] = extra
        return out

    def update(self, pred: Any, target: Any, weights: Any = None) -> None:
        """Add one batch: ``pred`` the model's outputs (as handed to the loss), ``target``
        the batch's targets, both on the device; ``weights`` (device, one per row) the
        batch's sample weights, or None."""
        n = pred.shape[0]
        be = self.be
        if self.counts is not None:
            if weights is None:
                be.confusion_update(self.counts, pred, target, self.classes, self.sparse, self.threshold)
            else:
                be.metric_update(self.conf_spec, self.conf_spec["acc"], pred, target, weights)
        if self.err_spec is not None:
            if weights is None and self.sums is not None:
                be.error_sums_update(self.sums, pred, target)
                self.values += int(pred.size)
            else:
                be.metric_update(self.err_spec, self.err_spec["acc"], pred, target, weights)
        for _, spec in self.device:
            be.metric_update(spec, spec["acc"], pred, target, weights)
        if self.custom or self.stateful:
            if self.folded is not None:
                out = be.empty(pred.shape)
                pred = be.softmax(pred, out) if self.folded == "softmax" else be.act_forward(pred, out, self.folded)
            p, t = be.to_numpy(pred), be.to_numpy(target)
            w = None if weights is None else be.to_numpy(weights)
            for i, m in enumerate(self.custom):
                self.custom_sums[i] += float(m(t, p)) * n
            for m in self.stateful:
                m.update_state(t, p, w)
        self.samples += n

    def add_counted(self, samples: int, values: int, weighted: bool = False) -> None:
        """Account for batches whose accumulators a fused trainer updated itself (``values``
        output values in the plain error sums, which a weighted run does not use)."""
        self.samples += samples
        if not weighted and self.sums is not None:
            self.values += values

    def result(self) -> dict[str, float]:
        """Each metric's value over what was added since :meth:`reset`, by name."""
        host = self.be.to_numpy
        counts = None
        if self.counts is not None:
            counts = np.asarray(host(self.counts)) + np.asarray(host(self.conf_spec["acc"])).reshape(self.counts.shape)
        sums, values = None, self.values
        if self.err_spec is not None:
            e = np.asarray(host(self.err_spec["acc"]))
            sums = e[:2] + (np.asarray(host(self.sums)) if self.sums is not None else 0.0)
            values = values + e[2]
        device = {id(m): np.asarray(host(s["acc"])) for m, s in self.device}
        out, custom = {}, iter(self.custom_sums)
        for m, needs in zip(self.metrics, self.needs):
            if needs == "state":
                out[m.name] = m.result()
            elif needs == "device":
                out[m.name] = m.from_device(device[id(m)], self.samples, self.output_dim)
            elif needs == "confusion":
                out[m.name] = m.from_confusion(counts, self.binary)
            elif needs == "errors":
                out[m.name] = m.from_error_sums(sums, values)
            else:
                out[m.name] = next(custom) / self.samples if self.samples else 0.0
        return out
