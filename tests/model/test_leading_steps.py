"""Layer steps that do not follow a Dense block in the fused cpu trainer: steps on the input
(``Dropout``/``GaussianNoise``/``BatchNormalization``/``Activation`` before the first Dense
of a Sequential, a BatchNormalization on one input of a functional model) and steps on an
output that other layers read too (a branch inside a block). Each runs as an identity block
of fusednn/trainer.h (no W: its output is its input, then its steps). Fused == per-op bit for
bit, the numpy backend to float32 rounding, and a backend without graph blocks says why."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras

from helpers import assert_close_to_numpy_backend, fit_twice, on_backend

L = keras.layers
needs_cpu = pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")

RNG = np.random.default_rng(5)
X = RNG.normal(size=(75, 5)).astype(np.float32)  # a short last batch of 11 at batch 16
Y_REG = (X[:, :1] - 0.5 * X[:, 2:3]).astype(np.float32)
Y_CLS = RNG.integers(0, 3, 75)


def _seq(layers):
    return lambda: keras.Sequential([keras.Input((5,)), *layers()])


def _bn_on_input():
    inp = keras.Input((5,))
    return keras.Model(inp, L.Dense(1)(L.Dense(8, activation="relu")(L.BatchNormalization()(inp))))


def _branch_inside_block():
    # the Dense output is read by an Activation step and by another Dense: the step starts its
    # own block instead of joining the Dense's
    inp = keras.Input((5,))
    d = L.Dense(8)(inp)
    # (no bias on the Dense whose only path to the loss is through the batch-norm: its gradient is
    # zero in exact arithmetic, and Adam would turn rounding noise into lr-sized steps)
    z = L.Add()([L.Activation("relu")(d), L.Dense(8, use_bias=False)(d)])
    return keras.Model(inp, L.Dense(1)(L.BatchNormalization()(z)))


def _input_read_twice():
    # the model input feeds a Dropout (an identity block) and, unchanged, a Dense
    inp = keras.Input((5,))
    z = L.Concatenate()([L.Dropout(0.3, seed=7)(inp), L.Dense(4, activation="tanh")(inp)])
    return keras.Model(inp, L.Dense(1)(z))


CASES = {
    "dropout-first": (_seq(lambda: [L.Dropout(0.2, seed=1), L.Dense(8, activation="relu"), L.Dense(1)]), "mse", Y_REG),
    "bn-first": (_seq(lambda: [L.BatchNormalization(), L.Dense(8, activation="relu"), L.Dense(1)]), "mse", Y_REG),
    "noise-bn-first-softmax": (_seq(lambda: [L.GaussianNoise(0.1, seed=2), L.BatchNormalization(),
                                             L.Dense(8, activation="relu"), L.Dropout(0.1, seed=3), L.Dense(3),
                                             L.Activation("softmax")]), "sparse_categorical_crossentropy", Y_CLS),
    "activation-first": (_seq(lambda: [L.Activation("tanh"), L.Dense(8, activation="relu"), L.Dense(1)]), "mse",
                         Y_REG),
    "layernorm-first": (_seq(lambda: [L.LayerNormalization(), L.Dense(6), L.PReLU(), L.Dense(1)]), "mse", Y_REG),
    "normalization-then-dropout": (_seq(lambda: [L.Normalization(mean=0.5, variance=2.0), L.Dropout(0.25, seed=4),
                                                 L.Dense(8, activation="relu"), L.Dense(1)]), "mse", Y_REG),
    "graph-bn-on-input": (_bn_on_input, "mse", Y_REG),
    "graph-branch-inside-block": (_branch_inside_block, "mse", Y_REG),
    "graph-input-read-twice": (_input_read_twice, "mse", Y_REG),
}


def _equal(result):
    reason, [(h_fused, w_fused), (h_op, w_op)] = result
    assert reason is None
    assert h_fused == h_op
    for a, b in zip(w_fused, w_op):
        np.testing.assert_array_equal(a, b)


@needs_cpu
@pytest.mark.parametrize("name", list(CASES))
def test_fused_equals_per_op(name):
    build, loss, y = CASES[name]
    _equal(fit_twice(build, loss, X, y))


@needs_cpu
def test_batchnorm_on_one_of_two_inputs():
    """A BatchNormalization on the second of two model inputs: an identity block on a column
    slice of the packed batch."""
    def build():
        a, b = keras.Input((5,)), keras.Input((3,))
        z = L.Concatenate()([L.Dense(4, activation="relu")(a), L.BatchNormalization()(b)])
        return keras.Model([a, b], L.Dense(1)(z))

    _equal(fit_twice(build, "mse", [X, 2 * X[:, :3] + 1], Y_REG))


@needs_cpu
@pytest.mark.parametrize("name", ["bn-first", "graph-branch-inside-block"])
def test_cpu_matches_numpy_backend(name):
    build, loss, y = CASES[name]
    assert_close_to_numpy_backend(build, loss, X, y)


@needs_cpu
def test_backend_without_graph_blocks_says_why(monkeypatch):
    with on_backend("cpu"):
        model = CASES["bn-first"][0]()
        model.compile("adam", "mse")
        assert model.fused_reason is None
        monkeypatch.setattr(type(model.backend), "trainer_merges", False)
        assert "layers before the first Dense" in model.fused_reason
        steps_only = keras.Sequential([keras.Input((5,)), L.Dropout(0.1), L.BatchNormalization()])
        steps_only.compile("adam", "mse")
        assert "without a Dense" in steps_only.fused_reason


@needs_cpu
def test_binding_refuses_an_identity_block_without_one_source():
    with on_backend("cpu"):
        model = CASES["dropout-first"][0]()
        model.compile("adam", "mse")
        model.build((None, 5))
        from fusednn.training import fused

        trainer = fused.FusedTrainer(model, 16)
        specs = trainer.specs
        assert specs[0]["W"] is None and specs[0]["src"] == [-1] and specs[0]["merge"] == 0
        bad = [dict(specs[0], src=[-1, -1]), *specs[1:]]
        with pytest.raises(ValueError, match="bad src/merge"):
            model.backend.make_trainer(bad, model.optimizer.kernel_spec(), "mse", 16, 0.0)
