"""Float64 NumPy reference of the metric-object kernels (``fusednn/metric_math.h``).

``metric_update(spec, acc, pred, target, weights)`` adds a batch to a metric's
float64 accumulators exactly as the C++/CUDA kernels do (the layouts are
described in ``metric_math.h`` and in :data:`KINDS`); ``weighted_loss_fn`` is
Keras' weighted 'sum_over_batch_size' value of a ``LOSS_FNS`` loss. The numpy
backend runs these; the tests hold the native kernels to them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import ROW_LOSS_FNS
from . import numpy_ext as _ext

#: metric kind -> code (fusednn::MetricKind)
KINDS = {"confusion": 0, "error_sums": 1, "auc": 2, "top_k": 3, "fbeta": 4, "r2": 5, "mape": 6, "equal": 7}
#: what the metric applies to the model's outputs first (fusednn::MetricPre)
PRES = {None: 0, "none": 0, "sigmoid": 1, "softmax": 2}
_NAMES = {v: k for k, v in KINDS.items()}
EPS = 1e-7


def acc_size(kind: str, cols: int, k: int = 0, num_thresholds: int = 0) -> int:
    """How many float64 accumulators ``kind`` needs for ``cols`` outputs."""
    if kind == "confusion":
        return k * k
    if kind == "error_sums":
        return 3
    if kind == "auc":  # k: 0 pooled, 1 per output, 2 + c output c only
        return 2 * (num_thresholds + 1) * (cols if k == 1 else 1)
    if kind in ("fbeta", "r2"):
        return 4 * cols
    return 2


def _pre(z: np.ndarray, pre: int) -> np.ndarray:
    z = z.astype(np.float64)
    if pre == 1:
        return 1.0 / (1.0 + np.exp(-z))
    if pre == 2:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e * (1.0 / e.sum(axis=1, keepdims=True))
    return z


def _labels(t: np.ndarray, classes: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        ok = (t > -1) & (t < classes)
    return np.where(ok, np.trunc(np.where(ok, t, 0)), -1).astype(np.int64)


def metric_update(spec: dict[str, Any], acc: np.ndarray, pred: np.ndarray, target: np.ndarray,
                  weights: np.ndarray | None = None) -> None:
    """Add the batch (``pred`` rows x cols float32, ``target`` rows x cols, or rows x 1 class
    indices for a sparse spec) to ``acc`` in place, each row weighted by ``weights`` (or 1)."""
    kind = _NAMES[int(spec["kind"])]
    pre = int(spec.get("pre", 0))
    rows, cols = pred.shape
    w = np.ones(rows) if weights is None else np.asarray(weights, dtype=np.float64).reshape(rows)
    t = np.asarray(target).reshape(rows, -1)
    if kind == "confusion":
        classes = int(spec["k"])
        thr = spec.get("threshold")
        thr = 0.5 if thr is None else float(np.float32(thr))
        p = (pred[:, 0] > np.float32(thr)).astype(np.int64) if cols == 1 else pred.argmax(axis=1)
        if spec.get("sparse"):
            truth = _labels(t[:, 0], classes)
        elif cols == 1:
            truth = (t[:, 0] > 0.5).astype(np.int64)
        else:
            truth = t.argmax(axis=1)
        ok = (truth >= 0) & (truth < classes)
        np.add.at(acc.reshape(classes, classes), (truth[ok], p[ok]), w[ok])
        return
    if kind == "top_k":
        target_idx = _labels(t[:, 0], cols) if spec.get("sparse") else t.argmax(axis=1)
        valid = target_idx >= 0
        score = pred[np.arange(rows), np.where(valid, target_idx, 0)]
        hit = valid & ((pred > score[:, None]).sum(axis=1) < int(spec["k"]))
        acc[0] += float(np.dot(w, hit))
        acc[1] += float(w.sum())
        return
    v = _pre(pred, pre)
    t64 = t.astype(np.float64)
    if kind == "error_sums":
        d = v - t64
        acc[0] += float(np.dot(w, np.abs(d).sum(axis=1)))
        acc[1] += float(np.dot(w, (d * d).sum(axis=1)))
        acc[2] += float(w.sum() * cols)
    elif kind == "auc":
        th = np.asarray(spec["thresholds"], dtype=np.float64)
        t1 = len(th) + 1
        k = int(spec.get("k", 0))
        if k >= 2:  # one output only
            v, t, cols = v[:, k - 2:k - 1], t[:, k - 2:k - 1], 1
        for c in range(cols) if k == 1 else [None]:
            vc, tc = (v, t) if c is None else (v[:, c:c + 1], t[:, c:c + 1])
            b = np.searchsorted(th, vc.reshape(-1), side="left")  # #{thresholds < p}; NaN: below none
            b = np.where(np.isnan(vc.reshape(-1)), 0, b)
            ww = np.repeat(w, vc.shape[1])
            pos = (tc.reshape(-1) != 0)
            a = acc[c * 2 * t1:(c + 1) * 2 * t1] if c is not None else acc
            a[:t1] += np.bincount(b[pos], weights=ww[pos], minlength=t1)
            a[t1:] += np.bincount(b[~pos], weights=ww[~pos], minlength=t1)
    elif kind == "fbeta":
        thr = spec.get("threshold")
        if thr is None or np.isnan(thr):
            pos = ((v >= v.max(axis=1, keepdims=True)) & (np.abs(v) > 1e-9)).astype(np.float64)
        else:
            pos = (v > float(np.float32(thr))).astype(np.float64)
        wc = w[:, None]
        acc[:cols] += (wc * pos * t64).sum(axis=0)
        acc[cols:2 * cols] += (wc * pos * (1 - t64)).sum(axis=0)
        acc[2 * cols:3 * cols] += (wc * (1 - pos) * t64).sum(axis=0)
        acc[3 * cols:] += (wc * t64).sum(axis=0)
    elif kind == "r2":
        wc = w[:, None]
        acc[:cols] += (wc * t64).sum(axis=0)
        acc[cols:2 * cols] += (wc * t64 * t64).sum(axis=0)
        acc[2 * cols:3 * cols] += (wc * (t64 - v) ** 2).sum(axis=0)
        acc[3 * cols:] += w.sum()
    elif kind == "mape":
        acc[0] += float(np.dot(w, (100.0 * np.abs(t64 - v) / np.maximum(np.abs(t64), EPS)).mean(axis=1)))
        acc[1] += float(w.sum())
    else:  # equal
        acc[0] += float(np.dot(w, (t64 == v).mean(axis=1)))
        acc[1] += float(w.sum())


def weighted_loss_fn(fn: str, pred: np.ndarray, target: np.ndarray, weights: np.ndarray,
                     param: float | tuple[float, float, float, int] = 0.0) -> float:
    """``sum_i w_i * l_i / rows`` of the LOSS_FNS loss ``fn`` in float64: l_i is row i's loss
    (the mean of its elements, or the row kinds' value); the hinge losses' {0, 1} labels
    are converted when all of the batch's are 0 or 1 (decided over the batch, as Keras)."""
    p, t = pred.astype(np.float64), target.astype(np.float64)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    rows = p.shape[0]
    if rows == 0:
        return 0.0
    if fn in ROW_LOSS_FNS:
        per_row = np.array([_ext.loss_and_grad64(fn, p[i:i + 1], t[i:i + 1], param)[0] for i in range(rows)])
    elif fn in ("hinge", "squared_hinge"):
        y = 2 * t - 1 if np.all((t == 0) | (t == 1)) else t
        m = np.maximum(1 - y * p, 0)
        per_row = (m if fn == "hinge" else m * m).mean(axis=1)
    else:
        per_row = np.array([_ext.loss_and_grad64(fn, p[i:i + 1], t[i:i + 1], param)[0] for i in range(rows)])
    return float(np.dot(w, per_row) / rows)
