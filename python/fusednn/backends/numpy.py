"""The NumPy reference backend: every op in plain float32 NumPy.

It is what runs where the compiled extension could not be built, and the
reference the native backends are tested against, so it favours the obvious
formula over speed (but stays numerically stable).
"""
from __future__ import annotations

import numpy as np

from .base import ACTIVATIONS, ROW_LOSS_FNS, Backend, canonical_activation, loss_params_f32
from . import metric_kernels as _metric_kernels
from . import numpy_ext as _ext
from .optim_codes import (AMSGRAD, CENTERED, CLIP_GLOBAL, CLIP_NORM, CLIP_VALUE, EMA, MOMENTUM, NESTEROV, P_A, P_B,
                          P_C, P_CLIP, P_D, P_E, P_EMA, P_EMA1, P_EMA_OW, P_F, P_G, P_H, P_LR, P_WD, WEIGHT_DECAY,
                          clip_factor)


def _sigmoid(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    # e^-|x| never overflows; the two branches are 1/(1+e) and e/(1+e).
    e = np.exp(-np.abs(x))
    np.divide(np.where(x >= 0, np.float32(1), e), np.float32(1) + e, out=out)
    return out


def act_forward_np(x: np.ndarray, out: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        np.maximum(x, np.float32(0), out=out)
    elif activation == "sigmoid":
        _sigmoid(x, out)
    elif activation == "tanh":
        np.tanh(x, out=out)
    elif activation in ("linear", None):
        if out is not x:
            np.copyto(out, x)
    elif canonical_activation(activation) in ACTIVATIONS:
        np.copyto(out, _ext.act_forward64(x.astype(np.float64), canonical_activation(activation)),
                  casting="same_kind")
    else:
        raise ValueError(f"unknown activation {activation!r}")
    return out


def act_backward_np(dy: np.ndarray, y: np.ndarray, out: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        np.copyto(out, np.where(y > 0, dy, np.float32(0)))
    elif activation == "sigmoid":
        np.multiply(dy, y * (np.float32(1) - y), out=out)
    elif activation == "tanh":
        # (1-y)(1+y) rather than 1-y*y: no cancellation when |y| is close to 1
        np.multiply(dy, (np.float32(1) - y) * (np.float32(1) + y), out=out)
    elif activation in ("linear", None):
        if out is not dy:
            np.copyto(out, dy)
    elif canonical_activation(activation) in ACTIVATIONS:  # y is the forward input for the NEEDS_INPUT activations
        d = _ext.act_derivative64(y.astype(np.float64), canonical_activation(activation))
        np.copyto(out, _ext.times_derivative(dy, d), casting="same_kind")
    else:
        raise ValueError(f"unknown activation {activation!r}")
    return out


def adam_alpha(learning_rate: float, beta_1: float, beta_2: float, step: int) -> np.float32:
    """Keras' bias-corrected step size lr*sqrt(1-b2^t)/(1-b1^t).

    The kernels receive the hyperparameters as float32 and compute this in
    float64 before rounding to float32; doing the same here keeps the backends
    bit-compatible."""
    lr, b1, b2 = (float(np.float32(h)) for h in (learning_rate, beta_1, beta_2))
    return np.float32(lr * np.sqrt(1.0 - b2**step) / (1.0 - b1**step))


class NumpyBackend(Backend):
    """Pure NumPy, float32."""

    name = "numpy"
    xp = np

    def matmul(self, a, b, out, transpose_a=False, transpose_b=False, bias=None, activation="linear"):
        np.matmul(a.T if transpose_a else a, b.T if transpose_b else b, out=out)
        if bias is not None:
            out += bias
        return act_forward_np(out, out, activation)

    def act_forward(self, x, out, activation):
        return act_forward_np(x, out, activation)

    def act_backward(self, dy, y, out, activation):
        return act_backward_np(dy, y, out, activation)

    def bias_act(self, x, bias, out, activation):
        np.add(x, bias, out=out)
        return act_forward_np(out, out, activation)

    def mse(self, pred, target, out=None):
        d = pred.astype(np.float64) - target
        r = float(np.mean(d * d)) if d.size else 0.0
        if out is not None:
            out.reshape(-1)[0] = r
        return r

    def mse_grad(self, pred, target, out, scale):
        np.subtract(pred, target, out=out)
        out *= np.float32(scale)
        return out

    def sum_rows(self, x, out):
        np.copyto(out, x.sum(axis=0, dtype=np.float64))
        return out

    def log_softmax(self, x, out):
        np.copyto(out, _ext.log_softmax64(x.astype(np.float64)), casting="same_kind")
        return out

    def log_softmax_backward(self, dy, y, out):
        d = dy.astype(np.float64)
        np.copyto(out, d - np.exp(y.astype(np.float64)) * d.sum(axis=1, keepdims=True), casting="same_kind")
        return out

    def loss_grad(self, fn, pred, target, grad=None, out=None, param=0.0):
        loss, g = _ext.loss_and_grad64(fn, pred.astype(np.float64), target.astype(np.float64),
                                       loss_params_f32(param))  # the kernels' float32 constants
        if grad is not None:
            scale = 1.0 / (pred.shape[0] if fn in ROW_LOSS_FNS else pred.size)
            if fn in ROW_LOSS_FNS:
                scale = float(np.float32(scale))  # the kernels round the row kinds' scale to float32
            np.copyto(grad, g * scale, casting="same_kind")
        if out is not None:
            out.reshape(-1)[0] = loss
        return loss

    def softmax(self, x, out):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        np.divide(e, e.sum(axis=1, keepdims=True, dtype=np.float64), out=out, casting="same_kind")
        return out

    def softmax_backward(self, dy, y, out):
        dot = (dy.astype(np.float64) * y).sum(axis=1, keepdims=True)
        np.multiply(y, dy - dot.astype(np.float32), out=out)
        return out

    def xent(self, kind, logits, target, grad=None, out=None, scale=1.0):
        z = logits.astype(np.float64)
        if kind == "binary":
            t = target.astype(np.float64)
            loss = float(np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))) if z.size else 0.0
            if grad is not None:
                _sigmoid(logits, grad)
                grad -= target
                grad *= np.float32(scale)
        else:
            lse = z.max(axis=1, keepdims=True)
            lse = lse + np.log(np.exp(z - lse).sum(axis=1, keepdims=True))
            if kind == "sparse":
                labels = target.reshape(-1)
                # range first, then convert: NaN or huge floats never reach the int cast
                bad = ~((labels >= 0) & (labels < z.shape[1]) & (labels == np.floor(labels)))
                k = np.where(bad, 0, labels).astype(np.int64)
                t = np.zeros_like(z)
                t[np.arange(z.shape[0]), k] = 1.0
                t[bad] = 0.0
                per_row = (lse[:, 0] - z[np.arange(z.shape[0]), k])
                per_row[bad] = np.nan
            else:
                t = target.astype(np.float64)
                per_row = (t * (lse - z)).sum(axis=1)
                bad = None
            loss = float(per_row.mean()) if z.shape[0] else 0.0
            if grad is not None:
                g = np.float32(scale) * (np.exp(z - lse).astype(np.float32) - t.astype(np.float32))
                if bad is not None:
                    g[bad] = 0.0
                np.copyto(grad, g)
        if out is not None:
            out.reshape(-1)[0] = loss
        return loss

    def confusion_update(self, counts, pred, target, classes, sparse, threshold=0.5):
        p = (pred[:, 0] > threshold).astype(np.int64) if pred.shape[1] == 1 else pred.argmax(axis=1)
        if sparse:
            labels = target.reshape(-1)  # outside (-1, classes) or NaN: skipped, never converted
            t = np.where((labels > -1) & (labels < classes), labels, -1).astype(np.int64)
        elif target.shape[1] == 1:
            t = (target[:, 0] > 0.5).astype(np.int64)
        else:
            t = target.argmax(axis=1)
        ok = (t >= 0) & (t < classes) & (p >= 0) & (p < classes)
        np.add.at(counts.reshape(classes, classes), (t[ok], p[ok]), 1.0)

    def error_sums_update(self, sums, pred, target):
        d = pred.astype(np.float64) - target
        sums[0] += np.abs(d).sum()
        sums[1] += (d * d).sum()

    def metric_update(self, spec, acc, pred, target, weights=None):
        _metric_kernels.metric_update(spec, acc, pred, target, weights)

    def weighted_loss_fn(self, fn, pred, target, weights, out, param=0.0):
        out.reshape(-1)[0] = _metric_kernels.weighted_loss_fn(fn, pred, target, weights, loss_params_f32(param))

    def regularize(self, param, grad, l1, l2, loss=None):
        grad += np.float32(l1) * np.sign(param) + np.float32(2.0 * np.float32(l2)) * param
        if loss is not None:
            w = param.astype(np.float64)
            pen = np.float64(np.float32(l1)) * np.abs(w).sum() + np.float64(np.float32(l2)) * (w * w).sum()
            loss.reshape(-1)[0] = np.float32(np.float64(loss.reshape(-1)[0]) + pen)

    def sgd_update(self, param, grad, velocity, learning_rate, momentum, nesterov):
        lr, mu = np.float32(learning_rate), np.float32(momentum)
        if momentum == 0 or velocity is None:
            param -= lr * grad
            return
        velocity[...] = mu * velocity - lr * grad
        if nesterov:
            param += mu * velocity - lr * grad
        else:
            param += velocity

    def adam_update(self, param, grad, m, v, learning_rate, beta_1, beta_2, epsilon, step):
        alpha = adam_alpha(learning_rate, beta_1, beta_2, step)
        m += (grad - m) * np.float32(1 - np.float32(beta_1))
        v += (grad * grad - v) * np.float32(1 - np.float32(beta_2))
        param -= (m * alpha) / (np.sqrt(v) + np.float32(epsilon))

    def sum_squares(self, x):
        x64 = x.astype(np.float64).reshape(-1)
        return float(np.dot(x64, x64))

    def optimizer_update(self, kind, flags, step_params, param, grad, s1, s2, s3, ema, sumsq):
        optimizer_update_np(kind, flags, step_params, param, grad, s1, s2, s3, ema, sumsq)


def optimizer_update_np(kind, flags, p, w, grad, s1, s2, s3, ema, sumsq):
    """fusednn/optim_update.h in float32 NumPy: the same operations in the same order."""
    p = np.asarray(p, dtype=np.float32)
    lr = p[P_LR]
    g = grad
    if flags & CLIP_VALUE:
        g = np.clip(g, -p[P_CLIP], p[P_CLIP])
    elif flags & CLIP_NORM:
        g = (g * p[P_CLIP]) / np.float32(clip_factor(flags, float(p[P_CLIP]), sumsq))
    elif flags & CLIP_GLOBAL:
        g = g * np.float32(clip_factor(flags, float(p[P_CLIP]), sumsq))
    wi = w.copy()
    if flags & WEIGHT_DECAY:
        wi = wi - wi * p[P_WD] * lr
    if kind == 0:  # sgd
        if flags & MOMENTUM:
            m = s1 * p[P_A] - g * lr
            s1[...] = m
            wi = wi + (m * p[P_A] - g * lr if flags & NESTEROV else m)
        else:
            wi = wi - g * lr
    elif kind == 1:  # adam
        m = s1 + (g - s1) * p[P_B]
        v = s2 + (g * g - s2) * p[P_C]
        s1[...] = m
        s2[...] = v
        if flags & AMSGRAD:
            v = np.maximum(s3, v)
            s3[...] = v
        wi = wi - (m * p[P_A]) / (np.sqrt(v) + p[P_D])
    elif kind == 2:  # rmsprop
        vel = p[P_A] * s1 + p[P_B] * (g * g)
        s1[...] = vel
        if flags & CENTERED:
            ag = p[P_A] * s3 + p[P_B] * g
            s3[...] = ag
            den = (vel - ag * ag) + p[P_C]
        else:
            den = vel + p[P_C]
        inc = (lr * g) / np.sqrt(den)
        if flags & MOMENTUM:
            mo = p[P_D] * s2 + inc
            s2[...] = mo
            wi = wi - mo
        else:
            wi = wi - inc
    elif kind == 3:  # adagrad
        acc = s1 + g * g
        s1[...] = acc
        wi = wi - (lr * g) / np.sqrt(acc + p[P_A])
    elif kind == 4:  # adadelta
        ag = p[P_A] * s1 + p[P_B] * (g * g)
        s1[...] = ag
        delta = -((np.sqrt(s2 + p[P_C]) * g) / np.sqrt(ag + p[P_C]))
        s2[...] = p[P_A] * s2 + p[P_B] * (delta * delta)
        wi = wi + lr * delta
    elif kind == 5:  # adamax
        m = s1 + (g - s1) * p[P_A]
        u = np.maximum(p[P_B] * s2, np.abs(g))
        s1[...] = m
        s2[...] = u
        wi = wi - (lr * m) / (p[P_D] * (u + p[P_C]))
    elif kind == 6:  # nadam
        m = s1 + (g - s1) * p[P_A]
        v = s2 + (g * g - s2) * p[P_B]
        s1[...] = m
        s2[...] = v
        m_hat = (p[P_D] * m) / p[P_E] + (p[P_F] * g) / p[P_G]
        wi = wi - (m_hat * lr) / (np.sqrt(v / p[P_H]) + p[P_C])
    elif kind == 7:  # lion
        m = s1.copy()
        wi = wi - lr * np.sign(m * p[P_A] + g * p[P_B])
        s1[...] = m * p[P_C] + g * p[P_D]
    else:
        raise ValueError(f"unknown optimizer kind {kind}")
    w[...] = wi
    if flags & EMA:
        a = p[P_EMA] * ema + p[P_EMA1] * wi
        ema[...] = a
        if p[P_EMA_OW] != 0:
            w[...] = a
