"""ONNX export: the graph runs in ONNX Runtime and agrees with predict to 1e-5."""
from __future__ import annotations

import json

import numpy as np
import pytest

import fusednn
from fusednn import keras

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": np.asarray(x, dtype=np.float32)})[0]


def every_activation_model():
    return keras.Sequential([
        keras.layers.Dense(32, activation="relu", input_shape=(7,)),
        keras.layers.Dense(16, activation="tanh"),
        keras.layers.Dense(16, activation="sigmoid", use_bias=False),
        keras.layers.Activation("relu"),
        keras.layers.Dense(5),
        keras.layers.Activation("tanh"),
        keras.layers.Dense(4, activation="softmax"),
    ])


def test_onnx_matches_predict(backend_name, tmp_path):
    fusednn.set_random_seed(0)
    model = every_activation_model()
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 7)) * 3
    model.fit(x, rng.random((300, 4)), epochs=2, verbose=0)
    model.metadata = {"classes": ["a", "b", "c", "d"]}
    path = tmp_path / "model.onnx"
    model.export_onnx(path)
    for n in (1, 7, 300):  # the batch dimension is dynamic
        got, ref = run_onnx(path, x[:n]), model.predict(x[:n], verbose=0)
        assert got.shape == ref.shape == (n, 4) and got.dtype == np.float32
        assert np.abs(got - ref).max() <= 1e-5
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    ops = [node.op_type for node in proto.graph.node]
    assert ops == ["Gemm", "Relu", "Gemm", "Tanh", "MatMul", "Sigmoid", "Relu", "Gemm", "Tanh", "Gemm", "Softmax",
                   "Identity"]
    assert proto.opset_import[0].version == 17
    assert json.loads({p.key: p.value for p in proto.metadata_props}["fusednn_metadata"]) == model.metadata


def test_linear_model_and_saved_model_export(host_backend_name, tmp_path):
    fusednn.set_random_seed(1)
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(2,))])
    model.save(tmp_path / "m.npz")
    fusednn.load_model(tmp_path / "m.npz").export_onnx(tmp_path / "m.onnx", opset=13)
    x = np.random.default_rng(1).standard_normal((5, 2))
    assert np.abs(run_onnx(tmp_path / "m.onnx", x) - model.predict(x, verbose=0)).max() <= 1e-6


def test_normalization_layer_exports(host_backend_name, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 3)) * [1.0, 100.0, 0.01] + [0.0, 500.0, 3.0]
    fusednn.set_random_seed(2)
    model = keras.Sequential([keras.layers.Normalization(input_shape=(3,)).adapt(x),
                              keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])
    model.export_onnx(tmp_path / "n.onnx")
    assert np.abs(run_onnx(tmp_path / "n.onnx", x) - model.predict(x, verbose=0)).max() <= 1e-5


def test_export_errors(host_backend_name, tmp_path):
    with pytest.raises(ValueError, match="not built"):
        keras.Sequential([keras.layers.Dense(3)]).export_onnx(tmp_path / "m.onnx")

    class Odd(keras.layers.Layer):
        def forward(self, x, buf):
            buf.y[...] = x
            return buf.y

    model = keras.Sequential([keras.layers.Dense(3, input_shape=(2,)), Odd()])
    with pytest.raises(NotImplementedError, match="has no ONNX export"):
        model.export_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnx_names_the_extra(host_backend_name, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(2,))])
    with pytest.raises(ImportError, match=r'pip install "fusednn\[onnx\]"'):
        model.export_onnx(tmp_path / "m.onnx")


def test_new_activations_export(host_backend_name, tmp_path):
    """Every activation fusednn names exports to opset 17 and onnxruntime computes what
    predict does."""
    names = ["elu", "selu", "leaky_relu", "gelu", "gelu_tanh", "swish", "silu", "softplus", "softsign",
             "hard_sigmoid", "hard_swish", "relu6", "mish", "exponential"]
    fusednn.set_random_seed(1)
    layers = [keras.layers.Dense(6, activation=names[0], input_shape=(5,))]
    layers += [keras.layers.Dense(6, activation=n) if i % 2 else keras.layers.Activation(n)
               for i, n in enumerate(names[1:])]
    layers += [keras.layers.Dense(3), keras.layers.Activation("log_softmax")]
    model = keras.Sequential(layers)
    x = np.random.default_rng(2).standard_normal((40, 5)) * 2
    path = tmp_path / "acts.onnx"
    model.export_onnx(path)
    got, ref = run_onnx(path, x), model.predict(x, verbose=0)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
