"""Sequential: training, evaluation, prediction and bookkeeping, on every backend,
against float64 NumPy references."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras

from model_refs import forward64, mse64, rel_diff


def seed_model():
    return keras.Sequential([
        keras.layers.Dense(64, activation="relu", input_shape=(10,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(1),
    ])


def seed_data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((1000, 10)), rng.random((1000, 1))


def small_model(acts=("tanh", "linear"), d=4, out=2, optimizer="sgd"):
    layers = [keras.layers.Dense(5, activation=acts[0], input_shape=(d,))]
    layers.append(keras.layers.Dense(out, activation=acts[1]))
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def test_seed_program_learns_below_variance(backend_name):
    fusednn.set_random_seed(0)
    x, y = seed_data()
    model = seed_model()
    model.compile(optimizer="adam", loss="mean_squared_error")
    history = model.fit(x, y, epochs=100, verbose=0)
    loss = model.evaluate(x, y, verbose=0)
    # better than the best constant predictor, whose loss is the variance of y
    assert history.history["loss"][-1] < 0.75 * y.var()
    assert loss < 0.75 * y.var()
    pred = model.predict(x[:100], verbose=0)
    assert pred.shape == (100, 1) and pred.dtype == np.float32 and isinstance(pred, np.ndarray)
    assert abs(loss - mse64(model.predict(x, verbose=0), y)) < 1e-5


def _train_5_epochs(backend):
    previous = fusednn.get_backend().name
    fusednn.set_backend(backend)
    try:
        fusednn.set_random_seed(42)
        x, y = seed_data(1)
        model = seed_model()
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, epochs=5, verbose=0)
        return model.get_weights()
    finally:
        fusednn.set_backend(previous)


def test_same_seed_same_trajectory_numpy_vs_cpu():
    if "cpu" not in fusednn.available_backends():
        pytest.skip("the cpu backend is not built")
    a, b = _train_5_epochs("numpy"), _train_5_epochs("cpu")
    assert max(rel_diff(wa, wb) for wa, wb in zip(a, b)) < 1e-4


def test_fit_in_pieces_equals_fit_at_once(backend_name):
    """Optimizer state (Adam moments, step count) carries over between fit calls."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((50, 4)), rng.standard_normal((50, 2))
    fusednn.set_random_seed(5)
    a = small_model(optimizer="adam")
    fusednn.set_random_seed(5)
    b = small_model(optimizer="adam")
    a.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for _ in range(3):
        b.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert a.optimizer.iterations == b.optimizer.iterations == 12
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_recompile_resets_optimizer_state(backend_name):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 4)), rng.standard_normal((40, 2))
    models = []
    for _ in range(2):
        fusednn.set_random_seed(6)
        models.append(small_model(optimizer=keras.optimizers.Adam(learning_rate=0.01)))
        models[-1].fit(x, y, batch_size=40, epochs=3, shuffle=False, verbose=0)
    model, twin = models
    fresh = small_model(optimizer=keras.optimizers.Adam(learning_rate=0.01))
    fresh.set_weights(model.get_weights())
    fresh.fit(x, y, batch_size=40, epochs=1, shuffle=False, verbose=0)
    model.compile(optimizer=model.optimizer, loss="mse")  # the same instance: its state is still reset
    assert model.optimizer.iterations == 0
    model.fit(x, y, batch_size=40, epochs=1, shuffle=False, verbose=0)
    twin.fit(x, y, batch_size=40, epochs=1, shuffle=False, verbose=0)  # 4th step with the state kept
    assert model.optimizer.iterations == 1 and twin.optimizer.iterations == 4
    for w, f, t in zip(model.get_weights(), fresh.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(w, f)
        assert rel_diff(w, t) > 1e-4  # the state mattered, so the check above could fail


def test_epoch_loss_is_sample_weighted_mean_of_batch_losses(host_backend_name):
    """With a learning rate of 0 the weights stay put, so Keras' epoch loss (batch
    losses weighted by batch size; here 32, 32, 32, 4) is the loss over all samples."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((100, 4)), rng.standard_normal((100, 2)) * np.arange(1, 101)[:, None] / 50
    model = small_model(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    history = model.fit(x, y, epochs=2, verbose=0)
    ref = mse64(forward64(model.get_weights(), ["tanh", "linear"], x), y)
    assert history.history["loss"] == pytest.approx([ref, ref], rel=1e-5)
    assert model.evaluate(x, y, batch_size=7, verbose=0) == pytest.approx(ref, rel=1e-5)
    assert len(model.last_step_losses) == 4


def test_history_and_validation_split_takes_last_fraction(backend_name):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((100, 4)), rng.standard_normal((100, 2))
    model = small_model(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    history = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "val_loss"} and history.epoch == [0, 1, 2]
    assert model.history is history
    w = model.get_weights()
    ref_train = mse64(forward64(w, ["tanh", "linear"], x[:75]), y[:75])
    ref_val = mse64(forward64(w, ["tanh", "linear"], x[75:]), y[75:])
    assert history.history["val_loss"] == pytest.approx([ref_val] * 3, rel=1e-5)
    assert history.history["loss"] == pytest.approx([ref_train] * 3, rel=1e-5)
    h2 = model.fit(x[:75], y[:75], epochs=1, validation_data=(x[75:], y[75:]), verbose=0)
    assert h2.history["val_loss"][0] == pytest.approx(ref_val, rel=1e-5)
    assert set(model.fit(x, y, verbose=0).history) == {"loss"}


def test_initial_epoch_and_training_reduces_loss(backend_name):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 4))
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    model = small_model(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9))
    start = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, batch_size=8, epochs=12, initial_epoch=2, verbose=0)
    assert history.epoch == list(range(2, 12))
    assert model.evaluate(x, y, verbose=0) < 0.7 * start


@pytest.mark.parametrize("n", [1, 70])
def test_predict_any_count_matches_float64(backend_name, n):
    rng = np.random.default_rng(7)
    model = small_model(acts=("relu", "sigmoid"))
    x = rng.standard_normal((n, 4))
    pred = model.predict(x, batch_size=32, verbose=0)
    assert pred.shape == (n, 2) and isinstance(pred, np.ndarray)
    assert rel_diff(pred, forward64(model.get_weights(), ["relu", "sigmoid"], x)) < 1e-5
    called = fusednn.get_backend().to_numpy(model(x))
    np.testing.assert_allclose(called, pred, rtol=1e-6, atol=1e-6)


def test_buffers_are_reused_across_steps_and_epochs(host_backend_name):
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((100, 4)), rng.standard_normal((100, 2))
    model = small_model(optimizer="adam")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    if model._fused is not None:  # the fused path: one trainer and its buffers, kept across fits
        trainer, xb = model._fused, model._fused.x_batch
        grads = [id(g) for g in model._grads]
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        assert model._fused is trainer and model._fused.x_batch is xb and model._workspaces == {}
        assert [id(g) for g in model._grads] == grads
        return
    assert sorted(model._workspaces) == [4, 32]  # full batches and the remainder
    bufs = {k: [id(b.y) for b in ws.layers] + [id(ws.dpred)] for k, ws in model._workspaces.items()}
    grads = [id(g) for g in model._grads]
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert {k: [id(b.y) for b in ws.layers] + [id(ws.dpred)] for k, ws in model._workspaces.items()} == bufs
    assert [id(g) for g in model._grads] == grads


def test_weights_roundtrip_and_count_params(backend_name):
    model = seed_model()
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(10, 64), (64,), (64, 64), (64,), (64, 1), (1,)]
    assert model.count_params() == 10 * 64 + 64 + 64 * 64 + 64 + 64 + 1
    new = [np.full(s, i, dtype=np.float32) for i, s in enumerate(shapes)]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    got = model.get_weights()
    got[0][...] = 99  # a copy, not a view of the weights
    assert model.get_weights()[0][0, 0] == 0


def test_set_weights_checks_everything_before_writing(backend_name):
    model = small_model()
    before = model.get_weights()
    bad = [np.ones(w.shape) for w in before]
    bad[-1] = np.ones(3)
    with pytest.raises(ValueError, match=r"array 3 .* must have shape \(2,\), got \(3,\)"):
        model.set_weights(bad)
    with pytest.raises(ValueError, match="4 weight arrays, got 3"):
        model.set_weights(bad[:3])
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_summary_lists_layers_shapes_and_params(capsys):
    model = keras.Sequential([keras.Input(shape=(10,)), keras.layers.Dense(4, activation="relu", name="hidden"),
                              keras.layers.Activation("tanh", name="squash"), keras.layers.Dense(1, name="out")],
                             name="regressor")
    model.summary()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert 'Model: "regressor"' in lines[0]
    row = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in ("hidden", "squash", "out")}
    assert "(Dense)" in row["hidden"] and "(None, 4)" in row["hidden"] and row["hidden"].split()[-1] == "44"
    assert "(Activation)" in row["squash"] and "(None, 4)" in row["squash"] and row["squash"].split()[-1] == "0"
    assert "(None, 1)" in row["out"] and row["out"].split()[-1] == "5"
    assert "Total params: 49" in out


def test_lazy_build_from_first_data(backend_name):
    model = keras.Sequential()
    model.add(keras.layers.Dense(3, activation="tanh"))
    model.add(keras.layers.Dense(1))
    assert not model.built
    with pytest.raises(ValueError, match="not built"):
        model.summary()
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(9).standard_normal((20, 6))
    model.fit(x, x[:, 0], epochs=1, verbose=0)
    assert model.built and model.get_weights()[0].shape == (6, 3)


def test_fusednn_and_keras_namespaces_export_the_same_classes():
    from fusednn.keras.layers import Dense

    assert keras.Sequential is fusednn.Sequential and Dense is fusednn.Dense
    assert keras.layers.Input is fusednn.Input and keras.Input is fusednn.Input
    assert keras.optimizers.Adam is fusednn.Adam and keras.optimizers.SGD is fusednn.SGD
    assert keras.losses.MeanSquaredError is fusednn.MeanSquaredError
    assert keras.callbacks.EarlyStopping is fusednn.EarlyStopping
    assert keras.utils.set_random_seed is fusednn.set_random_seed
    opt = keras.optimizers.Adam()
    assert (opt.learning_rate, opt.beta_1, opt.beta_2, opt.epsilon) == (1e-3, 0.9, 0.999, 1e-7)
    assert keras.optimizers.SGD().learning_rate == 0.01


def test_mse_loss_object_matches_float64(backend_name):
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    assert keras.losses.MeanSquaredError()(a, b) == pytest.approx(mse64(b, a), rel=1e-6)
