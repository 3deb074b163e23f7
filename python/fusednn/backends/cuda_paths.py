"""Which of the CUDA fused trainer's three paths a model trains on, decided on the host.

``_cuda.MlpTrainer`` runs a range of steps in one of three modes:

- ``"ops"`` (the default): one kernel per operation, ~20 launches per step;
- ``"graph"`` (opt-in, ``FUSEDNN_CUDA_GRAPH=1``): the same kernels captured once per
  step range into a CUDA graph and replayed every epoch;
- ``"persistent"`` (opt-in, ``FUSEDNN_CUDA_PERSISTENT=1``): one thread block runs the
  whole range with parameters, optimizer state and batch activations in shared
  memory, for models whose plan fits the device (``_cuda.persistent_plan``; the rule
  is in ``csrc/include/fusednn/persistent_plan.h``).

The graph and persistent paths stay opt-in until a GPU run of
``benchmarks/gpu_check.sh`` has checked them on a device. This module holds only the
decision (pure Python over the plan function and the device's shared-memory limit),
so it is tested on the CPU.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .optim_codes import KINDS, MOMENTUM, NESTEROV

MODES = ("ops", "graph", "persistent")
#: the activation codes both opt-in paths implement: linear, relu, sigmoid, tanh
_EXACT_ACTS = (0, 1, 2, 3)
_EXACT_LOSSES = ("mse", "binary", "categorical", "sparse")


def why_not_exact(layers: Sequence[Mapping[str, Any]], optimizer: Mapping[str, Any], loss: str) -> str:
    """Why neither opt-in path can run this model exactly ('' when both can): they do
    SGD (momentum, Nesterov) and plain Adam without clipping, weight decay, amsgrad or
    EMA (``Optimizer.kernel_spec()``: ``{"kind", "flags"}``), the losses mse and the
    cross-entropies on logits, and the activations linear, relu, sigmoid and tanh.
    A run with a step hook or data-parallel shards falls back to the per-op kernels
    in the binding."""
    kind, flags = int(optimizer["kind"]), int(optimizer.get("flags", 0))
    if not ((kind == KINDS["sgd"] and not flags & ~(MOMENTUM | NESTEROV)) or (kind == KINDS["adam"] and not flags)):
        return "only SGD (momentum, nesterov) and Adam without clipping, weight decay, amsgrad or EMA"
    if loss not in _EXACT_LOSSES:
        return f"only the losses mse and the cross-entropies, not {loss!r}"
    if any(int(spec.get("act", 0)) not in _EXACT_ACTS for spec in layers):
        return "only the activations linear, relu, sigmoid and tanh"
    if any(spec.get("frozen") for spec in layers):
        return "only trainable Dense layers (a frozen layer, trainable=False, runs on the per-op kernels)"
    if any(spec.get("post") for spec in layers):
        return "only Dense layers (no Dropout, BatchNormalization or activation steps)"
    if any(spec.get("src") is not None for spec in layers):
        return "only Sequential chains (no layer graphs with merges)"
    if any(spec.get("W_constraint") is not None or spec.get("b_constraint") is not None for spec in layers):
        return "no weight constraints"
    return ""


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def plan_inputs(layers: Sequence[Mapping[str, Any]], optimizer: Mapping[str, Any], loss: str,
                batch: int) -> dict[str, Any]:
    """The arguments of ``_cuda.persistent_plan`` for the trainer's layer specs (the dicts
    ``fused.FusedTrainer`` builds: ``W`` of shape (in, out), ``b`` or None), optimizer
    config, loss kind and batch size."""
    dims = [int(layers[0]["W"].shape[0])] + [int(spec["W"].shape[1]) for spec in layers]
    bias = [spec.get("b") is not None for spec in layers]
    if int(optimizer["kind"]) == KINDS["adam"]:
        states = 2
    else:
        states = 1 if int(optimizer.get("flags", 0)) & MOMENTUM else 0
    y_cols = 1 if loss == "sparse" else dims[-1]
    return {"dims": dims, "bias": bias, "states": states, "batch": int(batch), "y_cols": y_cols}


def choose_mode(layers: Sequence[Mapping[str, Any]], optimizer: Mapping[str, Any], loss: str, batch: int,
                why_not: Callable[..., str], smem_limit: int,
                env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(mode, reason) for a fused trainer: ``ops`` when a path is requested but
    ``why_not_exact`` declines the model; ``persistent`` when FUSEDNN_CUDA_PERSISTENT is set,
    no layer has a weight regularizer and the plan fits ``smem_limit`` bytes (``why_not(**plan_inputs, smem_limit=...)`` returns
    '' when it does), else ``graph`` when FUSEDNN_CUDA_GRAPH is set, else ``ops``. The reason
    says why a requested path was not taken ('' when nothing requested was refused)."""
    env = os.environ if env is None else env
    reason = ""
    if _flag(env, "FUSEDNN_CUDA_PERSISTENT") or _flag(env, "FUSEDNN_CUDA_GRAPH"):
        exact = why_not_exact(layers, optimizer, loss)
        if exact:
            return "ops", f"graph/persistent trainer not used: {exact}"
    if _flag(env, "FUSEDNN_CUDA_PERSISTENT"):
        regularized = any(float(spec.get(k) or 0.0) != 0.0 for spec in layers
                          for k in ("W_l1", "W_l2", "b_l1", "b_l2"))
        why = ("the persistent kernel has no weight regularizers" if regularized else
               why_not(**plan_inputs(layers, optimizer, loss, batch), smem_limit=int(smem_limit)))
        if not why:
            return "persistent", ""
        reason = f"persistent trainer not used: {why}"
    if _flag(env, "FUSEDNN_CUDA_GRAPH"):
        return "graph", reason
    return "ops", reason
