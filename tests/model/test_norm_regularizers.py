"""beta_regularizer / gamma_regularizer of BatchNormalization and LayerNormalization:
the penalty joins the reported loss and the gradient (per-op path), as in Keras."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras


def _model(layer_cls, **kw):
    keras.utils.set_random_seed(3)
    L = keras.layers
    m = keras.Sequential([L.Dense(6, input_shape=(4,)), layer_cls(**kw), L.Dense(1)])
    m.compile(keras.optimizers.SGD(0.1), "mse")
    return m


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("layer_cls", [keras.layers.BatchNormalization, keras.layers.LayerNormalization])
def test_penalty_in_loss_and_update(backend, layer_cls):
    prev = fusednn.get_backend().name
    fusednn.set_backend(backend)
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 4)).astype(np.float32)
        y = rng.normal(size=(16, 1)).astype(np.float32)
        plain = _model(layer_cls)
        reg = _model(layer_cls, gamma_regularizer=keras.regularizers.L2(0.5), beta_regularizer=keras.regularizers.L1(0.25))
        if backend == "cpu":
            assert plain.fused_reason is None
            assert reg.fused_reason is None  # the penalty is a fused step penalty (test_fused_step_penalties.py)
        # start gamma/beta away from their initial values so both penalties and their gradients are non-trivial
        norm_p, norm_r = plain.layers[1], reg.layers[1]
        gamma = rng.uniform(0.5, 1.5, size=6).astype(np.float32)
        beta = rng.normal(size=6).astype(np.float32)
        for layer in (norm_p, norm_r):
            w = layer.get_weights()
            layer.set_weights([gamma, beta, *w[2:]])
        penalty = 0.5 * float(np.sum(gamma.astype(np.float64) ** 2)) + 0.25 * float(np.sum(np.abs(beta.astype(np.float64))))
        lp = plain.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history["loss"][0]
        lr = reg.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history["loss"][0]
        assert lr == pytest.approx(lp + penalty, rel=1e-5)
        # one SGD step: gamma and beta moved by the penalties' gradients more than without them
        g_p, b_p = norm_p.get_weights()[:2]
        g_r, b_r = norm_r.get_weights()[:2]
        np.testing.assert_allclose(g_r, g_p - 0.1 * 2 * 0.5 * gamma, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b_r, b_p - 0.1 * 0.25 * np.sign(beta), rtol=1e-5, atol=1e-6)
    finally:
        fusednn.set_backend(prev)


@pytest.mark.parametrize("layer_cls", [keras.layers.BatchNormalization, keras.layers.LayerNormalization])
def test_config_round_trip(layer_cls, tmp_path):
    m = _model(layer_cls, gamma_regularizer="l2")
    cfg = m.layers[1].get_config()
    assert cfg["gamma_regularizer"]["class_name"] == "L2" and "beta_regularizer" not in cfg
    back = layer_cls.from_config(cfg)
    assert back.gamma_regularizer.l2 == pytest.approx(0.01) and back.beta_regularizer is None
    path = tmp_path / "m.npz"
    m.save(path)
    again = keras.models.load_model(path)
    assert again.layers[1].gamma_regularizer.l2 == pytest.approx(0.01)
