"""Sequential's public structure API: shapes, weights, gradients, pop (Keras names)."""
import numpy as np
import pytest

import fusednn
from fusednn.training import Trainer


def test_public_structure_and_pop():
    fusednn.set_random_seed(1)
    model = fusednn.Sequential([fusednn.Input((4,)), fusednn.Dense(5, activation="relu"), fusednn.Dense(2)])
    assert isinstance(model, Trainer)
    assert model.input_shape == (None, 4) and model.output_shape == (None, 2)
    assert model.backend is fusednn.get_backend()
    assert [tuple(w.shape) for w in model.weights] == [(4, 5), (5,), (5, 2), (2,)]
    assert [tuple(g.shape) for g in model.gradients] == [(4, 5), (5,), (5, 2), (2,)]
    assert model.output_activation == "linear"
    first = model.get_weights()[:2]
    last = model.pop()
    assert last.units == 2 and model.output_shape == (None, 5) and len(model.weights) == 2
    assert model.output_activation == "relu"
    for a, b in zip(model.get_weights(), first):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    ref = np.maximum(x.astype(np.float64) @ first[0] + first[1], 0)
    np.testing.assert_allclose(model.predict(x, verbose=0), ref, rtol=1e-5, atol=1e-5)
    model.pop()
    assert model.layers == [] and not model.built and model.output_shape is None
    assert model.input_shape == (None, 4)
    with pytest.raises(IndexError, match="no layers to pop"):
        model.pop()


def test_unbuilt_model_has_no_shapes():
    model = fusednn.Sequential([fusednn.Dense(3)])
    assert model.input_shape is None and model.output_shape is None and model.backend is None
    assert model.weights == []
