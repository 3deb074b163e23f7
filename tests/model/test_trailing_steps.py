"""Layer steps after the last Dense (``Dense(3), Activation('softmax')``, ``Dense(1),
BatchNormalization(), LeakyReLU()``, a functional model ending with an Activation): the
fused cpu trainer computes the loss on the output of the last block's steps, and leaves
out a softmax/sigmoid Activation that the cross-entropy takes into itself, as the per-op
path does. Fused == per-op bit for bit (the same kernels in the same order), and the
numpy backend to float32 rounding."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras

from helpers import assert_close_to_numpy_backend, fit_twice, on_backend

L = keras.layers
needs_cpu = pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")

RNG = np.random.default_rng(3)
X = RNG.normal(size=(75, 5)).astype(np.float32)  # 75 rows: a short last batch of 11 at batch 16
Y_BIN = (X[:, :1] + 0.3 * X[:, 1:2] > 0).astype(np.float32)
Y_CLS = RNG.integers(0, 3, 75)
Y_REG = (X @ RNG.normal(size=(5, 2))).astype(np.float32)


def _seq(tail):
    return lambda: keras.Sequential([keras.Input((5,)), L.Dense(8, activation="relu"), *tail()])


CASES = {
    "softmax-xent": (_seq(lambda: [L.Dense(3), L.Activation("softmax")]), "sparse_categorical_crossentropy", Y_CLS),
    "sigmoid-bxent": (_seq(lambda: [L.Dense(1), L.Activation("sigmoid")]), "binary_crossentropy", Y_BIN),
    "sigmoid-mse": (_seq(lambda: [L.Dense(1), L.Activation("sigmoid")]), "mse", Y_BIN),
    "dropout-softmax": (_seq(lambda: [L.Dense(3), L.Dropout(0.3, seed=4), L.Activation("softmax")]),
                        "sparse_categorical_crossentropy", Y_CLS),
    # (no bias before the batch-norm: its gradient is zero in exact arithmetic, and Adam would
    # turn the rounding noise into lr-sized steps that differ between backends)
    "bn-leaky": (_seq(lambda: [L.Dense(2, use_bias=False), L.BatchNormalization(), L.LeakyReLU(0.1)]), "mse", Y_REG),
    "relu-dense-act": (_seq(lambda: [L.Dense(3, activation="tanh"), L.Activation("softmax")]),
                       "sparse_categorical_crossentropy", Y_CLS),
    "softmax-layer-kld": (_seq(lambda: [L.Dense(3), L.Softmax()]), "kl_divergence",
                          np.eye(3, dtype=np.float32)[Y_CLS]),
    # a Dense's own softmax, hidden or at an output that no cross-entropy folds: a row-softmax step
    "dense-softmax-hidden": (_seq(lambda: [L.Dense(4, activation="softmax"), L.Dense(2)]), "mse", Y_REG),
    "dense-softmax-kld": (_seq(lambda: [L.Dense(3, activation="softmax")]), "kl_divergence",
                          np.eye(3, dtype=np.float32)[Y_CLS]),
    "layernorm-huber": (_seq(lambda: [L.Dense(2), L.LayerNormalization()]), keras.losses.Huber(0.5), Y_REG),
}


def _functional():
    inp = keras.Input((5,))
    h = L.Dense(8, activation="relu")(inp)
    z = L.Concatenate()([h, L.Dense(2)(h)])
    return keras.Model(inp, L.Activation("sigmoid")(L.Dense(1)(z)))


CASES["functional-sigmoid"] = (_functional, "mse", Y_BIN)


@needs_cpu
@pytest.mark.parametrize("name", list(CASES))
def test_fused_equals_per_op(name):
    build, loss, y = CASES[name]
    reason, [(h_fused, w_fused), (h_op, w_op)] = fit_twice(build, loss, X, y)
    assert reason is None
    assert h_fused == h_op
    for a, b in zip(w_fused, w_op):
        np.testing.assert_array_equal(a, b)


@needs_cpu
@pytest.mark.parametrize("name", ["softmax-xent", "bn-leaky"])
def test_sample_weights_fused_equals_per_op(name):
    build, loss, y = CASES[name]
    sw = np.random.default_rng(1).uniform(0.1, 2.0, size=len(X))
    reason, [(h_fused, w_fused), (h_op, w_op)] = fit_twice(build, loss, X, y, sample_weight=sw)
    assert reason is None
    # the weights bit for bit; the reported weighted epoch loss is summed in another order
    # by the two paths (as for a model ending with its Dense), so to float32 rounding
    for key in h_op:
        np.testing.assert_allclose(h_fused[key], h_op[key], rtol=1e-6)
    for a, b in zip(w_fused, w_op):
        np.testing.assert_array_equal(a, b)


@needs_cpu
@pytest.mark.parametrize("name", ["softmax-xent", "sigmoid-mse", "bn-leaky"])
def test_cpu_matches_numpy_backend(name):
    build, loss, y = CASES[name]
    assert_close_to_numpy_backend(build, loss, X, y)


@needs_cpu
def test_trailing_softmax_predicts_probabilities():
    """The folded softmax is left out of training only: predict still applies it."""
    build, loss, y = CASES["softmax-xent"]
    with on_backend("cpu"):
        keras.utils.set_random_seed(0)
        model = build()
        model.compile("adam", loss)
        model.fit(X, y, epochs=1, verbose=0)
        assert model.fused_reason is None
        p = model.predict(X, verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert (p >= 0).all()
