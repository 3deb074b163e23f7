"""Several outputs ("heads") in the fused trainer (``fusednn/heads.h``).

A functional model with several outputs compiles to one loss over the outputs packed
side by side (the model's ``OutputLosses``: a loss and a weight per output, each
output's targets in its own columns). The fused trainer runs such a model as graph
blocks whose output blocks are heads: each head's loss value and gradient come from
the same kernel a one-output model's loss uses, its gradient is scaled by its weight,
and the step's loss is the weighted sum in float32 in output order, as the per-op
path computes it, so both paths give the same numbers. Each output's compiled metrics
accumulate in its head with the metric-object kernel (``metric_math.h``). This module
says whether a model's heads can run so (:func:`reason`) and describes them to the
trainer (:func:`specs`); the per-output losses each step reports go to the model's
epoch tracker (``<output>_loss`` in the history).
"""
from __future__ import annotations

from typing import Any

from .. import losses
from ..metrics.keras_objects import metric_needs


def is_multi(model: Any) -> bool:
    """Whether ``model`` is compiled with one loss per output (several outputs)."""
    return bool(getattr(model.loss, "multi_output", False))


def _fused_loss(loss: Any) -> bool:
    return type(loss) in (losses.MeanSquaredError, losses.BinaryCrossentropy, losses.CategoricalCrossentropy,
                          losses.SparseCategoricalCrossentropy) or getattr(loss, "fn", None) is not None


def kind_of(loss: Any) -> str:
    """The trainer's name for ``loss`` (fusednn/trainer.h's LossKind)."""
    if type(loss) is losses.MeanSquaredError:
        return "mse"
    fn = getattr(loss, "fn", None)  # the LossFunction losses
    return fn if fn is not None else loss.kind


def reason(model: Any, plan: Any) -> str | None:
    """Why the fused trainer cannot run this multi-output model's heads (its layer
    graph already planned as ``plan``, a ``GraphPlan``), or None."""
    if not getattr(model.backend, "trainer_heads", False):
        return f"the {model.backend.name} fused trainer does not run a model with several outputs yet"
    out = model.loss
    names = model.output_names
    acts = model.output_activations
    objects = getattr(model.backend, "trainer_metric_objects", False)
    for name, loss, act, folds, pc, ms in zip(names, out.losses, acts, out.folds_at, out.pred_cols,
                                              model.output_metrics):
        for m in ms:  # each output's metrics: the metric-object kernel's, in the heads
            need = metric_needs(m, pc, loss.sparse, act if folds else None)
            if need is None or need == "state":
                return (f"metric {m.name!r} of output {name!r} accumulates per batch on the host: metrics on a "
                        "multi-output model run per-op unless the metric-object kernel computes them")
            if not objects:
                return f"metrics on a multi-output model run per-op on {model.backend.name}"
        if not _fused_loss(loss):
            return getattr(loss, "not_fused_reason", None) or \
                f"loss {type(loss).__name__} of output {name!r} is not fused"
        if getattr(loss, "label_smoothing", 0):
            return f"label smoothing in the loss of output {name!r} is not fused on a multi-output model"
        if loss.folds is not None and not loss.on_logits(act if folds else "linear"):
            return (f"output {name!r}: a cross-entropy on probabilities (no sigmoid/softmax output that only the "
                    "loss reads) is not fused")
        if act == "softmax" and not folds:
            return f"output {name!r}: a softmax output not folded into a cross-entropy is not fused"
    heads = set(plan.head_layers)
    for i, layer in enumerate(model.layers):
        act = getattr(layer, "activation", None)
        if act == "log_softmax" and not getattr(model.backend, "trainer_log_softmax", False):
            return f"a log_softmax activation is not fused by the {model.backend.name} trainer (row-wise)"
        if act == "softmax" and i not in heads and type(layer).__name__ != "Activation":
            return "a softmax hidden layer is not fused"
    return None


def folded_layers(model: Any) -> set[int]:
    """Indices in ``model.layers`` of the outputs whose activation their loss folds in
    (the trainer runs them linear and hands the loss their logits)."""
    return {i for i, f in zip(model.graph_outputs, model.loss.folds_at) if f}


def specs(model: Any, plan: Any, be: Any, batch: int) -> list[dict[str, Any]]:
    """The trainer's heads (``MlpTrainer(heads=...)``), in output order: each output's
    block, loss kind and constants, weight, target columns and a target buffer."""
    out = model.loss
    heads = []
    for i, loss, w, tc, folds, act in zip(model.graph_outputs, out.losses, out.loss_weights, out.target_cols,
                                          out.folds_at, model.output_activations):
        param: Any = 0.0
        if isinstance(loss, losses.LossFunction):  # Huber's delta, the focal losses' constants
            param = loss.kernel_param_on(loss.on_logits(act if folds else "linear"))
        heads.append({"block": plan.block_of[i], "loss": kind_of(loss), "param": param, "weight": float(w),
                      "y_cols": int(tc), "Y": be.empty((batch, int(tc)))})
    return heads


def step_rows(first: int, done: int, batch: int, n: int) -> list[int]:
    """The rows of steps ``first .. first + done - 1`` of an epoch of ``n`` rows (the
    last step may be short)."""
    return [min(batch, n - k * batch) for k in range(first, first + done)]
