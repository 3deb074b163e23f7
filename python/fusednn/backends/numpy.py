"""The NumPy reference backend: every op in plain float32 NumPy.

It is what runs where the compiled extension could not be built, and the
reference the native backends are tested against, so it favours the obvious
formula over speed (but stays numerically stable).
"""
from __future__ import annotations

import numpy as np

from .base import Backend


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
                k = labels.astype(np.int64)
                bad = ~((labels >= 0) & (k == labels) & (k < z.shape[1]))
                k = np.where(bad, 0, k)
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
            t = target.reshape(-1).astype(np.int64)
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
