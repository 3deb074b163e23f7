"""fit/evaluate options with Keras semantics: sample_weight and class_weight (loss
sum(w_i l_i) / batch, against a float64 SGD reference), validation triples,
validation_freq, validation_batch_size, evaluate(sample_weight, return_dict)."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import keras

from model_refs import forward64


def linear_model(lr=0.05, seed=0):
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.layers.Dense(1, input_shape=(3,))])
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    return m


def data(n=37, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 1)), rng.uniform(0.0, 2.0, n)


def sgd_reference(W, b, x, y, w, lr, batch):
    """Keras' weighted MSE step in float64: batch loss sum(w_i (p_i - y_i)^2) / B."""
    W, b = W.astype(np.float64).copy(), b.astype(np.float64).copy()
    losses, sizes = [], []
    for lo in range(0, len(x), batch):
        xb, yb, wb = x[lo:lo + batch], y[lo:lo + batch], w[lo:lo + batch]
        r = xb @ W + b - yb
        losses.append(float(np.sum(wb[:, None] * r * r) / len(xb)))
        sizes.append(len(xb))
        g = 2.0 * wb[:, None] * r / len(xb)
        W -= lr * xb.T @ g
        b -= lr * g.sum(axis=0)
    return W, b, float(np.dot(losses, sizes) / len(x))


def test_sample_weight_matches_float64_reference(backend_name):
    x, y, w = data()
    m = linear_model()
    m.build((None, 3))
    W0, b0 = m.get_weights()
    h = m.fit(x, y, batch_size=8, epochs=1, shuffle=False, sample_weight=w, verbose=0)
    W, b, loss = sgd_reference(W0, b0, x, y, w, 0.05, 8)
    W1, b1 = m.get_weights()
    np.testing.assert_allclose(W1, W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b1, b, rtol=1e-5, atol=1e-6)
    assert h.history["loss"][0] == pytest.approx(loss, rel=1e-5)
    # evaluate: sum(w_i l_i) / n over all samples, any batch size
    p = forward64(m.get_weights(), ["linear"], x)
    want = float(np.sum(w * ((p - y) ** 2)[:, 0]) / len(x))
    assert m.evaluate(x, y, batch_size=5, sample_weight=w, verbose=0) == pytest.approx(want, rel=1e-5)
    assert m.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True) == {"loss": pytest.approx(want, rel=1e-5)}


def test_class_weight_is_per_sample_weight_by_label(backend_name):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 3))
    labels = rng.integers(0, 3, 30)
    y = np.eye(3)[labels]

    def run(**kw):
        keras.utils.set_random_seed(3)
        m = keras.Sequential([keras.layers.Dense(5, activation="relu", input_shape=(3,)),
                              keras.layers.Dense(3, activation="softmax")])
        m.compile(optimizer="adam", loss="categorical_crossentropy")
        h = m.fit(x, y, batch_size=7, epochs=2, shuffle=False, verbose=0, **kw)
        return m.get_weights(), h.history["loss"]

    cw = {0: 0.5, 1: 2.0}  # class 2 missing: weight 1, as in Keras
    a_w, a_loss = run(class_weight=cw)
    b_w, b_loss = run(sample_weight=np.array([cw.get(c, 1.0) for c in labels]))
    c_w, c_loss = run()
    for a, b in zip(a_w, b_w):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a_loss, b_loss, rtol=1e-6)
    assert not np.allclose(a_loss, c_loss)
    # both multiply: sample_weight * class_weight
    d_w, _ = run(class_weight=cw, sample_weight=np.full(30, 2.0))
    e_w, _ = run(sample_weight=2.0 * np.array([cw.get(c, 1.0) for c in labels]))
    for a, b in zip(d_w, e_w):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_validation_triple_freq_and_batch_size(backend_name):
    x, y, w = data(40)
    m = linear_model()
    h = m.fit(x, y, batch_size=8, epochs=4, validation_data=(x[:10], y[:10], w[:10]), validation_freq=2,
              validation_batch_size=3, verbose=0)
    assert h.history["val_loss"][-1] == pytest.approx(
        m.evaluate(x[:10], y[:10], sample_weight=w[:10], verbose=0), rel=1e-6)
    assert len(h.history["loss"]) == 4 and len(h.history["val_loss"]) == 2
    h = m.fit(x, y, epochs=3, validation_data=(x, y), validation_freq=[1, 3], verbose=0)
    assert len(h.history["val_loss"]) == 2


def test_validation_split_splits_weights():
    x, y, w = data(40)
    m = linear_model()
    h = m.fit(x, y, epochs=1, validation_split=0.25, sample_weight=w, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(x[30:], y[30:], sample_weight=w[30:], verbose=0),
                                                     rel=1e-6)


@pytest.mark.parametrize("kw, err", [
    ({"sample_weight": np.ones(5)}, "one weight per sample"),
    ({"sample_weight": -np.ones(37)}, "non-negative"),
    ({"sample_weight": np.full(37, np.nan)}, "NaN"),
    ({"class_weight": [1, 2]}, "dict"),
    ({"validation_freq": 0}, "validation_freq"),
    ({"validation_data": (np.ones((2, 3)),)}, "pair"),
])
def test_bad_fit_options(kw, err):
    x, y, _ = data()
    m = linear_model()
    with pytest.raises((ValueError, TypeError), match=err):
        m.fit(x, y, verbose=0, **kw)


class Batches:
    """A keras.utils.PyDataset-like object over arrays (it records which batches were read)."""

    def __init__(self, x, y, batch, w=None):
        self.x, self.y, self.w, self.batch, self.read, self.ends = x, y, w, batch, [], 0

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i):
        self.read.append(i)
        s = slice(i * self.batch, (i + 1) * self.batch)
        return (self.x[s], self.y[s]) if self.w is None else (self.x[s], self.y[s], self.w[s])

    def on_epoch_end(self):
        self.ends += 1


def test_pydataset_and_generator_train_as_arrays(backend_name):
    """A PyDataset / generator of the same batches gives the same weights, history,
    evaluate and predict as the arrays (unshuffled), with sample weights in the batches."""
    x, y, w = data(37)
    m = linear_model()
    m.build((None, 3))
    w0 = m.get_weights()
    h_arr = m.fit(x, y, batch_size=8, epochs=2, shuffle=False, sample_weight=w, validation_data=(x, y, w),
                  verbose=0)
    want = m.get_weights()
    m.set_weights(w0)
    ds = Batches(x, y, 8, w)
    h_ds = m.fit(ds, epochs=2, shuffle=False, validation_data=Batches(x, y, 5, w), verbose=0)
    assert ds.ends == 2 and ds.read[1:6] == [0, 1, 2, 3, 4]  # (batch 0 is read once first, to build)
    for a, b in zip(m.get_weights(), want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(h_ds.history["loss"], h_arr.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(h_ds.history["val_loss"], h_arr.history["val_loss"], rtol=1e-5)
    m.set_weights(w0)

    def gen():
        while True:
            for lo in range(0, 37, 8):
                yield x[lo:lo + 8], y[lo:lo + 8], w[lo:lo + 8]

    m.fit(gen(), steps_per_epoch=5, epochs=2, verbose=0)
    for a, b in zip(m.get_weights(), want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert m.evaluate(Batches(x, y, 6), verbose=0) == pytest.approx(m.evaluate(x, y, verbose=0), rel=1e-5)
    np.testing.assert_allclose(m.predict(iter([x[:10], (x[10:],)]), verbose=0), m.predict(x, verbose=0),
                               rtol=1e-6)


def test_generator_running_out_stops_with_keras_warning():
    x, y, _ = data(20)
    m = linear_model()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(iter([(x[:10], y[:10])] * 5), steps_per_epoch=2, epochs=5, verbose=0)
    assert h.epoch == [0, 1, 2]  # the third epoch got one batch, then the input ended


def test_steps_per_epoch_on_arrays_continues_across_epochs(backend_name):
    """Keras 3: with steps_per_epoch, epochs continue through the data where the last
    stopped (a new pass starts when one is used up). 37 rows in batches of 8 = 5
    batches; 3 steps an epoch: epoch 0 = batches 0-2, epoch 1 = 3, 4, then 0 of a new pass."""
    x, y, w = data(37)
    m = linear_model()
    m.build((None, 3))
    w0 = m.get_weights()
    m.fit(x, y, batch_size=8, steps_per_epoch=3, epochs=2, shuffle=False, verbose=0)
    got = m.get_weights()
    W, b = w0
    ones = np.ones(37)
    for lo, hi in ((0, 24), (24, 37), (0, 8)):
        W, b, _ = sgd_reference(W, b, x[lo:hi], y[lo:hi], ones[lo:hi], 0.05, 8)
    np.testing.assert_allclose(got[0], W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], b, rtol=1e-5, atol=1e-6)
    # validation_steps: the first batches of the validation data (continuing likewise)
    h = m.fit(x, y, epochs=1, validation_data=(x, y), validation_steps=2, validation_batch_size=10, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(x[:20], y[:20], verbose=0), rel=1e-6)
    assert m.evaluate(x, y, batch_size=10, steps=2, verbose=0) == pytest.approx(
        m.evaluate(x[:20], y[:20], verbose=0), rel=1e-6)
    assert m.predict(x, steps=2, batch_size=10, verbose=0).shape == (20, 1)


def test_pydataset_shuffles_batch_order_and_takes_class_weight():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 3))
    y = (rng.random((40, 1)) > 0.5).astype(np.float64)
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Dense(1, activation="sigmoid", input_shape=(3,))])
    m.compile(optimizer="sgd", loss="binary_crossentropy")
    ds = Batches(x, y, 10)
    m.fit(ds, epochs=3, shuffle=True, verbose=0)
    epochs = [ds.read[1 + 4 * e:5 + 4 * e] for e in range(3)]
    assert all(sorted(e) == [0, 1, 2, 3] for e in epochs) and any(e != [0, 1, 2, 3] for e in epochs)
    # class_weight applies to a dataset's batches as to arrays
    w0 = m.get_weights()
    m.fit(Batches(x, y, 10), epochs=1, shuffle=False, class_weight={0: 0.2, 1: 3.0}, verbose=0)
    got = m.get_weights()
    m.set_weights(w0)
    m.fit(x, y, batch_size=10, epochs=1, shuffle=False, sample_weight=np.where(y[:, 0] > 0, 3.0, 0.2), verbose=0)
    for a, b in zip(got, m.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
