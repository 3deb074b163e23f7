"""Float64 formulas of the activations beyond relu/sigmoid/tanh, log-softmax and
the Keras losses beyond MSE and the cross-entropies: the NumPy backend rounds
them to float32 once, and the tests use them as the reference for the native
kernels (fusednn/activation.h, fusednn/loss_math.h hold the same formulas).
"""
from __future__ import annotations

import math

import numpy as np

LEAKY_SLOPE = float(np.float32(0.2))
SELU_ALPHA = float(np.float32(1.67326324235437728481))
SELU_SCALE = float(np.float32(1.05070098735548049342))
GELU_C = float(np.float32(0.7978845608028654))
GELU_K = float(np.float32(0.044715))
EPS = 1e-7  # keras.backend.epsilon()
try:  # vectorised where SciPy is installed; the C library's erfc element by element otherwise
    from scipy.special import erfc as _erfc
except ImportError:  # pragma: no cover - depends on the environment
    _erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def act_forward64(x: np.ndarray, name: str) -> np.ndarray:
    """act(x) in float64 for the activations with kernel codes >= 4."""
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "elu":
            return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
        if name == "selu":
            return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))
        if name == "leaky_relu":
            return np.where(x < 0, x * LEAKY_SLOPE, x)
        if name == "gelu":
            return 0.5 * x * _erfc(-x / math.sqrt(2.0))
        if name == "gelu_tanh":
            return x * _sigmoid(2 * GELU_C * (x + GELU_K * x ** 3))
        if name == "swish":
            return x * _sigmoid(x)
        if name == "softplus":
            return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
        if name == "softsign":
            return x / (1 + np.abs(x))
        if name == "hard_sigmoid":
            return np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, x / 6 + 0.5))
        if name == "hard_swish":
            return np.where(x <= -3, 0.0, np.where(x >= 3, x, x * (x + 3) / 6))
        if name == "relu6":
            return np.where(x < 0, 0.0, np.where(x > 6, 6.0, x))
        if name == "mish":
            e = np.exp(np.minimum(x, 20))
            n = e * (e + 2)
            return np.where(x > 20, x, x * n / (n + 2))
        if name == "exponential":
            return np.exp(x)
    raise ValueError(f"unknown activation {name!r}")


def act_derivative64(s: np.ndarray, name: str) -> np.ndarray:
    """act'(x) in float64 from the saved array ``s``: the forward input for the
    activations in NEEDS_INPUT, else the forward output."""
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "elu":
            return np.where(s > 0, 1.0, s + 1)
        if name == "selu":
            return np.where(s > 0, SELU_SCALE, s + SELU_SCALE * SELU_ALPHA)
        if name == "leaky_relu":
            return np.where(s > 0, 1.0, LEAKY_SLOPE)
        if name == "gelu":
            return 0.5 * _erfc(-s / math.sqrt(2.0)) + s * np.exp(-0.5 * s * s) / math.sqrt(2 * math.pi)
        if name == "gelu_tanh":
            sg = _sigmoid(2 * GELU_C * (s + GELU_K * s ** 3))
            return sg + 2 * s * sg * (1 - sg) * GELU_C * (1 + 3 * GELU_K * s * s)
        if name == "swish":
            sg = _sigmoid(s)
            return sg * (1 + s * (1 - sg))
        if name == "softplus":
            return -np.expm1(-s)
        if name == "softsign":
            return 1 / (1 + np.abs(s)) ** 2
        if name == "hard_sigmoid":
            return np.where((s > 0) & (s < 1), float(np.float32(1 / 6)), 0.0)
        if name == "hard_swish":
            return np.where(s < -3, 0.0, np.where(s > 3, 1.0, (2 * s + 3) / 6))
        if name == "relu6":
            return np.where((s > 0) & (s < 6), 1.0, 0.0)
        if name == "mish":
            e = np.exp(np.minimum(s, 20))
            n = e * (e + 2)
            d = n / (n + 2) + s * (4 * (n + 1) / (n + 2) ** 2) * (e / (1 + e))
            return np.where(s > 20, 1.0, d)
        if name == "exponential":
            return s
    raise ValueError(f"unknown activation {name!r}")


def times_derivative(dy: np.ndarray, d: np.ndarray) -> np.ndarray:
    """dy * d in float64 (an upstream gradient of zero stays zero where d is inf)."""
    with np.errstate(invalid="ignore"):
        return np.where(dy == 0, 0.0, dy.astype(np.float64) * d)


def log_softmax64(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))


# The focal losses clip to Keras' float32 bounds (fusednn/loss_math.h kClipLo/kClipHi).
CLIP_LO = float(np.float32(1e-7))
CLIP_HI = float(np.float32(1) - np.float32(1e-7))


def binary_focal64(p: np.ndarray, t: np.ndarray, gamma: float, alpha: float, smoothing: float,
                   flags: int) -> tuple[np.ndarray, np.ndarray]:
    """Keras 3's binary focal cross-entropy per element and its derivative w.r.t. p
    (float64): targets smoothed towards 1/2, sigmoid first with flag bit 1 (from_logits),
    the class-balancing weight with bit 2."""
    if smoothing:
        t = t * (1 - smoothing) + 0.5 * smoothing
    logits = bool(flags & 1)
    q = _sigmoid(p) if logits else p
    qc = np.clip(q, CLIP_LO, CLIP_HI)
    bce = -(t * np.log(qc) + (1 - t) * np.log(1 - qc))
    dbce = np.where((q >= CLIP_LO) & (q <= CLIP_HI), (qc - t) / (qc * (1 - qc)), 0.0)
    m = 1 - (t * q + (1 - t) * (1 - q))  # 1 - p_t, with the unclipped q as Keras
    with np.errstate(divide="ignore", invalid="ignore"):
        f = m ** gamma
        df = 0.0 if gamma == 0 else gamma * m ** (gamma - 1) * (1 - 2 * t)
    w = t * alpha + (1 - t) * (1 - alpha) if flags & 2 else 1.0
    dq = w * (df * bce + f * dbce)
    return w * f * bce, dq * q * (1 - q) if logits else dq


def categorical_focal64(p: np.ndarray, t: np.ndarray, gamma: float, alpha: float, smoothing: float,
                        flags: int) -> tuple[np.ndarray, np.ndarray]:
    """Keras 3's categorical focal cross-entropy per row (float64) and its gradient
    w.r.t. the row of p: targets smoothed towards 1/classes, rows normalised to sum 1
    (or a softmax with flag bit 1, from_logits), clipped, alpha (1 - q)^gamma (-t log q)
    summed over the row."""
    if smoothing:
        t = t * (1 - smoothing) + smoothing / p.shape[1]
    logits = bool(flags & 1)
    if logits:
        e = np.exp(p - p.max(axis=1, keepdims=True))
        q = e / e.sum(axis=1, keepdims=True)
    else:
        norm = p.sum(axis=1, keepdims=True)
        q = p / norm
    qc = np.clip(q, CLIP_LO, CLIP_HI)
    loss = (alpha * (1 - qc) ** gamma * (-t * np.log(qc))).sum(axis=1)
    df = 0.0 if gamma == 0 else gamma * (1 - qc) ** (gamma - 1)
    dq = np.where((q >= CLIP_LO) & (q <= CLIP_HI), alpha * t * (df * np.log(qc) - (1 - qc) ** gamma / qc), 0.0)
    d = dq - (dq * q).sum(axis=1, keepdims=True)
    return loss, q * d if logits else d / norm


def loss_and_grad64(fn: str, p: np.ndarray, t: np.ndarray,
                    param: float | tuple[float, float, float, int] = 1.0) -> tuple[float, np.ndarray]:
    """(mean loss, d per-sample-sum / d p) in float64 for a LOSS_FNS name, Keras' formulas
    with the 'sum_over_batch_size' reduction; the gradient is that of the per-element
    (elementwise kinds) or per-row (row kinds) loss, before the mean's 1/count.
    ``param``: Huber's delta, or (gamma, alpha, label_smoothing, flags) for the focal losses."""
    param, alpha, smoothing, flags = param if isinstance(param, tuple) else (param, 0.0, 0.0, 0)
    if fn == "binary_focal_crossentropy":
        loss, g = binary_focal64(p, t, param, alpha, smoothing, flags)
        return float(np.mean(loss)), g
    if fn == "categorical_focal_crossentropy":
        loss, g = categorical_focal64(p, t, param, alpha, smoothing, flags)
        return float(np.mean(loss)), g
    d = p - t
    if fn == "mae":
        return float(np.mean(np.abs(d))), np.sign(d)
    if fn == "mape":
        m = np.maximum(np.abs(t), EPS)
        return float(np.mean(100 * np.abs(d) / m)), 100 * np.sign(d) / m
    if fn == "msle":
        pc = np.maximum(p, EPS)
        e = np.log1p(pc) - np.log1p(np.maximum(t, EPS))
        return float(np.mean(e * e)), np.where(p > EPS, 2 * e / (pc + 1), 0.0)
    if fn == "huber":
        a = np.abs(d)
        small = a <= param
        loss = np.where(small, 0.5 * d * d, param * a - 0.5 * param * param)
        return float(np.mean(loss)), np.where(small, d, param * np.sign(d))
    if fn == "log_cosh":
        a = np.abs(d)
        return float(np.mean(a + np.log1p(np.exp(-2 * a)) - math.log(2.0))), np.tanh(d)
    if fn in ("hinge", "squared_hinge"):
        y = 2 * t - 1 if np.all((t == 0) | (t == 1)) else t
        m = np.maximum(1 - y * p, 0)
        if fn == "hinge":
            return float(np.mean(m)), np.where(m > 0, -y, 0.0)
        return float(np.mean(m * m)), -2 * y * m
    if fn == "poisson":
        return float(np.mean(p - t * np.log(p + EPS))), 1 - t / (p + EPS)
    rows = np.arange(p.shape[0])
    if fn == "categorical_hinge":
        pos = (t * p).sum(axis=1)
        v = (1 - t) * p
        j = v.argmax(axis=1)
        loss = v[rows, j] - pos + 1
        g = -t.copy()
        g[rows, j] += 1 - t[rows, j]
        g[loss <= 0] = 0
        return float(np.mean(np.maximum(loss, 0))), g
    if fn == "kl_divergence":
        tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        return (float(np.mean((tc * np.log(tc / pc)).sum(axis=1))),
                np.where((p >= EPS) & (p <= 1), -tc / pc, 0.0))
    if fn == "cosine_similarity":
        pp, tt = (p * p).sum(axis=1, keepdims=True), (t * t).sum(axis=1, keepdims=True)
        tp = (t * p).sum(axis=1, keepdims=True)
        ip, it = 1 / np.sqrt(np.maximum(pp, EPS * EPS)), 1 / np.sqrt(np.maximum(tt, EPS * EPS))
        c = np.where(pp > EPS * EPS, tp * it * ip ** 3, 0.0)
        return float(np.mean(-(tp * ip * it))), -t * it * ip + c * p
    raise ValueError(f"unknown loss {fn!r}")
