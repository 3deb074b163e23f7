"""keras.utils.PyDataset (Keras 3's base class for datasets written in Python): its
constructor arguments and properties, num_batches, iteration, the on_epoch_begin /
on_epoch_end calls around every pass of fit / evaluate / predict, and training on it
equal to training on the same arrays."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import keras


class Rows(keras.utils.PyDataset):
    """Batches of `batch` rows of (x, y[, w]); records the hooks called, in order."""

    def __init__(self, x, y, batch, w=None, log=None, name="d", **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.w, self.batch = x, y, w, batch
        self.log, self.name = (log if log is not None else []), name

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i):
        s = slice(i * self.batch, (i + 1) * self.batch)
        return (self.x[s], self.y[s]) if self.w is None else (self.x[s], self.y[s], self.w[s])

    def on_epoch_begin(self):
        self.log.append((self.name, "begin"))

    def on_epoch_end(self):
        self.log.append((self.name, "end"))


class Counted(keras.utils.PyDataset):
    """Only num_batches (no __len__), as newer Keras code writes it."""

    def __init__(self, x, y):
        super().__init__(workers=4, use_multiprocessing=True, max_queue_size=3)
        self.x, self.y = x, y

    @property
    def num_batches(self):
        return 3

    def __getitem__(self, i):
        return self.x[i * 10:(i + 1) * 10], self.y[i * 10:(i + 1) * 10]


def data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    return x, x @ np.array([[0.5], [-1.0], [0.25]], np.float32) + 0.1, rng.uniform(0.5, 2.0, n)


def model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return m


def test_base_class_arguments_and_protocol():
    x, y, _ = data()
    d = Counted(x, y)
    assert isinstance(d, keras.utils.PyDataset)
    assert (d.workers, d.use_multiprocessing, d.max_queue_size, d.num_batches) == (4, True, 3, 3)
    assert [len(b[0]) for b in d] == [10, 10, 10]
    r = Rows(x, y, 8)
    assert (r.workers, r.use_multiprocessing, r.max_queue_size, r.num_batches) == (1, False, 10, 4)
    with pytest.raises(NotImplementedError):
        keras.utils.PyDataset()[0]

    class NoSuper(keras.utils.PyDataset):
        def __init__(self):
            pass

        def __len__(self):
            return 1

    with pytest.warns(UserWarning, match="super"):
        assert NoSuper().workers == 1


def test_epoch_hooks_wrap_every_pass(backend_name):
    x, y, _ = data()
    log = []
    m = model()
    m.fit(Rows(x, y, 8, log=log, name="train"), epochs=3, shuffle=False,
          validation_data=Rows(x, y, 10, log=log, name="val"), verbose=0)
    assert log == [("train", "begin"), ("train", "end"), ("val", "begin"), ("val", "end")] * 3
    log.clear()
    m.evaluate(Rows(x, y, 7, log=log), verbose=0)
    assert log == [("d", "begin"), ("d", "end")]
    log.clear()
    assert m.predict(Rows(x, y, 7, log=log), verbose=0).shape == (30, 1)
    assert log == [("d", "begin"), ("d", "end")]


def test_training_on_a_pydataset_equals_the_arrays(backend_name):
    x, y, w = data()
    a, b = model(), model()
    ha = a.fit(x, y, batch_size=8, epochs=2, shuffle=False, sample_weight=w, verbose=0)
    hb = b.fit(Rows(x, y, 8, w), epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(hb.history["loss"], ha.history["loss"], rtol=1e-5)
    for p, q in zip(b.get_weights(), a.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7)
    c = model()  # a dataset that has only num_batches
    c.fit(Counted(x, y), epochs=1, shuffle=False, verbose=0)
    d = model()
    d.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0)
    for p, q in zip(c.get_weights(), d.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7)
