"""Keras 3's validation_split with class_weight and sample_weight: the split takes the
sample weights along (validation rows keep theirs), while class_weight weighs only the
training batches. Checked against a hand computation in float64: one full-batch SGD step
of a logistic model, its weighted training loss, and the validation loss after it."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import keras


def bce64(W, b, x, y):
    z = x @ W.astype(np.float64) + b.astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-z[:, 0]))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)), p


@pytest.mark.parametrize("with_sample_weight", [False, True])
def test_class_weight_weighs_training_rows_only(backend_name, with_sample_weight):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((40, 3))
    y = (rng.random(40) > 0.6).astype(np.float64)
    sw = rng.uniform(0.2, 2.0, 40) if with_sample_weight else np.ones(40)
    cw = {0: 1.0, 1: 4.0}
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Dense(1, activation="sigmoid", input_shape=(3,))])
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy")
    m.build((None, 3))
    W0, b0 = m.get_weights()
    h = m.fit(x, y, batch_size=30, epochs=1, shuffle=False, validation_split=0.25, class_weight=cw,
              sample_weight=sw if with_sample_weight else None, verbose=0)
    # training: rows 0-29, weight sample_weight * class_weight, one step on the whole split
    tw = sw[:30] * np.where(y[:30] > 0, 4.0, 1.0)
    losses, p = bce64(W0, b0, x[:30], y[:30])
    assert h.history["loss"][0] == pytest.approx(float(np.sum(tw * losses) / 30), rel=1e-5)
    g = (tw * (p - y[:30]))[:, None] / 30
    W = W0.astype(np.float64) - 0.1 * x[:30].T @ g
    b = b0.astype(np.float64) - 0.1 * g.sum(axis=0)
    W1, b1 = m.get_weights()
    np.testing.assert_allclose(W1, W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b1, b, rtol=1e-5, atol=1e-6)
    # validation: rows 30-39 with their sample weights only (no class weights)
    val_losses, _ = bce64(W1, b1, x[30:], y[30:])
    assert h.history["val_loss"][0] == pytest.approx(float(np.sum(sw[30:] * val_losses) / 10), rel=1e-5)
