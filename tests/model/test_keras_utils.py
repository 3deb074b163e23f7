"""keras.utils.to_categorical / normalize, set_random_seed covering every draw fusednn
makes, and keras.backend (clear_session resetting automatic names, floatx, epsilon)."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras


def test_to_categorical_shapes_and_values():
    y = keras.utils.to_categorical([0, 2, 1, 2])
    assert y.shape == (4, 3) and y.dtype == np.float64  # Keras 3's NumPy result is float64
    np.testing.assert_array_equal(y, np.eye(3)[[0, 2, 1, 2]])
    np.testing.assert_array_equal(keras.utils.to_categorical(np.array([[1], [0]]), 4), np.eye(4)[[1, 0]])
    assert keras.utils.to_categorical(np.zeros((2, 3), int), 5).shape == (2, 3, 5)
    assert keras.utils.to_categorical(np.array([[1], [2]])).shape == (2, 3)  # trailing 1 dropped
    assert keras.utils.to_categorical(3, num_classes=5).shape == (5,)
    np.testing.assert_array_equal(keras.utils.to_categorical(np.array([1.0, 0.0]), 2), [[0, 1], [1, 0]])
    assert keras.utils.to_categorical([True, False]).shape == (2, 2)


@pytest.mark.parametrize("labels,kw,match", [([0, 3], {"num_classes": 3}, "not below num_classes=3"),
                                             ([-1, 0], {}, ">= 0"),
                                             ([0.5, 1], {}, "whole numbers"),
                                             ([np.nan], {}, "whole numbers"),
                                             (["a"], {}, "numeric"),
                                             ([0, 1], {"num_classes": -2}, "positive integer"),
                                             ([], {}, "cannot infer")])
def test_to_categorical_bad_labels(labels, kw, match):
    with pytest.raises(ValueError, match=match):
        keras.utils.to_categorical(labels, **kw)


def test_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]])
    # rows divided by their L2 norm; a zero row stays zero (its norm counts as 1)
    np.testing.assert_allclose(keras.utils.normalize(x), [[0.6, 0.8], [0, 0], [2 ** -0.5, -(2 ** -0.5)]])
    np.testing.assert_allclose(keras.utils.normalize(x, order=1), [[3 / 7, 4 / 7], [0, 0], [0.5, -0.5]])
    col = keras.utils.normalize(x, axis=0)  # Keras 3 raises here (it expands the norm at the last axis)
    np.testing.assert_allclose(np.linalg.norm(col, axis=0), 1.0)
    assert keras.utils.normalize(np.array([1, 2, 2])).dtype == np.float64
    assert keras.utils.normalize(x.astype(np.float32)).dtype == np.float32
    assert keras.utils.normalize(x) is not x
    with pytest.raises(ValueError, match="at least one axis"):
        keras.utils.normalize(np.float64(2.0))


def _run(seed):
    """Initial weights, a dropout model's training (mask seeds, shuffling) and a
    GaussianNoise layer, all from the one global seed."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((40, 1))
    m = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(5, activation="relu"),
                          keras.layers.Dropout(0.3), keras.layers.GaussianNoise(0.1), keras.layers.Dense(1)])
    m.compile("sgd", "mse")
    w0 = m.get_weights()
    h = m.fit(x, y, epochs=2, batch_size=8, verbose=0, validation_split=0.25)
    return w0, m.get_weights(), h.history["loss"], np.random.random(), __import__("random").random()


def test_set_random_seed_reproduces_every_draw():
    a, b, c = _run(3), _run(3), _run(4)
    for wa, wb in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(wa, wb)
    assert a[2] == b[2] and a[3:] == b[3:]
    assert a[2] != c[2] and not np.array_equal(a[0][0], c[0][0])
    with pytest.raises(ValueError, match=">= 0"):
        keras.utils.set_random_seed(-1)


def test_clear_session_resets_names():
    keras.backend.clear_session()
    a = [keras.layers.Dense(1), keras.layers.Dense(1), keras.layers.LeakyReLU(), keras.Sequential()]
    assert [x.name for x in a] == ["dense", "dense_1", "leaky_re_lu", "sequential"]
    keras.backend.clear_session()
    assert keras.layers.Dense(1).name == "dense" and keras.Sequential().name == "sequential"


def test_backend_functions():
    kb = keras.backend
    assert kb.floatx() == "float32" and kb.epsilon() == 1e-7 and kb.image_data_format() == "channels_last"
    assert kb.backend() == "fusednn"
    kb.set_floatx("float32")
    with pytest.raises(ValueError, match="float32 only"):
        kb.set_floatx("float64")
    kb.set_epsilon(1e-5)
    try:
        assert kb.epsilon() == 1e-5
    finally:
        kb.set_epsilon(1e-7)
    with pytest.raises(ValueError, match="> 0"):
        kb.set_epsilon(0)
    import sys
    assert sys.modules["fusednn.keras.backend"] is kb and sys.modules["fusednn.keras.constraints"] is \
        fusednn.constraints


def test_set_random_seed_covers_unseeded_augmentation():
    from fusednn.preprocessing import GaussianNoise

    x = np.zeros((4, 3))
    keras.utils.set_random_seed(2)
    a = GaussianNoise(0.1)(x)
    keras.utils.set_random_seed(2)
    np.testing.assert_array_equal(GaussianNoise(0.1)(x), a)
    assert not np.array_equal(GaussianNoise(0.1)(x), a)


def test_pydataset_subclass_feeds_fit():
    class Data(keras.utils.PyDataset):
        def __init__(self, x, y, **kwargs):
            super().__init__(**kwargs)
            self.x, self.y, self.ends = x, y, 0

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return self.x[i * 10:(i + 1) * 10], self.y[i * 10:(i + 1) * 10]

        def on_epoch_end(self):
            self.ends += 1

    rng = np.random.default_rng(0)
    data = Data(rng.standard_normal((30, 2)), rng.standard_normal((30, 1)), workers=2)
    assert data.workers == 2 and not data.use_multiprocessing and data.max_queue_size == 10
    assert data.num_batches == 3
    m = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(1)])
    m.compile("sgd", "mse")
    h = m.fit(data, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2 and data.ends == 2
    with pytest.raises(NotImplementedError, match="__getitem__"):
        keras.utils.PyDataset()[0]
