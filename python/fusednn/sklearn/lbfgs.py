"""solver='lbfgs' for the scikit-learn estimators: scipy's L-BFGS-B over the full-batch
loss and gradient, computed by fusednn's kernels on the estimator's backend.

This follows scikit-learn's ``_fit_lbfgs``/``_backprop``: the parameters are packed as
all coefficient matrices (raveled, layer order) then all intercept vectors, scipy's
``minimize(method="L-BFGS-B", jac=True)`` runs with ``maxfun=max_fun``,
``maxiter=max_iter`` and ``gtol=tol``, and the objective is scikit-learn's:
the data loss (mean log-loss over samples, the binary one summed over outputs; half
the mean squared error for regression) plus ``0.5 * alpha * sum(W**2) / n`` (``n``
the sample count, or the sum of the sample weights), with the output-layer delta
``(p - y) / n`` (each row times its weight when weighted) — for several regression
outputs that delta is, as in scikit-learn, not the exact gradient of the reported
loss. The forward and backward products, the activations and the output
loss/delta run in the backend's float32 kernels; the penalty and the packing are
float64 on the host (scipy works in float64).
"""
from __future__ import annotations

from typing import Any

import numpy as np

_XENT = {"softmax": "categorical", "logistic": "binary"}


class LossGrad:
    """The objective ``f(packed) -> (loss, gradient)`` for ``scipy.optimize.minimize``
    over the estimator's current architecture, data ``X`` (float32, backend array),
    targets ``y`` (n, outputs) and optional sample weights; buffers are allocated once."""

    def __init__(self, est: Any, be: Any, X: Any, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        self.be = be
        self.X = X
        self.n = int(X.shape[0])
        self.shapes = [c.shape for c in est.coefs_]
        self.alpha = float(est.alpha)
        self.hidden = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}[est.activation]
        self.out = est.out_activation_
        self.k = int(y.shape[1])
        self.Y = be.asarray(np.ascontiguousarray(y, dtype=np.float32))
        self.sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.sw_sum = float(self.n if self.sw is None else self.sw.sum())
        if self.sw is not None:  # each row's delta times n * w_i / sum(w): the kernels divide by n
            self.row_scale = be.asarray((self.sw * (self.n / self.sw_sum)).reshape(-1, 1).astype(np.float32))
        units = [s[1] for s in self.shapes]
        self.A = [be.empty((self.n, u)) for u in units]  # layer outputs (the last: logits / predictions)
        self.D = [be.empty((self.n, u)) for u in units]  # deltas (gradient w.r.t. each pre-activation)
        self.dW = [be.empty(s) for s in self.shapes]
        self.db = [be.empty((s[1],)) for s in self.shapes]
        self.n_coef = sum(a * b for a, b in self.shapes)

    def unpack(self, packed: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(coefs, intercepts) as float64 views of ``packed`` (scikit-learn's layout)."""
        coefs, intercepts, start = [], [], 0
        for a, b in self.shapes:
            coefs.append(packed[start:start + a * b].reshape(a, b))
            start += a * b
        for _, b in self.shapes:
            intercepts.append(packed[start:start + b])
            start += b
        return coefs, intercepts

    def _data_loss(self, last: Any) -> float:
        """The output loss (scikit-learn's value) with the delta (p - y)/n written to D[-1]."""
        be, G = self.be, self.D[-1]
        if self.sw is None:
            if self.out == "identity":
                be.mse_grad(last, self.Y, G, 1.0 / self.n)
                return 0.5 * float(be.mse(last, self.Y))
            value = float(be.xent(_XENT[self.out], last, self.Y, grad=G, scale=1.0 / self.n))
            return value * self.k if self.out == "logistic" else value  # binary: summed over outputs
        # weighted: the deltas from the kernels, rows scaled; the loss as a weighted average
        xp = be.xp
        if self.out == "identity":
            be.mse_grad(last, self.Y, G, 1.0 / self.n)
            per_row = 0.5 * xp.mean((last.astype(np.float64) - self.Y) ** 2, axis=1)
        else:
            be.xent(_XENT[self.out], last, self.Y, grad=G, scale=1.0 / self.n)
            z = last.astype(np.float64)
            if self.out == "softmax":
                m = z.max(axis=1, keepdims=True)
                lse = m + xp.log(xp.exp(z - m).sum(axis=1, keepdims=True))
                per_row = (self.Y * (lse - z)).sum(axis=1)
            else:  # log(1 + e^-|z|) + max(z, 0) - z y, summed over the outputs
                per_row = (xp.maximum(z, 0) - z * self.Y + xp.log1p(xp.exp(-xp.abs(z)))).sum(axis=1)
        G *= self.row_scale
        return float(np.dot(be.to_numpy(per_row), self.sw) / self.sw_sum)

    def __call__(self, packed: np.ndarray) -> tuple[float, np.ndarray]:
        be = self.be
        coefs64, intercepts64 = self.unpack(packed)
        W = [be.asarray(c) for c in coefs64]
        b = [be.asarray(i) for i in intercepts64]
        L = len(W)
        a_prev = self.X
        for i in range(L):  # forward: the output layer linear (the loss kernels take logits)
            act = "linear" if i == L - 1 else self.hidden
            be.matmul(a_prev, W[i], self.A[i], bias=b[i], activation=act)
            a_prev = self.A[i]
        loss = self._data_loss(self.A[-1])
        for i in range(L - 1, -1, -1):  # backward
            a_in = self.X if i == 0 else self.A[i - 1]
            be.matmul(a_in, self.D[i], self.dW[i], transpose_a=True)
            be.sum_rows(self.D[i], self.db[i])
            if i > 0:
                be.matmul(self.D[i], W[i], self.D[i - 1], transpose_b=True)
                if self.hidden != "linear":  # relu/sigmoid/tanh: the derivative from the output
                    be.act_backward(self.D[i - 1], self.A[i - 1], self.D[i - 1], self.hidden)
        penalty = sum(float(np.dot(c.ravel(), c.ravel())) for c in coefs64)
        loss += 0.5 * self.alpha * penalty / self.sw_sum
        grad = np.empty_like(packed)
        start = 0
        for i, (r, c) in enumerate(self.shapes):
            g = be.to_numpy(self.dW[i]).astype(np.float64).ravel()
            grad[start:start + r * c] = g + (self.alpha / self.sw_sum) * coefs64[i].ravel()
            start += r * c
        for i in range(L):
            grad[start:start + self.shapes[i][1]] = be.to_numpy(self.db[i])
            start += self.shapes[i][1]
        return loss, grad


def fit_lbfgs(est: Any, be: Any, X: Any, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
    """Run scikit-learn's L-BFGS fit of ``est`` (coefs_/intercepts_ set, updated in
    place in X's dtype; n_iter_ and loss_ set; a ConvergenceWarning as scikit-learn's
    when scipy stops without converging)."""
    import scipy.optimize
    from sklearn.utils.optimize import _check_optimize_result

    try:  # scipy version compatibility of the iprint option, as scikit-learn passes it
        from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    except ImportError:  # pragma: no cover - older scikit-learn
        def _get_additional_lbfgs_options_dict(key: str, value: Any) -> dict:
            return {key: value}
    f = LossGrad(est, be, X, y, sample_weight)
    dtype = est.coefs_[0].dtype
    packed = np.hstack([c.ravel() for c in est.coefs_] + [i.ravel() for i in est.intercepts_]).astype(np.float64)
    iprint = 1 if (est.verbose is True or est.verbose >= 1) else -1
    res = scipy.optimize.minimize(f, packed, method="L-BFGS-B", jac=True,
                                  options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol,
                                           **_get_additional_lbfgs_options_dict("iprint", iprint)})
    est.n_iter_ = _check_optimize_result("lbfgs", res, est.max_iter)
    est.loss_ = float(res.fun)
    coefs, intercepts = f.unpack(np.asarray(res.x, dtype=np.float64))
    est.coefs_ = [c.astype(dtype) for c in coefs]
    est.intercepts_ = [i.astype(dtype) for i in intercepts]
