"""The fused training path: whole runs of optimizer steps in compiled code.

For a Sequential model made only of Dense layers (linear, relu, sigmoid, tanh, or a
sigmoid/softmax output folded into its cross-entropy) trained with MSE or a
cross-entropy on logits and any of Keras' optimizers (with schedules, clipping,
weight decay and EMA), a backend that offers a fused trainer
(``Backend.make_trainer``) runs the epoch — batch gathering, forward, loss,
backward and updates — without returning to Python between steps. It works on
the model's own parameter, gradient and optimizer-state arrays, so
``get_weights`` sees every update and the per-op path can take over at any
time; it calls the same kernels in the same order as that path, so both give
the same numbers.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .. import losses, optimizers, regularizers
from ..backends import NEEDS_INPUT, activation_code
from ..distribution import state as distribution_state
from ..layers import (Activation, Add, Average, BatchNormalization, Concatenate, Dense, Dropout, Flatten, Identity,
                      InputLayer, LayerNormalization, Multiply, Normalization, PReLU, ReLU, Reshape, Subtract)
from ..layers.activation_layers import ELU, LeakyReLU, Softmax
from ..layers.regularization import GaussianDropout, GaussianNoise
from . import concurrency, heads as heads_module, inputs
from ..metrics.keras_objects import metric_needs
from .epoch_metrics import EpochMetrics


#: whether ``replicas_for`` (scikit-learn's estimators) may choose two replicas. On by
#: default since they run several epochs per native run and each replica's parameters
#: (split by hidden units, or the update halves of the rows split) stay in its own core's
#: cache: on the 2-core dev machine digits' step takes 44 us with two replicas against
#: 81 us with one (benchmarks/bench_sklearn.py --compare-replicas --threads 2 gives the
#: fit times). Where the second thread is not free, the trainer itself falls back to one
#: thread (ReplicaTiming, csrc/include/fusednn/cpu_replicas.h). Fits then differ from one
#: replica's by float32 rounding (another summation order).
REPLICAS_ENABLED = True

#: the fewest rows per replica of a full batch for which ``replicas_for`` splits each step
#: between two threads: below it the per-step hand-offs and the gradient exchange cost
#: about what the halved forward/backward saves (digits' 64-100-10 network on the 2-core
#: dev machine: batch 64 break-even, 100 1.5x, 200 1.7x per step)
REPLICA_MIN_ROWS = 40

#: the longest a native run of steps should take: Python sees a Ctrl-C (and runs its
#: signal handlers) only between runs, so an interrupt waits at most about this long
RUN_SECONDS = 0.05

_FUSED_LOSSES = (losses.MeanSquaredError, losses.BinaryCrossentropy, losses.CategoricalCrossentropy,
                 losses.SparseCategoricalCrossentropy)


#: layers that are the identity on the flat rows the trainer works on: left out of the program
_IDENTITY = (Flatten, Reshape, Identity, InputLayer)


def _program(model: Any) -> list[Any]:
    """The model's layers that compute something (the identity layers left out)."""
    return [layer for layer in model.layers if type(layer) not in _IDENTITY]


def _leading_norms(model: Any) -> list[Normalization]:
    """The Normalization layers the model starts with: applied to the data up front."""
    out = []
    for layer in _program(model):
        if type(layer) is not Normalization:
            break
        out.append(layer)
    return out


def _not_yet(be: Any, why: str) -> str:
    """``why`` (a capability the backend's fused trainer lacks), plus how to opt in where the
    backend has it behind a switch (cuda: FUSEDNN_CUDA_TRAINER_STEPS=1, not yet run on a device)."""
    hint = getattr(be, "trainer_opt_in", "")
    return f"{why}; {hint}" if hint else why


class _OptedInBackend:
    """The backend as it would be opted in: its ``trainer_opt_in_flags`` read as on."""

    def __init__(self, be: Any) -> None:
        self._be, self._on = be, frozenset(getattr(be, "trainer_opt_in_flags", ()))

    def __getattr__(self, key: str) -> Any:
        return True if key in self._on else getattr(self._be, key)


class _OptedIn:
    """The model with an opted-in backend (every other attribute its own)."""

    def __init__(self, model: Any) -> None:
        self._model, self.backend = model, _OptedInBackend(model.backend)

    def __getattr__(self, key: str) -> Any:
        return getattr(self._model, key)


def _opt_in_reason(model: Any, why: str | None, reason: Callable[..., str | None], *args: Any) -> str | None:
    """``why`` (what ``reason(model, *args)`` said), plus the backend's opt-in hint (``trainer_opt_in``;
    cuda: FUSEDNN_CUDA_TRAINER_STEPS=1) when its opt-in capabilities would change that answer."""
    if why is None or not getattr(model.backend, "trainer_opt_in", ""):
        return why
    return _not_yet(model.backend, why) if reason(_OptedIn(model), *args) != why else why


#: layers that run as steps after a Dense block in the fused trainer (fusednn/layer_steps.h)
_STEP_LAYERS = (Dropout, BatchNormalization, Activation, ReLU, Identity, PReLU, LayerNormalization, LeakyReLU, ELU,
                Softmax, GaussianNoise, GaussianDropout)
#: step layers only a backend with ``trainer_steps_more`` runs (fusednn/cpu_steps_more.h)
_MORE_STEPS = (LeakyReLU, ELU, Softmax, GaussianNoise, GaussianDropout)


def _step_regularizers(layer: Any) -> list[tuple[str, Any]]:
    """(name, regularizer) of a BatchNormalization/LayerNormalization/PReLU layer's
    regularized weights that exist, in the per-op path's order (gamma, beta; alpha)."""
    if type(layer) is PReLU:
        return [("alpha", layer.alpha_regularizer)] if layer.alpha_regularizer is not None else []
    out = []
    if layer.scale and layer.gamma_regularizer is not None:
        out.append(("gamma", layer.gamma_regularizer))
    if layer.center and layer.beta_regularizer is not None:
        out.append(("beta", layer.beta_regularizer))
    return out


def _step_constraints(layer: Any) -> list[tuple[str, Any]]:
    """(name, constraint) of a BatchNormalization/LayerNormalization/PReLU layer's
    constrained weights that exist."""
    if type(layer) is PReLU:
        return [("alpha", layer.alpha_constraint)] if layer.alpha_constraint is not None else []
    return [(name, con) for name, on, con in (("gamma", layer.scale, layer.gamma_constraint),
                                                ("beta", layer.center, layer.beta_constraint))
            if on and con is not None]


def _step_weights_reason(model: Any, layer: Any) -> str | None:
    """Why the regularizers/constraints of a normalisation or PReLU layer's weights cannot
    run in the fused trainer, or None (none, or all fusable on this backend)."""
    regs, cons = _step_regularizers(layer), _step_constraints(layer)
    if not regs and not cons:
        return None
    kind = type(layer).__name__
    if not getattr(model.backend, "trainer_step_penalties", False):
        what = "an alpha_regularizer/alpha_constraint" if kind == "PReLU" else \
            "a beta/gamma_regularizer or beta/gamma_constraint"
        return f"the {model.backend.name} fused trainer does not run {kind} {layer.name!r} with {what} yet"
    for name, reg in regs:
        if type(reg).__call__ is not regularizers.Regularizer.__call__:
            return f"{name}_regularizer {type(reg).__name__} of layer {layer.name!r} defines its own penalty: not fused"
    for name, con in cons:
        if con.kernel_spec(1, layer.name) is None:
            return f"{name}_constraint {type(con).__name__} of layer {layer.name!r} is a Python projection, not fused"
    return None


def _penalty_order_reason(model: Any, plan: "GraphPlan") -> str | None:
    """Why a layer graph's weight penalties cannot be added in the per-op path's order
    (model order) by the trainer (block order: each Dense, then its steps), or None."""
    blocks = [plan.block_of[i] for i, layer in enumerate(model.layers)
              if plan.block_of[i] is not None and (
                  (type(layer) is Dense and layer.regularized()) or
                  (type(layer) in (BatchNormalization, LayerNormalization, PReLU) and _step_regularizers(layer)))]
    if blocks != sorted(blocks):
        return ("the layer graph's regularized layers are not in block order (a Dense's steps after a later "
                "Dense), so the penalties would sum in another order than the per-op path's: not fused")
    return None


def _steps_reason(model: Any, layers: list[Any]) -> str | None:
    """Why the layers after the leading Normalizations cannot run as Dense blocks with
    layer steps, or None."""
    if not any(type(layer) is Dense for layer in layers):
        return "a model without a Dense layer (after any leading Normalization) is not fused"
    if type(layers[0]) is not Dense and not getattr(model.backend, "trainer_merges", False):
        # steps on the input run as an identity block, a graph block of fusednn/trainer.h
        return f"the {model.backend.name} fused trainer does not run layers before the first Dense yet"
    for layer in layers:
        if type(layer) is Dense:
            continue
        if type(layer) not in _STEP_LAYERS:
            return f"layer {layer.name!r} ({type(layer).__name__}) is not fused"
        if type(layer) is Activation and layer.activation == "log_softmax" and \
                not getattr(model.backend, "trainer_log_softmax", False):
            return (f"the {model.backend.name} fused trainer does not run a log_softmax Activation layer "
                    f"({layer.name!r}) yet")
        if type(layer) is Activation and layer.activation == "softmax" and \
                not getattr(model.backend, "trainer_steps_more", False):
            return f"a {layer.activation} Activation layer ({layer.name!r}) inside the model is not fused"
        if (type(layer) in _MORE_STEPS or (type(layer) is ReLU and not layer.plain)) and \
                not getattr(model.backend, "trainer_steps_more", False):
            what = "ReLU layers with max_value/negative_slope/threshold" if type(layer) is ReLU else \
                f"{type(layer).__name__} layers"
            return f"the {model.backend.name} fused trainer does not run {what} yet (layer {layer.name!r})"
        if type(layer) in (BatchNormalization, LayerNormalization, PReLU):
            why = _step_weights_reason(model, layer)
            if why is not None:
                return why
        if type(layer) is LayerNormalization:
            if not getattr(model.backend, "trainer_layernorm", False):
                return (f"the {model.backend.name} fused trainer does not run LayerNormalization layers yet "
                        f"(layer {layer.name!r})")
        if type(layer) is PReLU:
            if not getattr(model.backend, "trainer_prelu", False):
                return f"the {model.backend.name} fused trainer does not run PReLU layers yet (layer {layer.name!r})"
        if not getattr(model.backend, "trainer_steps", False):
            return (f"the {model.backend.name} fused trainer does not run {type(layer).__name__} layers yet "
                    f"(layer {layer.name!r})")
    return None


def _constraints_reason(model: Any, layers: list[Any]) -> str | None:
    """Why the Dense layers' kernel/bias constraints cannot run in the fused trainer, or None."""
    for layer in layers:
        for w, con in layer.constrained() if type(layer) is Dense else []:
            if not getattr(model.backend, "trainer_constraints", False):
                return _not_yet(model.backend, f"the {model.backend.name} fused trainer does not apply weight "
                                f"constraints yet (layer {layer.name!r})")
            if con.kernel_spec(w.ndim, layer.name) is None:
                return f"constraint {type(con).__name__} of layer {layer.name!r} is a Python projection, not fused"
    return None


#: the merge layers of a layer graph, by their code in fusednn/trainer.h (MergeKind; 0 is a Dense's one source)
MERGE_KINDS = {Concatenate: 1, Add: 2, Subtract: 3, Multiply: 4, Average: 5}


class GraphPlan:
    """How a functional model's layer graph runs as blocks of fusednn/trainer.h: a Dense
    block per Dense layer and a merge block per Concatenate/Add/Subtract/Multiply/Average
    (no weights: its output is the merged input), each followed by its step layers
    (Dropout, BatchNormalization, activations). ``block_of[i]`` is the block layer ``i``
    belongs to (None for an InputLayer), ``inputs[b]`` / ``merge[b]`` where block ``b``
    takes its input from (block indices, ``-1 - j`` model input ``j``; 0 one source, else
    :data:`MERGE_KINDS`). Several model inputs are packed side by side in the batch:
    ``input_cols[j]`` is input ``j``'s ``[column, width]`` there. ``reason`` says why the
    graph cannot run so (then the rest is incomplete)."""

    def __init__(self, model: Any) -> None:
        self.block_of: list[int | None] = []
        self.inputs: list[list[int]] = []
        self.merge: list[int] = []
        #: several outputs: the indices in model.layers of the output (head) Dense layers
        self.head_layers: list[int] = []
        self.input_cols: list[list[int]] = []
        at = 0
        for t in model.inputs or []:
            self.input_cols.append([at, int(t.features)])
            at += int(t.features)
        self.x_cols = at
        self.reason = self._plan(model)

    def src_cols(self, b: int) -> list[list[int] | None]:
        """Block ``b``'s sources as fusednn/trainer.h's ``src_cols``: a model input's
        ``[column, width]`` in the batch, None for a block."""
        return [self.input_cols[-1 - k] if k < 0 else None for k in self.inputs[b]]

    def _plan(self, model: Any) -> str | None:
        layers = model.layers
        be = model.backend
        # a functional model's InputLayers are the identity: reading one reads its model input
        inputs = {i: ins[0] for i, (layer, ins) in enumerate(zip(layers, model.graph_inbound))
                  if type(layer) is InputLayer}
        inbound = [[inputs.get(k, k) for k in ins] for ins in model.graph_inbound]
        owner: dict[int, int] = {}  # layer -> its block
        last: dict[int, int] = {}   # block -> the layer whose output is the block's output
        refs: list[tuple[int, str]] = []  # (layer whose output is read, by whom)
        heads: list[int] = []  # block -> its Dense or merge layer (or the step starting an identity block)
        readers: dict[int, int] = {}  # layer -> how many layers read its output
        for ins in inbound:
            for k in ins:
                readers[k] = readers.get(k, 0) + 1
        for i, (layer, ins) in enumerate(zip(layers, inbound)):
            kind = type(layer)
            if kind is InputLayer:
                self.block_of.append(None)
                continue
            if kind is Dense or kind in MERGE_KINDS:
                for k in ins:
                    if k >= 0 and k not in owner:
                        return (f"{layer.name!r} takes {layers[k].name!r} ({type(layers[k]).__name__}), which is not "
                                "fused")
                    if k >= 0:
                        refs.append((k, layer.name))
                self.inputs.append([k if k < 0 else owner[k] for k in ins])
                self.merge.append(0 if kind is Dense else MERGE_KINDS[kind])
                owner[i] = len(self.inputs) - 1
                last[owner[i]] = i
                heads.append(i)
                self.block_of.append(owner[i])
            elif kind in _STEP_LAYERS:
                (src,) = ins
                if src >= 0 and src not in owner:
                    return f"layer {layer.name!r} ({kind.__name__}) follows {layers[src].name!r}, which is not fused"
                dense = next((x for x in layers if type(x) is Dense), None)
                why = _steps_reason(model, [dense, layer, dense] if dense else [layer])  # a chain's per-layer checks
                if why is not None:
                    return why
                if src < 0 or readers[src] > 1:
                    # on a model input, or beside other readers of its source: the first step of an
                    # identity block (no W: its output is its input, then its steps)
                    self.inputs.append([src if src < 0 else owner[src]])
                    self.merge.append(0)
                    owner[i] = len(self.inputs) - 1
                    heads.append(i)
                    if src >= 0:
                        refs.append((src, layer.name))
                else:
                    owner[i] = owner[src]
                last[owner[i]] = i
                self.block_of.append(owner[i])
            else:
                return f"layer {layer.name!r} ({kind.__name__}) is not fused in a layer graph"
        for k, user in refs:
            if last[owner[k]] != k:
                return (f"{user!r} reads {layers[k].name!r} before the layers that follow it in its block; a branch "
                        "there is not fused")
        outs = getattr(model, "graph_outputs", None) or [len(layers) - 1]
        if len(outs) > 1:  # heads (fusednn/heads.h): each output a Dense block's own output
            if len(set(outs)) != len(outs):
                return "a layer that is two of the model's outputs is not fused"
            for o in outs:
                if o < 0 or o not in owner or last[owner[o]] != o or type(layers[heads[owner[o]]]) is not Dense:
                    what = "a model input" if o < 0 else repr(layers[o].name)
                    return (f"output {what} is not fused: each output of a multi-output model must end a Dense "
                            "block (the Dense layer or its last step layer, read by no layer before that; not a "
                            "merge)")
            self.head_layers = list(outs)
            return None
        out = len(layers) - 1
        if owner.get(out) != len(self.inputs) - 1 or last[owner[out]] != out:
            return "the output must be the last block's output to be fused"
        if not any(type(layers[h]) is Dense for h in heads):
            return "a graph without a Dense layer is not fused"
        if not getattr(be, "trainer_multi_input", False) and type(layers[heads[0]]) is not Dense:
            # (its batch is as wide as the first block's input: a Dense reading the model input)
            return f"the {be.name} fused trainer runs layer graphs that start with a Dense block only"
        return None


def _loss_kind(model: Any) -> str:
    if type(model.loss) is losses.MeanSquaredError:
        return "mse"
    fn = getattr(model.loss, "fn", None)  # the LossFunction losses
    return fn if fn is not None else model.loss.kind


def _fused_loss(loss: Any) -> bool:
    return type(loss) in _FUSED_LOSSES or getattr(loss, "fn", None) is not None


def unsupported_reason(model: Any) -> str | None:
    """None when ``model`` can train on the fused path, else why not."""
    be = model.backend
    if not getattr(be, "has_trainer", False):
        return f"backend {be.name!r} has no fused trainer"
    for layer in model.layers:  # layers written in Python (custom build/call) say why themselves
        why = getattr(layer, "not_fused_reason", None)
        if why:
            return why
    graph = getattr(model, "graph_reason", None)  # a functional model with several inputs/outputs
    if graph is not None:
        return graph
    plan = None
    if getattr(model, "graph_inbound", None) is not None:  # a layer graph: Dense blocks with merges
        if not getattr(be, "trainer_merges", False):
            return _not_yet(be, f"the {be.name} fused trainer does not run layer graphs (merges, branches) yet")
        if distribution_state.fit_session(model) is not None:
            return "layer graphs are not fused under a distribution"
        plan = GraphPlan(model)
        if plan.reason is not None:
            return plan.reason
        if len(plan.input_cols) > 1 and not getattr(be, "trainer_multi_input", False):
            return _not_yet(be, f"the {be.name} fused trainer does not take a model with several inputs yet")
    trained = {id(layer) for layer in model.trained_layers()}
    for layer in model.layers:
        if type(layer) is BatchNormalization and not layer.trainable and \
                not getattr(be, "trainer_frozen_batchnorm", False):
            return _not_yet(be, f"the {be.name} fused trainer does not run a BatchNormalization with "
                            f"trainable=False ({layer.name!r}, inference mode) yet")
        if type(layer) is BatchNormalization and (id(layer) in trained) == (not layer.trainable):
            return (f"BatchNormalization {layer.name!r} changed trainable since compile: recompile to train it "
                    "fused")
        if id(layer) not in trained and layer.weights and type(layer) not in (Dense, BatchNormalization):
            return (f"a frozen {type(layer).__name__} ({layer.name!r}, trainable=False) is not fused (only frozen "
                    "Dense layers are)")
    if len(trained) != len(model.layers) and distribution_state.fit_session(model) is not None:
        return "frozen layers are not fused under a distribution"
    k = len(_leading_norms(model)) if plan is None else 0
    why = _steps_reason(model, _program(model)[k:]) if plan is None else None
    why = _opt_in_reason(model, why, _steps_reason, _program(model)[k:])
    if why is not None:
        return why
    if distribution_state.fit_session(model) is not None and \
            any(type(layer) is not Dense or layer.activation == "log_softmax" for layer in _program(model)[k:]):
        return ("layer steps (Dropout/BatchNormalization/Activation after a Dense, a log_softmax) are not fused "
                "under a distribution yet: their gradients are not in the allreduced buffer")
    why = _constraints_reason(model, _program(model)[k:])
    if why is not None:
        return why
    if heads_module.is_multi(model):  # several outputs, each with its loss (training/heads.py)
        return heads_module.reason(model, plan) or _optimizer_reason(model)
    if not _fused_loss(model.loss):
        return getattr(model.loss, "not_fused_reason", None) or f"loss {type(model.loss).__name__} is not fused"
    if getattr(model.loss, "fn", None) in getattr(be, "unverified_losses", ()):
        return (f"the {be.name} kernel of loss {type(model.loss).__name__} has not run on a device yet "
                f"(opt in with FUSEDNN_CUDA_FOCAL=1)")
    last = model.output_activation
    fold = model.loss.folds_output(last)
    if model.loss.folds is not None and not model.loss.on_logits(last):  # a cross-entropy
        return "a cross-entropy on probabilities (no matching sigmoid/softmax output layer) is not fused"
    prog = _program(model)
    if any(getattr(layer, "activation", None) == "log_softmax" for layer in prog[k:]) and \
            not getattr(be, "trainer_log_softmax", False):
        return _not_yet(be, f"a log_softmax activation is not fused by the {be.name} trainer (row-wise; per-op "
                            "kernels only)")
    if plan is not None:
        why = _penalty_order_reason(model, plan)
        if why is not None:
            return why
    for layer in prog[k:]:
        if getattr(layer, "activity_regularizer", None) is None:
            continue
        if not getattr(be, "trainer_activity_regularizer", False):
            return f"the {be.name} fused trainer does not apply activity regularizers yet (layer {layer.name!r})"
        if layer.activation in ("softmax", "log_softmax"):
            return (f"an activity_regularizer on a {layer.activation} Dense ({layer.name!r}) is not fused (the "
                    "row step comes after the penalised output)")
    dense_softmax = any(getattr(layer, "activation", None) == "softmax" and type(layer) is Dense
                        for layer in prog[k:-1]) or (last == "softmax" and not fold)
    if dense_softmax and not getattr(be, "trainer_steps_more", False):  # it runs as a row-softmax step
        return _not_yet(be, f"the {be.name} fused trainer does not run a Dense's softmax activation as a step yet")
    folded = last if fold else None
    needs = [metric_needs(m, model.output_shape[1], model.loss.sparse, folded) for m in model.metrics]
    if any(need is None for need in needs):
        return "a metric computed per batch on the host is not fused"
    objects = getattr(be, "trainer_metric_objects", False)
    for m, need in zip(model.metrics, needs):
        if need == "state":
            return (f"metric {m.name!r} ({type(m).__name__} with these settings on this output) accumulates "
                    "per batch on the host and is not fused")
        if need == "device" and not objects:
            return (f"metric {m.name!r} ({type(m).__name__}) is not accumulated by the {be.name} fused trainer "
                    f"yet (its metric-object kernel has not run on a device)")
    if getattr(model.loss, "label_smoothing", 0) and ("errors" in needs or "device" in needs):
        return "value-based metrics with label smoothing are not fused (they would see smoothed targets)"
    if fold and "errors" in needs and not objects:
        return "regression metrics on a folded (logits) output are not fused"
    return _optimizer_reason(model)


def _optimizer_reason(model: Any) -> str | None:
    if getattr(model.optimizer, "kind", None) not in optimizers.KINDS or \
            type(model.optimizer).apply is not optimizers.Optimizer.apply:
        return f"optimizer {type(model.optimizer).__name__} is not fused"
    return None


def weights_fused(model: Any, tracker: EpochMetrics | None = None) -> bool:
    """Whether the backend's fused trainer takes sample weights for this model: the
    LossFn losses' weighted value and the weighted metric accumulators use the
    metric-object kernels (``trainer_metric_objects``), opt-in on cuda. A model with
    several outputs (no metrics, cpu) weighs each head with the weighted-loss kernels."""
    if heads_module.is_multi(model):
        return True
    if getattr(model.backend, "trainer_metric_objects", False):
        return True
    return getattr(model.loss, "fn", None) is None and (tracker is None or not tracker.needs_kernels(True))


def _states(opt: optimizers.Optimizer) -> list[dict[str, Any]]:
    """Per parameter (model order): its optimizer state arrays by trainer slot
    ("s1".."s3", "ema")."""
    return opt.param_states()


class FusedTrainer:
    """The backend trainer for one model, batch size and optimizer state, with the
    batch and activation buffers it works in."""

    def __init__(self, model: Any, batch: int, flat_grads: bool = False) -> None:
        be = model.backend
        opt = model.optimizer
        states = _states(opt)
        specs, p = [], 0
        fold = model.loss.folds_output(model.output_activation)
        self.norms = _leading_norms(model)
        self._normalized: tuple[Any, Any] | None = None  # (data, its normalised copy) of this fit
        prog = _program(model)
        trained = {id(layer) for layer in model.trained_layers()}
        # Data parallelism: every layer's gradients are views of one flat buffer (plus a
        # slot for the step's loss), so one allreduce per step covers them all (Dense
        # blocks only: unsupported_reason refuses layer steps under a distribution).
        dense = [layer for layer in prog[len(self.norms):] if type(layer) is Dense]
        self.flat_grads, views = _flat_gradients(be, dense) if flat_grads else (None, None)
        plan = GraphPlan(model) if getattr(model, "graph_inbound", None) is not None else None
        multi = heads_module.is_multi(model)
        folded = heads_module.folded_layers(model) if multi else None  # several outputs: their folds
        if plan is None:
            walk, last = list(enumerate(prog[len(self.norms):], start=len(self.norms))), len(prog) - 1
        else:  # a layer graph: every layer in model order, merges folded into the Dense after them
            walk, last = list(enumerate(model.layers)), len(model.layers) - 1
        for i, layer in walk:
            if plan is not None and plan.block_of[i] is None:  # an InputLayer: the batch itself
                continue
            if type(layer) in MERGE_KINDS:  # a merge block: its output is the merged input
                width = layer.output_dim()
                out = be.empty((batch, width))
                grad = be.empty((batch, width))
                b = plan.block_of[i]
                specs.append({"W": None, "b": None, "act": 0, "units": width, "A": out, "G": grad, "dW": None,
                              "db": None, "frozen": True, "src": list(plan.inputs[b]), "merge": plan.merge[b],
                              "src_cols": plan.src_cols(b), "X": be.empty((batch, width)),
                              "dX": be.empty((batch, width))})
                continue
            if type(layer) is not Dense:  # a step after its Dense block (the last one, for a chain)
                if plan is None and not specs or plan is not None and plan.block_of[i] == len(specs):
                    specs.append(self._identity_block(layer, plan, len(specs), be, batch))  # a step starting a block
                if (fold and i == last) if folded is None else i in folded:  # taken into the cross-entropy
                    continue
                block = specs[-1] if plan is None else specs[plan.block_of[i]]
                p = self._add_step(block, layer, be, batch, opt, states, p, id(layer) in trained)
                continue
            act = "linear" if ((fold and i == last) if folded is None else i in folded) else layer.activation
            # a (log_)softmax activation (row-wise) runs as the block's first step after a linear Dense
            row_step, act = (act, "linear") if act in ("log_softmax", "softmax") else (None, act)
            if id(layer) not in trained:  # frozen: no gradient, update, state or penalty (Keras)
                spec = {"W": layer.kernel, "b": layer.bias, "act": activation_code(act), "frozen": True,
                        "A": be.empty((batch, layer.units)), "G": be.empty((batch, layer.units)),
                        "dW": layer.grads[0], "db": layer.grads[1] if layer.use_bias else None}
                if act in NEEDS_INPUT:
                    spec["Z"] = be.empty((batch, layer.units))
                if layer.activity_regularizer is not None:
                    spec["A_l1"], spec["A_l2"] = layer.activity_regularizer.l1, layer.activity_regularizer.l2
                if plan is not None:
                    _graph_input(spec, plan, len(specs), layer, be, batch)
                elif specs and "src" in specs[0]:  # a chain after an identity block: graph blocks, one source each
                    spec.update(src=[len(specs) - 1], merge=0, dX=be.empty((batch, layer.input_dim)))
                if row_step is not None:
                    _append_step(spec, {"kind": row_step}, be, batch)
                specs.append(spec)
                continue
            spec = {"W": layer.kernel, "b": layer.bias, "act": activation_code(act),
                    "A": be.empty((batch, layer.units)), "G": be.empty((batch, layer.units)),
                    "dW": layer.grads[0], "db": layer.grads[1] if layer.use_bias else None}
            if act in NEEDS_INPUT:  # the pre-activation, for the backward pass
                spec["Z"] = be.empty((batch, layer.units))
            if views is not None:
                spec["dW"], spec["db"] = views.pop(0), views.pop(0) if layer.use_bias else None
            for name, i in (("W", p), ("b", p + 1)):
                if name == "b" and not layer.use_bias:
                    continue
                for slot, s in states[i].items():
                    spec[f"{name}_{slot}"] = s
                spec[f"{name}_decay"] = opt.uses_weight_decay(i)
            for w, _, reg in layer.regularized():
                key = "W" if w is layer.kernel else "b"
                spec[f"{key}_l1"], spec[f"{key}_l2"] = reg.l1, reg.l2
            if layer.activity_regularizer is not None:
                spec["A_l1"], spec["A_l2"] = layer.activity_regularizer.l1, layer.activity_regularizer.l2
            for w, con in layer.constrained():  # projected after each update (constraint.h)
                spec["W_constraint" if w is layer.kernel else "b_constraint"] = con.kernel_spec(w.ndim, layer.name)
            p += 2 if layer.use_bias else 1
            if plan is not None:
                _graph_input(spec, plan, len(specs), layer, be, batch)
            elif specs and "src" in specs[0]:  # a chain after an identity block: graph blocks, one source each
                spec.update(src=[len(specs) - 1], merge=0, dX=be.empty((batch, layer.input_dim)))
            if row_step is not None:
                _append_step(spec, {"kind": row_step}, be, batch)
            specs.append(spec)
        self.batch = batch
        self.optimizer = opt  # keeps id(opt) in the key unique while this trainer exists
        x_cols = model.input_shape[1] if plan is None else plan.x_cols
        if plan is not None and specs:  # the batch: the model's inputs side by side (fusednn/trainer.h)
            specs[0]["x_cols"] = x_cols
        self.x_batch = be.empty((batch, x_cols))
        self.y_batch = be.empty((batch, 1 if model.loss.sparse else model.output_shape[1]))
        self.specs = specs  # keeps the steps' host counters alive with the trainer
        self.heads: list[dict] | None = None  # several outputs: the trainer's heads (training/heads.py)
        self.head_losses: Any = None  # (steps, heads): each step's per-output losses
        if multi:
            self.heads = heads_module.specs(model, plan, be, batch)
            self.y_batch = be.empty((batch, sum(h["y_cols"] for h in self.heads)))
            self.trainer = be.make_trainer(specs, opt.kernel_spec(), "mse", batch, 0.0, heads=self.heads)
        else:
            loss_param = 0.0  # Huber's delta, the focal losses' constants (on logits when folded)
            if isinstance(model.loss, losses.LossFunction):
                loss_param = model.loss.kernel_param_on(model.loss.on_logits(model.output_activation))
            self.trainer = be.make_trainer(specs, opt.kernel_spec(), _loss_kind(model), batch, loss_param)
        self._smoothed: tuple[Any, Any] | None = None  # (targets, their label-smoothed copy) of this fit
        self.key = _key(model, batch)
        self.metrics: dict | None = None  # accumulator arrays for run(), see use_metrics
        self.tracker: EpochMetrics | None = None
        self.step_seconds = 0.0  # the latest measured time per step (0: not measured yet)

    @staticmethod
    def _identity_block(layer: Any, plan: GraphPlan | None, b: int, be: Any, batch: int) -> dict:
        """The block ``b`` that step ``layer`` starts (fusednn/trainer.h: no W, merge 0): its
        output is its input (a model input, or another block's output that other layers
        read too), then its steps; a chain's leading steps read the whole batch."""
        width = int(layer.input_dim)
        spec = {"W": None, "b": None, "act": 0, "units": width, "A": be.empty((batch, width)),
                "G": be.empty((batch, width)), "dW": None, "db": None, "frozen": True, "merge": 0}
        if plan is None:
            spec["src"] = [-1]
            return spec
        src = plan.inputs[b][0]
        spec.update(src=[src], src_cols=plan.src_cols(b))
        if src < 0 and plan.input_cols[-1 - src][1] != plan.x_cols:  # a slice of the batch: copied
            spec["X"] = be.empty((batch, width))
        if src >= 0:
            spec["dX"] = be.empty((batch, width))
        return spec

    @staticmethod
    def _add_step(spec: dict, layer: Any, be: Any, batch: int, opt: Any, states: list, p: int,
                  trained: bool = True) -> int:
        """Append ``layer``'s step to the Dense block ``spec``; returns the index of the
        next parameter (in the optimizer's order)."""
        if type(layer) is Activation and layer.activation in ("softmax", "log_softmax"):  # a row step
            step = {"kind": layer.activation}
        elif type(layer) is Activation:
            step = None if layer.activation == "linear" else {"kind": "activation",
                                                               "act": activation_code(layer.activation)}
        elif type(layer) is ReLU and layer.plain:
            step = {"kind": "activation", "act": activation_code("relu")}
        elif type(layer) is Identity:
            step = None
        else:
            step = layer.fused_step(be, batch)
        if type(layer) is PReLU and trained:  # alpha: one trainable parameter, in the optimizer's order
            for slot, st in states[p].items():
                step[f"alpha_{slot}"] = st
            step["alpha_decay"] = opt.uses_weight_decay(p)
            p += 1
        if type(layer) in (BatchNormalization, LayerNormalization) and trained:  # (frozen: no optimizer state)
            for name, on in (("gamma", layer.scale), ("beta", layer.center)):
                if on:
                    for slot, st in states[p].items():
                        step[f"{name}_{slot}"] = st
                    step[f"{name}_decay"] = opt.uses_weight_decay(p)
                    p += 1
        if type(layer) in (BatchNormalization, LayerNormalization, PReLU) and trained:
            # Keras regularizers (added to the step's loss and gradients after the block's own)
            # and constraints (projected after the update): fusednn/layer_steps.h
            for name, reg in _step_regularizers(layer):
                step[f"{name}_l1"], step[f"{name}_l2"] = reg.l1, reg.l2
            for name, con in _step_constraints(layer):
                step[f"{name}_constraint"] = con.kernel_spec(1, f"{type(layer).__name__} {layer.name!r}")
        if step is not None:
            _append_step(spec, step, be, batch)
        return p

    def epoch(self, model: Any, x: Any, y: Any, order: np.ndarray, step_losses: Any, chunk: int,
              on_step: Callable[[int, Any], None] | None, stop_on_nonfinite: bool,
              augment: Callable[[np.ndarray], np.ndarray] | None = None, weights: dict | None = None,
              params: np.ndarray | None = None, replicas: int = 1) -> int:
        """Run the epoch's steps (``chunk`` at a time, calling ``on_step`` after each
        step of a chunk); returns the number of steps run (fewer than the epoch's when
        a loss was not finite and ``stop_on_nonfinite``, on backends that read each
        step's loss for free: the CUDA trainer ignores it rather than wait for the GPU
        every step, and TerminateOnNaN then stops after the epoch). With ``augment``, each chunk's
        samples are gathered on the host, transformed, and trained on in order. ``weights``
        (sample weights, not with ``augment``): ``{"row_scale": backend array (n,),
        "penalty_scale": host array (steps,) or None}``: the row at position i of the
        order has its loss and gradient multiplied by row_scale[i], and step s its
        regularizer factors by penalty_scale[s]. ``params``: the epoch's step parameter
        rows (``optimizer.step_params(optimizer.iterations, steps)``) when the caller
        computed them ahead (scikit-learn's small epochs: once per block of epochs).
        ``replicas=2`` (cpu backend, see :func:`replicas_for`) splits each step between
        two threads (its rows, or a one-hidden-layer model's hidden units) where the model
        and the thread pool allow it; the results then differ from one thread's by float32
        rounding (another summation order)."""
        if weights is not None and augment is not None:
            raise ValueError("sample weights cannot be combined with augment")
        if weights is not None and not weights_fused(model, self.tracker):
            raise ValueError(f"sample weights with {type(model.loss).__name__} or with compiled metrics are not "
                             f"supported by the {model.backend.name} fused trainer")
        be = model.backend
        opt = model.optimizer
        session = distribution_state.fit_session(model)
        if session is not None:
            if augment is not None or weights is not None:
                raise NotImplementedError("augment and sample weights are not supported under a DataParallel "
                                          "distribution")
            if self.norms:
                x = self._normalize_once(x)
            return session.run_epoch(self, x, y, order, step_losses, chunk, on_step, stop_on_nonfinite)
        n = int(order.shape[0])
        steps = -(-n // self.batch)
        if on_step is None:
            chunk = steps if augment is None else max(1, 4096 // self.batch)
        dev_order = be.xp.asarray(np.ascontiguousarray(order, dtype=np.int64))
        extra = {}
        if self.heads is not None:  # each step's per-output losses, for the history
            if self.head_losses is None or self.head_losses.shape[0] < steps:
                self.head_losses = np.zeros((steps, len(self.heads)), dtype=np.float32)
            extra["head_losses"] = self.head_losses
            if self.tracker is not None:  # each output's metric accumulators
                extra["head_metrics"] = self.tracker.head_metrics()
        y = self._smooth_once(model, y)
        if self.norms and augment is None:
            x = self._normalize_once(x)
        s = 0
        while s < steps:
            # Runs are also bounded in time (RUN_SECONDS, from the last measured step time;
            # a first run of one step measures it) so that Ctrl-C is seen promptly.
            cap = max(1, int(RUN_SECONDS / self.step_seconds)) if self.step_seconds else 1
            end = min(steps, s + min(chunk, cap))
            t0 = time.perf_counter()
            # the chunk's learning rates (schedule) and step parameters, computed once here
            params_run = opt.step_params(opt.iterations, end - s) if params is None else params[s:end]
            if augment is None:
                metrics = self.metrics if weights is None or self.tracker is None else \
                    self.tracker.trainer_metrics(True)
                run_extra = {**extra, **({"replicas": replicas} if replicas != 1 and be.name == "cpu" else {})}
                with concurrency.uninterrupted():  # the step count is recorded with the steps
                    opt.iterations, done = self.trainer.run(x, y, dev_order, self.x_batch, self.y_batch,
                                                            step_losses, s, end, opt.iterations,
                                                            stop_on_nonfinite, metrics, weights, params_run,
                                                            **run_extra)
            else:  # the chunk's samples, augmented, as a small data set of its own
                rows = order[s * self.batch:min(n, end * self.batch)]
                xa = be.asarray(inputs.augmented(augment, np.asarray(be.to_numpy(x))[rows], (len(rows), x.shape[1])))
                for norm in self.norms:
                    norm.transform(xa, xa)
                ya = be.xp.ascontiguousarray(y[be.xp.asarray(rows)])
                local = be.xp.arange(len(rows), dtype=np.int64)
                with concurrency.uninterrupted():
                    opt.iterations, done = self.trainer.run(xa, ya, local, self.x_batch, self.y_batch,
                                                            step_losses[s:end], 0, end - s, opt.iterations,
                                                            stop_on_nonfinite, self.metrics, None, params_run,
                                                            **extra)
            if done:
                self.step_seconds = (time.perf_counter() - t0) / done
            if self.heads is not None and self.tracker is not None and done:  # (augment: the run's rows from 0)
                first = s if augment is None else 0
                self.tracker.add_step_losses(self.head_losses[first:first + done],
                                             heads_module.step_rows(s, done, self.batch, n))
            if on_step is not None:
                for k in range(s, s + done):
                    on_step(k, step_losses)
            s += done
            if s < end:  # stopped early at a non-finite loss
                break
        return s

    def run_epochs(self, model: Any, x: Any, y: Any, orders: np.ndarray, step_losses: Any,
                   weights: dict | None = None, params: np.ndarray | None = None, replicas: int = 1,
                   epoch_stop: dict | None = None) -> int:
        """Several whole epochs in one native run (cpu backend): ``orders`` (epochs, n) holds
        each epoch's sample order, split into that epoch's ceil(n / batch) steps (its own
        short last batch) through the trainer's ``step_starts``; ``step_losses`` gets every
        step's loss, epoch after epoch; ``weights``/``params`` as :meth:`epoch` takes them,
        for all the steps, and ``replicas`` as :meth:`epoch` takes it. ``epoch_stop``: the
        trainer's scikit-learn no-improvement rule (``MlpTrainer.run``), which may end the
        run after an earlier epoch. Returns the epochs run. For scikit-learn's small epochs,
        where the Python between epochs cost as much as the epochs themselves. Not for models
        with several outputs, metric accumulators or layer normalisations applied up front."""
        if model.backend.name != "cpu" or self.heads is not None or self.metrics is not None or self.norms:
            raise ValueError("run_epochs runs plain models on the cpu backend's fused trainer only")
        epochs, n = orders.shape
        per = -(-n // self.batch)
        starts = (np.arange(epochs, dtype=np.int64)[:, None] * n +
                  np.minimum(np.arange(per, dtype=np.int64) * self.batch, n)[None, :]).ravel()
        starts = np.append(starts, np.int64(epochs) * n)
        opt = model.optimizer
        if params is None:
            params = opt.step_params(opt.iterations, epochs * per)
        t0 = time.perf_counter()
        with concurrency.uninterrupted():  # the step count is recorded with the steps
            opt.iterations, done = self.trainer.run(x, y, np.ascontiguousarray(orders, dtype=np.int64).ravel(),
                                                    self.x_batch, self.y_batch, step_losses, 0, epochs * per,
                                                    opt.iterations, False, None, weights, params,
                                                    step_starts=starts, epoch_stop=epoch_stop,
                                                    **({"replicas": replicas} if replicas != 1 else {}))
        if done:
            self.step_seconds = (time.perf_counter() - t0) / done
        return done // per

    def _normalize_once(self, x: Any) -> Any:
        """The leading Normalization layers applied to the whole training set, kept for
        the fit's later epochs (the statistics are fixed, so once is enough)."""
        if self._normalized is None or self._normalized[0] is not x:
            xn = x.copy()
            for norm in self.norms:
                norm.transform(xn, xn)
            self._normalized = (x, xn)
        return self._normalized[1]

    def _smooth_once(self, model: Any, y: Any) -> Any:
        """The targets with the loss's label smoothing applied (the cross-entropies are
        linear in the target, so smoothing the data set once is the same as smoothing
        each batch), kept for the fit's later epochs; ``y`` itself without smoothing."""
        smooth = getattr(model.loss, "smooth_targets", None)
        if smooth is None or not getattr(model.loss, "label_smoothing", 0):
            return y
        if self._smoothed is None or self._smoothed[0] is not y:
            self._smoothed = (y, smooth(model.backend, y))
        return self._smoothed[1]

    def forget_data(self) -> None:
        """Drop the normalised (and label-smoothed) copies of a finished fit's data."""
        self._normalized = None
        self._smoothed = None

    def use_metrics(self, tracker: EpochMetrics | None) -> None:
        """Point the trainer's metric accumulators at ``tracker``'s (None: no metrics)."""
        self.tracker = tracker
        self.metrics = None if tracker is None else tracker.trainer_metrics(False)


def _append_step(spec: dict, step: dict, be: Any, batch: int) -> None:
    """Append ``step`` (with its output and gradient buffers) to the Dense block ``spec``."""
    cols = spec["A"].shape[1]
    step["Y"], step["G"] = be.empty((batch, cols)), be.empty((batch, cols))
    spec.setdefault("post", []).append(step)


def _graph_input(spec: dict, plan: GraphPlan, b: int, layer: Any, be: Any, batch: int) -> None:
    """Block ``b``'s input sources (fusednn/trainer.h's graph blocks) and the buffers of
    its merged input and of the input gradient."""
    spec["src"], spec["merge"] = list(plan.inputs[b]), plan.merge[b]
    spec["src_cols"] = plan.src_cols(b)
    n_in = layer.input_dim
    src = plan.inputs[b][0]
    if plan.merge[b] or (src < 0 and plan.input_cols[-1 - src][1] != plan.x_cols):  # (a slice of the batch: copied)
        spec["X"] = be.empty((batch, n_in))
    if plan.merge[b] or src >= 0:
        spec["dX"] = be.empty((batch, n_in))


def _key(model: Any, batch: int) -> tuple:
    """What a trainer is built over: the batch size and the identity of the optimizer,
    the parameters and the state arrays (the trainer keeps them all alive, so their
    ids cannot be reused while it exists). Recompiling or rebuilding changes it."""
    opt = model.optimizer
    arrays = [*model.weights, *(a for s in _states(opt) for a in s.values())]
    return (batch, distribution_state.fit_session(model) is not None, id(opt), model.frozen_at_compile,
            tuple(layer.trainable for layer in model.layers),
            *map(id, arrays))


def _flat_gradients(be: Any, layers: list[Any]) -> tuple[Any, list[Any]]:
    """One zeroed float32 buffer for the gradients of ``layers`` (Dense) plus one slot,
    and each layer's (kernel, bias) gradient views into it, in order."""
    shapes = [s for layer in layers for s in ([tuple(layer.kernel.shape)] +
                                                ([tuple(layer.bias.shape)] if layer.use_bias else []))]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = be.zeros((sum(sizes) + 1,))
    views, at = [], 0
    for shape, size in zip(shapes, sizes):
        views.append(flat[at:at + size].reshape(shape))
        at += size
    return flat, views


def replicas_for(model: Any, batch: int) -> int:
    """The ``replicas`` for :meth:`FusedTrainer.epoch` (scikit-learn's estimators): 2 when
    :data:`REPLICAS_ENABLED`, on the cpu backend with at least two threads and
    ``batch >= 2 * REPLICA_MIN_ROWS``, else 1. The trainer itself falls back to one replica for models it cannot split (layer
    steps, graphs, metrics, constraints, norm clipping) and while the thread pool is busy.
    Keras ``fit`` does not use it: its fused path promises the per-op path's numbers."""
    be = model.backend
    if not REPLICAS_ENABLED or be.name != "cpu" or batch < 2 * REPLICA_MIN_ROWS:
        return 1
    from ..backends.cpu import get_num_threads
    return 2 if get_num_threads() >= 2 else 1


def trainer_for(model: Any, batch: int, tracker: EpochMetrics | None = None,
                cached: FusedTrainer | None = None) -> FusedTrainer | None:
    """The fused trainer for ``model`` and this batch size: ``cached`` (the one the
    caller kept from last time) when it still fits, else a new one; set to update
    ``tracker``'s accumulators. None when the model cannot use the fused path."""
    if unsupported_reason(model) is not None:
        return None
    if cached is None or cached.key != _key(model, batch):
        cached = FusedTrainer(model, batch, flat_grads=distribution_state.fit_session(model) is not None)
    cached.use_metrics(tracker)
    return cached
