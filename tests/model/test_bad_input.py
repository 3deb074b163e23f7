"""Bad input to the model API raises a clear exception at the boundary, and
nothing is trained on it."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras


@pytest.fixture
def model(backend_name):
    m = keras.Sequential([keras.layers.Dense(4, activation="relu", input_shape=(3,)), keras.layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    return m


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((20, 3)), rng.standard_normal((20, 1))


def unchanged(model, before):
    return all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


def test_sample_count_mismatch(model, data):
    x, y = data
    with pytest.raises(ValueError, match="same number of samples: x has 20, y has 19"):
        model.fit(x, y[:19], verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.evaluate(x[:5], y, verbose=0)


def test_feature_count_differs_from_input_shape(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"x has 5 features per sample but the model expects 3 \(input_shape=\(3,\)\)"):
        model.fit(np.ones((20, 5)), y, verbose=0)
    with pytest.raises(ValueError, match="expects 3"):
        model.predict(np.ones((2, 4)), verbose=0)
    with pytest.raises(ValueError, match=r"must have shape \(samples, 3\), got \(2, 3, 1\)"):
        model.predict(np.ones((2, 3, 1)), verbose=0)
    with pytest.raises(ValueError, match=r"must have shape \(samples, 3\), got \(20,\)"):
        model.fit(np.ones(20), y, verbose=0)


def test_1d_targets_accepted_for_one_output(model, data):
    x, y = data
    before = model.get_weights()
    loss_col = model.evaluate(x, y, verbose=0)
    assert model.evaluate(x, y.ravel(), verbose=0) == loss_col
    model.fit(x, y.ravel(), epochs=1, verbose=0)
    assert not unchanged(model, before)


def test_wrong_target_width(model, data):
    x, _ = data
    with pytest.raises(ValueError, match=r"y has shape \(20, 2\) but the model's output has shape \(20, 1\)"):
        model.fit(x, np.ones((20, 2)), verbose=0)
    two = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    two.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"y has shape \(20,\)"):
        two.fit(x, np.ones(20), verbose=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
@pytest.mark.parametrize("which", ["x", "y"])
def test_non_finite_data_named_with_first_row(model, data, bad, which):
    x, y = (a.copy() for a in data)
    (x if which == "x" else y)[7, 0] = bad
    (x if which == "x" else y)[12, 0] = bad
    before = model.get_weights()
    with pytest.raises(ValueError, match=rf"^{which} contains NaN or Inf \(first in row 7"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=rf"^{which} contains NaN or Inf"):
        model.evaluate(x, y, verbose=0)
    assert unchanged(model, before)


def test_non_finite_validation_data(model, data):
    x, y = data
    xv = x[:4].copy()
    xv[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"validation_data x contains NaN or Inf \(first in row 2"):
        model.fit(x, y, validation_data=(xv, y[:4]), verbose=0)
    with pytest.raises(ValueError, match="pair"):
        model.fit(x, y, validation_data=(x, y, y, y), verbose=0)


def test_fit_and_evaluate_before_compile(backend_name, data):
    x, y = data
    m = keras.Sequential([keras.layers.Dense(1, input_shape=(3,))])
    with pytest.raises(RuntimeError, match=r"compile\(optimizer=..., loss=...\) before fit\(\)"):
        m.fit(x, y)
    with pytest.raises(RuntimeError, match=r"before evaluate\(\)"):
        m.evaluate(x, y)
    assert m.predict(x, verbose=0).shape == (20, 1)  # predict needs no compile, as in Keras


def test_unknown_names_list_the_valid_ones(model):
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprob'; valid: 'sgd', 'adam', 'adamw', 'rmsprop'"):
        model.compile(optimizer="rmsprob", loss="mse")
    with pytest.raises(ValueError, match="unknown loss 'maee'; valid: .*'mae', .*'mse'"):
        model.compile(optimizer="adam", loss="maee")
    with pytest.raises(ValueError, match="unknown activation 'geluu'; valid: .*gelu, .*relu, .*softmax"):
        keras.layers.Dense(2, activation="geluu")
    with pytest.raises(ValueError, match="unknown initializer 'lecun_normormal'; valid: .*lecun_normal, "):
        keras.layers.Dense(2, kernel_initializer="lecun_normormal")


@pytest.mark.parametrize("bs", [0, -3, 2.5, "32", True])
def test_bad_batch_size(model, data, bs):
    x, y = data
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        model.fit(x, y, batch_size=bs, verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(x, batch_size=bs, verbose=0)


def test_empty_x(model):
    with pytest.raises(ValueError, match=r"x is empty \(0 samples\)"):
        model.fit(np.empty((0, 3)), np.empty((0, 1)), verbose=0)
    with pytest.raises(ValueError, match="empty"):
        model.predict(np.empty((0, 3)), verbose=0)


@pytest.mark.parametrize("split", [-0.1, 1.0, 1.5])
def test_validation_split_outside_range(model, data, split):
    x, y = data
    with pytest.raises(ValueError, match=r"validation_split must be in \[0, 1\)"):
        model.fit(x, y, validation_split=split, verbose=0)


def test_validation_split_leaving_nothing(model, data):
    x, y = data
    with pytest.raises(ValueError, match="cannot be split"):
        model.fit(x[:1], y[:1], validation_split=0.5, verbose=0)


def test_non_numeric_input(model, data):
    _, y = data
    with pytest.raises(TypeError, match="dtype <U1"):
        model.fit(np.array([["a", "b", "c"]] * 20), y, verbose=0)
    with pytest.raises(ValueError, match="verbose"):
        model.fit(data[0], y, verbose=3)


def test_other_dtypes_are_converted_once(model):
    x = np.arange(30, dtype=np.int64).reshape(10, 3) % 4
    y = [[1.0]] * 10  # a list of lists
    model.fit(x, y, verbose=0)
    assert model.predict(x.astype(np.float16), verbose=0).dtype == np.float32


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="momentum"):
        keras.optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="beta_1"):
        keras.optimizers.Adam(beta_1=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        keras.optimizers.Adam(learning_rate=-1)
    with pytest.raises(ValueError, match="unknown metric 'roc_auc'; valid names"):
        keras.Sequential([keras.layers.Dense(1)]).compile(optimizer="adam", loss="mse", metrics=["roc_auc"])
    with pytest.raises(ValueError, match="distinct"):
        keras.Sequential([keras.layers.Dense(1)]).compile(optimizer="adam", loss="mse", metrics=["mae", "mae"])
    with pytest.raises(ValueError, match="Input must be the first"):
        keras.Sequential([keras.layers.Dense(1), keras.Input(shape=(3,))])
    with pytest.raises(ValueError, match="no layers"):
        fusednn.Sequential().predict(np.ones((2, 2)), verbose=0)
