"""The codes the optimizer kernels share with Python (csrc/include/fusednn/optim_update.h):
optimizer kinds, flag bits, the columns of a step-parameter row, which state arrays a
kind uses, and the gradient-clipping factor computed exactly as the kernels do.
A leaf: fusednn.optimizers (which fills the rows) and the backends (which run them)
both import it."""
from __future__ import annotations

import math

import numpy as np

#: optimizer kind -> code shared with the kernels (fusednn::OptKind)
KINDS = {"sgd": 0, "adam": 1, "rmsprop": 2, "adagrad": 3, "adadelta": 4, "adamax": 5, "nadam": 6, "lion": 7}
#: flag bits of an update (fusednn::optf)
NESTEROV, CENTERED, AMSGRAD, MOMENTUM, WEIGHT_DECAY, EMA, CLIP_VALUE, CLIP_NORM, CLIP_GLOBAL = (
    1, 2, 4, 8, 16, 32, 64, 128, 256)
ALL_FLAGS = 511
#: the columns of a step-parameter row (fusednn::OptParam), N_PARAMS floats per step
P_LR, P_WD, P_CLIP, P_EMA, P_EMA1, P_EMA_OW, P_A, P_B, P_C, P_D, P_E, P_F, P_G, P_H = range(14)
N_PARAMS = 16


def state_use(kind: int, flags: int) -> tuple[bool, bool, bool]:
    """Which of the state arrays s1, s2, s3 the rule of ``kind`` with ``flags`` reads
    (fusednn::opt_state_use)."""
    if kind == KINDS["sgd"]:
        return bool(flags & MOMENTUM), False, False
    if kind == KINDS["adam"]:
        return True, True, bool(flags & AMSGRAD)
    if kind == KINDS["rmsprop"]:
        return True, bool(flags & MOMENTUM), bool(flags & CENTERED)
    if kind in (KINDS["adagrad"], KINDS["lion"]):
        return True, False, False
    return True, True, False


def clip_factor(flags: int, clip: float, sumsq: float) -> float:
    """fusednn::clip_factor, the same double arithmetic: ``max(||g||, c)`` for
    clipnorm, Keras' global scale ``c * min(1/N, 1/c) + (N - N)`` for global_clipnorm."""
    c = float(np.float32(clip))
    if flags & CLIP_NORM:
        norm = math.sqrt(sumsq)
        return float(np.float32(norm if norm > c else c))
    if flags & CLIP_GLOBAL:
        norm = math.sqrt(sumsq) if sumsq == sumsq else math.nan
        inv = math.inf if norm == 0 else 1.0 / norm
        invc = 1.0 / c
        return float(np.float32(c * (inv if inv < invc else invc) + (norm - norm)))
    return 1.0
