"""Layers users write as in Keras (``build``/``add_weight``/``call`` with keras.ops): a Dense-like
custom layer trains to the same weights as the built-in Dense (float32 rounding), its weights
are in get_weights/set_weights and saved files, get_config and the serializable registry work,
the per-op path is chosen with the reason named, and what is unsupported is refused by name."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import autodiff as ad
from fusednn import keras
from fusednn.keras import ops


@pytest.fixture(autouse=True)
def _seeded():
    """Deterministic initial weights: the comparisons with the built-in layers run at fixed points
    (a pre-activation within rounding of relu's kink could otherwise differ between the two paths)."""
    keras.utils.set_random_seed(1234)


@keras.saving.register_keras_serializable(package="tests")
class LinearLayer(keras.layers.Layer):
    """Dense without the kernel: what a Keras tutorial writes."""

    def __init__(self, units=8, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation_name = activation

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform",
                                 trainable=True, name="kernel")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True, name="bias")
        super().build(input_shape)  # the Keras 2 habit: harmless

    def call(self, inputs):
        y = ops.matmul(inputs, self.w) + self.b
        return keras.activations.get(self.activation_name)(y)  # the Keras guide's way; differentiable

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "activation": self.activation_name})
        return config


class ScaledTanh(keras.layers.Layer):
    """A per-feature scale (trainable), a non-trainable offset, training-dependent call."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(1, input_shape[-1]), initializer="ones", name="scale")
        self.offset = self.add_weight(shape=(), initializer="zeros", trainable=False, name="offset")

    def call(self, inputs, training=None):
        out = ops.tanh(inputs * self.scale) + self.offset
        return out * 0.5 if training else out


def _data(n=96, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (np.sin(x @ rng.standard_normal((d, 1))) + 0.1 * x[:, :1]).astype(np.float32)
    return x, y


def _pair(first_custom: bool, units=8, activation="relu"):
    first = LinearLayer(units, activation=activation) if first_custom else keras.layers.Dense(units, activation=activation)
    return keras.Sequential([keras.Input(shape=(5,)), first, keras.layers.Dense(1)])


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_custom_dense_trains_like_builtin_dense(activation, host_backend_name):
    x, y = _data()
    ref, mine = _pair(False, activation=activation), _pair(True, activation=activation)
    mine.set_weights(ref.get_weights())
    ref.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse", fused=False)
    mine.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")  # "auto": per-op, said why
    h_ref = ref.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    h_mine = mine.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    assert h_ref.history["loss"][-1] < h_ref.history["loss"][0]
    np.testing.assert_allclose(h_mine.history["loss"], h_ref.history["loss"], rtol=2e-5)
    for a, b in zip(mine.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(mine.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=2e-5, atol=2e-6)
    if host_backend_name == "cpu":  # (numpy has no fused trainer at all)
        assert "custom layer" in mine.fused_reason and "LinearLayer" in mine.fused_reason


def test_input_gradient_flows_through_custom_layer_in_the_middle():
    """A custom layer between two Dense layers: its input gradient must reach the first one."""
    x, y = _data(64)
    ref = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(6, activation="tanh"),
                            keras.layers.Dense(4), keras.layers.Dense(1)])
    mine = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(6, activation="tanh"),
                             LinearLayer(4), keras.layers.Dense(1)])
    mine.set_weights(ref.get_weights())
    for m in (ref, mine):
        m.compile(optimizer="adam", loss="mse", fused=False)
        m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(mine.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=3e-5, atol=3e-6)


def test_custom_layer_in_a_functional_model_trains_like_dense():
    x, y = _data(96)

    def build(middle):
        inp = keras.Input(shape=(5,))
        h = keras.layers.Dense(8, activation="tanh")(inp)
        h2 = middle(h)
        return keras.Model(inp, keras.layers.Dense(1)(keras.layers.Concatenate()([h, h2])))

    ref, mine = build(keras.layers.Dense(6, activation="relu")), build(LinearLayer(6, activation="relu"))
    mine.set_weights(ref.get_weights())
    ref.compile(optimizer="adam", loss="mse", fused=False)
    mine.compile(optimizer="adam", loss="mse")
    h_ref = ref.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history["loss"]
    h_mine = mine.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(h_mine, h_ref, rtol=3e-5)
    for a, b in zip(mine.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=3e-5, atol=3e-6)


def test_weights_gradients_and_training_flag():
    layer = ScaledTanh()
    model = keras.Sequential([keras.Input(shape=(3,)), layer, keras.layers.Dense(1)])
    assert [w.shape for w in layer.get_weights()] == [(1, 3), ()]  # trainable first, then the rest
    assert len(layer.weights) == 1 and len(layer.non_trainable_weights) == 1
    assert isinstance(layer.scale, ad.Variable) and layer.scale.path.endswith("/scale")
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(x), np.tanh(x), rtol=1e-6)  # inference: training=False
    np.testing.assert_allclose(layer(x, training=True), 0.5 * np.tanh(x), rtol=1e-6)
    layer.set_weights([np.full((1, 3), 2.0, np.float32), np.array(1.0, np.float32)])
    np.testing.assert_allclose(layer(x), np.tanh(2 * x) + 1, rtol=1e-6)  # set_weights reaches the variables
    # backward: the input and weight gradients against float64 finite differences
    buf = layer.make_buffers(4)
    layer.forward(x, buf, training=True)
    dy = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    dx = layer.backward(dy, buf, True)
    t = np.tanh(2 * x.astype(np.float64))
    np.testing.assert_allclose(dx, dy * 0.5 * (1 - t ** 2) * 2, rtol=1e-5)
    np.testing.assert_allclose(layer.grads[0], (dy * 0.5 * (1 - t ** 2) * x).sum(0, keepdims=True), rtol=1e-5)
    model.compile(optimizer="sgd", loss="mse")
    before = layer.get_weights()[1].copy()
    model.fit(x, np.zeros((4, 1), np.float32), epochs=2, verbose=0)
    assert layer.get_weights()[1] == before  # the non-trainable weight is not updated


def test_config_save_and_load(tmp_path):
    x, y = _data(32)
    model = _pair(True)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    cfg = model.layers[0].get_config()
    assert cfg["units"] == 8 and cfg["activation"] == "relu" and cfg["name"] == model.layers[0].name
    clone = LinearLayer.from_config(cfg)
    assert clone.units == 8 and clone.name == cfg["name"]
    path = str(tmp_path / "m.npz")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[0]) is LinearLayer
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert model.weight_names == ["kernel", "bias", "kernel", "bias"]  # add_weight's names (AdamW's var_names)
    assert "tests>LinearLayer" in keras.saving.get_custom_objects()
    assert keras.saving.get_registered_object("tests>LinearLayer") is LinearLayer


class MLPBlock(keras.layers.Layer):
    """Custom layers inside a custom layer (the Keras guide's example): built on first call,
    their weights are the block's weights."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.linear_1 = LinearLayer(6, activation="relu")
        self.linear_2 = LinearLayer(1)

    def call(self, inputs):
        return self.linear_2(self.linear_1(inputs))


def test_nested_custom_layers_train_like_dense_stack():
    x, y = _data(64)
    ref = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(1)])
    block = MLPBlock()
    mine = keras.Sequential([keras.Input(shape=(5,)), block])
    assert block.name == "mlp_block" or block.name.startswith("mlp_block_")  # Keras' to_snake_case
    assert [w.shape for w in mine.get_weights()] == [(5, 6), (6,), (6, 1), (1,)]
    mine.set_weights(ref.get_weights())
    for m in (ref, mine):
        m.compile(optimizer="adam", loss="mse", fused=False)
        m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(mine.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=3e-5, atol=3e-6)
    np.testing.assert_array_equal(block.linear_1.get_weights()[0], mine.get_weights()[0])  # shared arrays


class RegularizedLinear(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 4), regularizer=keras.regularizers.L2(0.05), name="kernel")
        self.b = self.add_weight(shape=(4,), initializer="zeros", regularizer="l1", name="bias")

    def call(self, inputs):
        return ops.matmul(inputs, self.w) + self.b


def test_add_weight_regularizer_matches_dense_regularizers():
    x, y = _data(48)
    ref = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(
        4, kernel_regularizer=keras.regularizers.L2(0.05), bias_regularizer="l1"), keras.layers.Dense(1)])
    mine = keras.Sequential([keras.Input(shape=(5,)), RegularizedLinear(), keras.layers.Dense(1)])
    mine.set_weights(ref.get_weights())
    hist = []
    for m in (ref, mine):
        m.compile(optimizer="sgd", loss="mse", fused=False)
        hist.append(m.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(hist[1], hist[0], rtol=2e-5)  # the penalty is in the loss, as Keras
    for a, b in zip(mine.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    assert mine.evaluate(x, y, verbose=0) == pytest.approx(ref.evaluate(x, y, verbose=0), rel=2e-5)


def test_custom_output_layer_with_an_activation_attribute_is_not_folded():
    """A custom last layer that stores ``self.activation = 'sigmoid'`` applies it in call: the
    cross-entropy must take its probabilities, not fold the sigmoid as for a Dense output."""

    class Out(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.activation = "sigmoid"

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 1), name="w")

        def call(self, inputs):
            return keras.activations.get(self.activation)(ops.matmul(inputs, self.w))

    x, _ = _data(64)
    y = (x[:, :1] > 0).astype(np.float32)
    m = keras.Sequential([keras.Input(shape=(5,)), Out()])
    m.compile(optimizer="sgd", loss="binary_crossentropy")
    p = m.predict(x, verbose=0).astype(np.float64)
    want = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert m.evaluate(x, y, verbose=0) == pytest.approx(want, rel=1e-5)


def test_unsupported_custom_code_is_refused_by_name():
    class HoldsDense(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(3)

        def call(self, inputs):
            return inputs

    with pytest.raises(NotImplementedError, match="holds the built-in layer"):
        keras.Sequential([keras.Input(shape=(2,)), HoldsDense()])

    class NumpyCall(keras.layers.Layer):
        def call(self, inputs):
            return np.exp(inputs)

    with pytest.raises(TypeError, match="keras.ops"):
        keras.Sequential([keras.Input(shape=(2,)), NumpyCall()])

    class Rank3(keras.layers.Layer):
        def call(self, inputs):
            return ops.expand_dims(inputs, 1)

    with pytest.raises(ValueError, match=r"map \(batch, features\)"):
        keras.Sequential([keras.Input(shape=(2,)), Rank3()])

    class Half(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(2,), dtype="float16")

        def call(self, inputs):
            return inputs * self.w

    with pytest.raises(NotImplementedError, match="float16"):
        keras.Sequential([keras.Input(shape=(2,)), Half()])
    class AddsLoss(keras.layers.Layer):
        def call(self, inputs):
            self.add_loss(ops.sum(inputs))
            return inputs

    with pytest.raises(NotImplementedError, match="add_loss"):
        keras.Sequential([keras.Input(shape=(2,)), AddsLoss()])
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        LinearLayer(3, colour="red")
    assert LinearLayer(3, trainable=False, dtype="float32").trainable is False
