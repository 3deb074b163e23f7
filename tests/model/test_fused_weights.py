"""The fused trainer's sample weights (row_scale) and per-step penalty scale against
a float64 reference: the step's loss is the weighted mean of the rows' losses and the
update follows the gradient of that loss (checked by finite differences)."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras, regularizers
from fusednn.training import fused

from helpers import numeric_grad, replica_data

pytestmark = pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")


def _rows_loss(z: np.ndarray, t: np.ndarray, kind: str) -> np.ndarray:
    if kind == "mse":
        return ((z - t) ** 2).mean(axis=1)
    if kind == "binary":
        return (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean(axis=1)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    if kind == "sparse":
        return lse - z[np.arange(len(z)), t[:, 0].astype(int)]
    return (t * (lse[:, None] - z)).sum(1)


LOSSES = {"mse": ("mse", None), "binary": ("binary_crossentropy", "sigmoid"),
          "categorical": ("categorical_crossentropy", "softmax"), "sparse": ("sparse_categorical_crossentropy", "softmax")}


@pytest.mark.parametrize("kind", list(LOSSES))
def test_weighted_step_loss_and_gradient(kind):
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        rng = np.random.default_rng(0)
        n, d, k = 13, 5, 3
        x, t = replica_data(kind, n, d, k, rng)  # (rng's stream continues below)
        loss, act = LOSSES[kind]
        l2 = 0.3
        model = keras.Sequential([keras.Input(shape=(d,)),
                                  keras.layers.Dense(k, activation=act, kernel_regularizer=regularizers.L2(l2))])
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss)
        w0, b0 = [a.astype(np.float64) for a in model.get_weights()]
        scale = rng.uniform(0, 2, n).astype(np.float32)
        pscale = np.array([0.7], np.float32)
        tr = fused.trainer_for(model, n)
        losses = np.zeros(1, np.float32)
        order = np.arange(n, dtype=np.int64)
        tr.epoch(model, x, t, order, losses, 1, None, False,
                 weights={"row_scale": scale, "penalty_scale": pscale})
        w1, b1 = [a.astype(np.float64) for a in model.get_weights()]

        def total(W, b=b0):
            z = x.astype(np.float64) @ W + b
            return float((scale * _rows_loss(z, t.astype(np.float64), kind)).mean() + pscale[0] * l2 * (W ** 2).sum())

        assert losses[0] == pytest.approx(total(w0), rel=1e-5)
        # SGD with learning rate 1: the update is minus the gradient
        np.testing.assert_allclose(w0 - w1, numeric_grad(total, w0.copy()), rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(b0 - b1, numeric_grad(lambda b: total(w0, b), b0.copy()), rtol=1e-3, atol=1e-5)
    finally:
        fusednn.set_backend(prev)


def test_bad_weight_shapes_are_rejected():
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        model = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        tr = fused.trainer_for(model, 4)
        x, y = np.zeros((8, 2), np.float32), np.zeros((8, 1), np.float32)
        args = (model, x, y, np.arange(8, dtype=np.int64), np.zeros(2, np.float32), 2, None, False)
        with pytest.raises(ValueError, match="row_scale must be 1-D with 8 entries"):
            tr.epoch(*args, weights={"row_scale": np.ones(7, np.float32)})
        with pytest.raises(ValueError, match="penalty_scale must be 1-D with at least 2 entries"):
            tr.epoch(*args, weights={"row_scale": None, "penalty_scale": np.ones(1, np.float32)})
    finally:
        fusednn.set_backend(prev)
