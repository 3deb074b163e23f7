"""PReLU: forward against the float64 formula, the input and alpha gradients against
finite differences, shared alpha, its regularizer and constraint, training on the
per-op path (the fused path declines it by name), config and save/load."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras

from helpers import numeric_grad


def _x(seed=0, shape=(7, 5)):
    x = np.random.default_rng(seed).standard_normal(shape)
    x[np.abs(x) < 1e-2] = 0.5  # keep away from the kink at 0 for the finite differences
    return x


@pytest.mark.parametrize("shared", [None, [1], -1])
def test_forward_and_gradients(host_backend_name, shared):
    x = _x()
    layer = keras.layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.1, 0.4, seed=2),
                               shared_axes=shared)
    layer.build(5)
    be = layer.backend
    alpha = layer.get_weights()[0].astype(np.float64)
    assert alpha.shape == ((1,) if shared is not None else (5,))

    def f(xv, av):
        return np.where(xv > 0, xv, av * xv)

    buf = layer.make_buffers(7)
    y = be.to_numpy(layer.forward(be.asarray(x.astype(np.float32)), buf))
    np.testing.assert_allclose(y, f(x, alpha), rtol=1e-6, atol=1e-7)
    dy = np.random.default_rng(1).standard_normal((7, 5))
    dx = be.to_numpy(layer.backward(be.asarray(dy.astype(np.float32)), buf, True))
    dalpha = be.to_numpy(layer.grads[0]).astype(np.float64)
    np.testing.assert_allclose(dx, numeric_grad(lambda v: float((f(v, alpha) * dy).sum()), x.copy()),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dalpha, numeric_grad(lambda a: float((f(x, a) * dy).sum()), alpha.copy()),
                               rtol=1e-4, atol=1e-5)


def test_keras_defaults_name_and_config():
    fusednn.keras_backend.clear_session()
    layer = keras.layers.PReLU()
    assert layer.name == "p_re_lu"  # Keras' to_snake_case
    cfg = layer.get_config()
    assert cfg == {"name": "p_re_lu", "alpha_initializer": {"class_name": "Zeros", "config": {}},
                   "alpha_regularizer": None, "alpha_constraint": None, "shared_axes": None}
    layer.build(3)
    np.testing.assert_array_equal(layer.get_weights()[0], np.zeros(3, np.float32))
    back = keras.layers.PReLU.from_config(keras.layers.PReLU(alpha_regularizer="l2", alpha_constraint="non_neg",
                                                             shared_axes=1).get_config())
    assert back.shared_axes == [1] and back.alpha_regularizer.l2 == 0.01
    with pytest.raises(ValueError, match="shared_axes"):
        keras.layers.PReLU(shared_axes=[2])


def _model(fused="auto", **kw):
    fusednn.utils.set_random_seed(1)
    m = keras.Sequential([keras.layers.Dense(8, input_shape=(4,)), keras.layers.PReLU(**kw), keras.layers.Dense(1)])
    m.compile(keras.optimizers.Adam(0.05), "mse", fused=fused)
    return m


def test_trains_per_op_with_regularizer_and_constraint(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 4))
    y = np.maximum(x @ rng.standard_normal((4, 1)), 0) - 0.3 * np.maximum(-x[:, :1], 0)
    m = _model(alpha_initializer=keras.initializers.Constant(0.25), alpha_constraint=keras.constraints.MaxNorm(0.5))
    assert "PReLU" in m.fused_reason
    h = m.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    alpha = m.layers[1].get_weights()[0]
    assert not np.allclose(alpha, 0.25)  # alpha learned
    assert np.linalg.norm(alpha.astype(np.float64)) <= 0.5 * (1 + 1e-6)
    # the regularizer's penalty is part of the loss evaluate reports
    r = _model(alpha_initializer=keras.initializers.Constant(0.5), alpha_regularizer=keras.regularizers.L2(0.1))
    plain = _model(alpha_initializer=keras.initializers.Constant(0.5))
    diff = r.evaluate(x, y, verbose=0) - plain.evaluate(x, y, verbose=0)
    assert diff == pytest.approx(0.1 * 8 * 0.25, rel=1e-5)
    path = tmp_path / "p.npz"
    m.save(str(path))
    back = fusednn.load_model(str(path))
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
