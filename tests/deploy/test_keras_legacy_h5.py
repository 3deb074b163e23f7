"""Keras' legacy HDF5 model files (``model.save("x.h5")``, ``load_model("x.h5")``), both directions.

Committed fixtures under ``fixtures/keras``: ``legacy_*.h5`` written by Keras 3.15.1
(``make_fixtures.py``) and ``keras2_*.h5`` hand-made in tf.keras 2.x's layout
(``make_keras2_h5_fixtures.py``, which says how); round trips with real Keras where it is
importable (torch backend); hostile files.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import tracemalloc
import warnings

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py is not installed (pip install 'fusednn[keras]')")

from fusednn import keras  # noqa: E402
from fusednn.saving import keras_config  # noqa: E402

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "keras"
HAS_FUNCTIONAL = keras_config.functional_class() is not None
needs_functional = pytest.mark.skipif(not HAS_FUNCTIONAL, reason="this build has no functional API (keras.Model)")


def _ref(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def real_keras():
    """Keras 3 itself (torch backend), or a skip saying why."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if os.environ["KERAS_BACKEND"] != "torch":
        pytest.skip("these tests drive Keras 3 on its torch backend; KERAS_BACKEND is set to something else")
    pytest.importorskip("torch", reason="Keras' torch backend needs torch (pip install torch)")
    return pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")


def _data(n: int = 40, features: int = 4, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype(np.float32), rng.integers(0, classes, n)


def _sequential(k, seed: int = 0, dropout: bool = True):
    k.utils.set_random_seed(seed)
    model = k.Sequential([k.Input(shape=(4,)),
                          k.layers.Dense(6, activation="relu", kernel_regularizer=k.regularizers.L2(0.01),
                                         name="dense"),
                          k.layers.BatchNormalization(name="batch_normalization"),
                          *([k.layers.Dropout(0.2, name="dropout")] if dropout else []),
                          k.layers.Dense(3, activation="softmax", name="dense_1")], name="seq")
    model.compile(optimizer=k.optimizers.Adam(0.01, name="adam"), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # (named: Keras numbers unnamed optimizers per process)
    return model


def _functional(k, seed: int = 0):
    k.utils.set_random_seed(seed)
    inputs = k.Input(shape=(4,), name="features")
    a = k.layers.Dense(3, activation="tanh", name="a")(inputs)
    b = k.layers.LayerNormalization(name="ln")(k.layers.Dense(3, name="b")(inputs))
    out = k.layers.Dense(2, name="out")(k.layers.Concatenate(name="cat")([a, b]))
    model = k.Model(inputs, out, name="fun")
    model.compile(optimizer=k.optimizers.SGD(0.05, momentum=0.9, name="sgd"), loss="mse", metrics=["mae"])
    return model


def _layout(path) -> list:
    """Every group and dataset of an HDF5 file with its shape and attributes' names and
    list values (what Keras' reader looks at), the root's JSON attributes parsed."""
    out = []
    with h5py.File(path, "r") as f:
        out.append(("/", sorted(f.attrs)))

        def visit(name, obj):
            attrs = {k: [v.decode() if isinstance(v, bytes) else v for v in np.asarray(obj.attrs[k]).reshape(-1)]
                     for k in obj.attrs if k not in ("backend", "keras_version")}
            out.append((name, type(obj).__name__, getattr(obj, "shape", None), attrs))
        f.visititems(visit)
    return out


# ----------------------------------------------------------------- committed files written by Keras 3.15.1
def test_keras3_fixture_sequential_loads_with_compile_state():
    ref = _ref("legacy_sequential")
    model = keras.models.load_model(FIXTURES / "legacy_sequential.h5")
    assert type(model).__name__ == "Sequential" and model.name == "legacy_seq"
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=2e-6)
    opt = model.optimizer
    assert type(opt).__name__ == "Adam" and opt.learning_rate == pytest.approx(0.01)
    assert opt.iterations == int(ref["iterations"])
    assert type(model.loss).__name__ == "SparseCategoricalCrossentropy"
    assert model.layers[0].kernel_regularizer.l2 == pytest.approx(0.01)
    x = np.repeat(ref["x"], 2, axis=0)
    history = model.fit(x, np.arange(len(x)) % 3, epochs=1, batch_size=8, verbose=0).history
    assert np.isfinite(history["loss"]).all() and "accuracy" in history
    assert opt.iterations == int(ref["iterations"]) + 2


@needs_functional
def test_keras3_fixture_functional_loads_and_trains():
    ref = _ref("legacy_functional")
    model = keras.models.load_model(FIXTURES / "legacy_functional.h5")
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=2e-6)
    opt = model.optimizer
    assert type(opt).__name__ == "SGD" and opt.momentum == pytest.approx(0.9)
    assert opt.iterations == int(ref["iterations"])
    history = model.fit(ref["x"], ref["y"], epochs=1, batch_size=4, verbose=0).history
    assert np.isfinite(history["loss"]).all() and "mae" in history


def test_keras3_fixture_compile_false_and_load_weights():
    ref = _ref("legacy_sequential")
    assert keras.models.load_model(FIXTURES / "legacy_sequential.h5", compile=False).optimizer is None
    fresh = _sequential(keras, seed=5)
    fresh.load_weights(FIXTURES / "legacy_sequential.h5")  # Keras 3 reads a .h5 model file's weights too
    np.testing.assert_allclose(fresh.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=2e-6)
    assert fresh.optimizer.iterations == 0  # (as Keras: load_weights of a .h5 file leaves the optimizer)
    wrong = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="layer count mismatch.*1 layers with weights, the file 3"):
        wrong.load_weights(FIXTURES / "legacy_sequential.h5")
    shaped = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(5), keras.layers.BatchNormalization(),
                               keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="shape"):
        shaped.load_weights(FIXTURES / "legacy_sequential.h5")


# ----------------------------------------------------------------- tf.keras 2.x layout (hand-made fixtures)
def test_keras2_fixture_sequential():
    ref = _ref("keras2_sequential")
    with pytest.warns(UserWarning, match="`decay` is no longer supported"):  # Keras 3's warning
        model = keras.models.load_model(FIXTURES / "keras2_sequential.h5")
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=1e-6)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "BatchNormalization", "Dropout", "Dense"]
    assert model.layers[2].rate == 0.25 and model.layers[0].kernel_regularizer.l2 == pytest.approx(0.01)
    assert type(model.optimizer).__name__ == "Adam" and model.optimizer.learning_rate == pytest.approx(0.005)
    assert model.optimizer.iterations == 0  # Keras 2's optimizer variables are not in the file
    history = model.fit(ref["x"], np.arange(len(ref["x"])) % 3, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()


@needs_functional
def test_keras2_fixture_functional():
    ref = _ref("keras2_functional")
    model = keras.models.load_model(FIXTURES / "keras2_functional.h5")
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=1e-6)
    assert model.optimizer is None  # saved uncompiled
    assert {layer.name for layer in model.layers} >= {"branch_a", "branch_b", "concatenate", "layer_normalization"}


def _edit_config(src: pathlib.Path, dst: pathlib.Path, edit, attr: str = "model_config") -> pathlib.Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs[attr])
        edit(config)
        f.attrs[attr] = json.dumps(config).encode("utf8")
    return dst


def test_keras2_sequential_without_input_layer(tmp_path):
    """TF 2.0-2.3 wrote a Sequential without an InputLayer: the first layer's
    batch_input_shape gives the input (Keras 3 itself misreads these)."""
    ref = _ref("keras2_sequential")
    path = _edit_config(FIXTURES / "keras2_sequential.h5", tmp_path / "old.h5",
                        lambda c: c["config"]["layers"].pop(0))
    model = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=1e-6)


def test_keras2_trained_model_metrics(tmp_path):
    """A trained tf.keras 2.x model saves its metrics as MeanMetricWrapper objects,
    nested per output."""
    wrapped = [[{"class_name": "MeanMetricWrapper", "config": {"name": "accuracy", "dtype": "float32",
                                                               "fn": "sparse_categorical_accuracy"}},
                {"class_name": "MeanMetricWrapper", "config": {"name": "sca", "dtype": "float32",
                                                               "fn": "sparse_categorical_accuracy"}}]]
    path = _edit_config(FIXTURES / "keras2_sequential.h5", tmp_path / "trained.h5",
                        lambda c: c.__setitem__("metrics", wrapped), attr="training_config")
    with pytest.warns(UserWarning, match="decay"):
        model = keras.models.load_model(path)
    ref = _ref("keras2_sequential")
    history = model.fit(ref["x"], np.arange(len(ref["x"])) % 3, epochs=1, verbose=0).history
    assert {"accuracy", "sparse_categorical_accuracy"} <= set(history)


def test_legacy_config_translation():
    doc = keras_config.from_legacy_model({"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dense", "config": {"name": "d", "units": 2, "batch_input_shape": [None, 3]}},
        {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": [1]}}]}})
    assert doc["config"]["layers"][0] == {"class_name": "InputLayer",
                                          "config": {"batch_shape": [None, 3], "name": "input_layer"}}
    assert "batch_input_shape" not in doc["config"]["layers"][1]["config"]
    assert doc["config"]["layers"][2]["config"]["axis"] == -1
    node = keras_config._legacy_node([["a", 0, 0, {}], ["b", 0, 0, {}]], "x")
    assert [r["config"]["keras_history"] for r in node["args"][0]] == [["a", 0, 0], ["b", 0, 0]]
    with pytest.raises(ValueError, match="call arguments"):
        keras_config._legacy_node([["a", 0, 0, {"training": True}]], "x")
    compile_config = keras_config.from_legacy_training(
        {"loss": "mse", "optimizer_config": {"class_name": "Custom>Adam", "config": {"learning_rate": 0.1}}})
    assert compile_config["optimizer"]["class_name"] == "Adam" and "optimizer_config" not in compile_config


# ----------------------------------------------------------------- writing, and the choice of format
def test_save_h5_round_trip_and_format(tmp_path):
    x, y = _data()
    model = _sequential(keras)
    model.fit(x, y, epochs=2, batch_size=10, verbose=0)
    for name in ("m.h5", "m.hdf5"):
        model.save(tmp_path / name)
        assert (tmp_path / name).read_bytes().startswith(b"\x89HDF")
        back = keras.models.load_model(tmp_path / name)
        np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
        assert back.optimizer.iterations == model.optimizer.iterations
        for a, b in zip(back.optimizer.get_state()[1], model.optimizer.get_state()[1]):
            np.testing.assert_array_equal(a, b)
    keras.models.save_model(model, tmp_path / "s.h5", include_optimizer=False)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert "training_config" not in f.attrs and "optimizer_weights" not in f
        assert list(f["model_weights"].attrs["layer_names"]) == ["dense", "batch_normalization", "dropout",
                                                                 "dense_1"]
        assert list(f["model_weights/dense"].attrs["weight_names"]) == ["seq/dense/kernel", "seq/dense/bias"]
    assert keras.models.load_model(tmp_path / "s.h5").optimizer is None
    model.save(tmp_path / "m.npz")  # other names stay fusednn's format
    assert not (tmp_path / "m.npz").read_bytes().startswith(b"\x89HDF")


def test_save_weights_h5_name_is_keras_error(tmp_path):
    model = _sequential(keras)
    for name in ("w.h5", "w.hdf5"):
        with pytest.raises(ValueError, match=r"^The filename must end in `\.weights\.h5`\. Received: filepath=.*"
                                             + name.replace(".", r"\.") + "$"):
            model.save_weights(tmp_path / name)
    assert os.listdir(tmp_path) == []
    model.save(tmp_path / "m.h5")
    fresh = _sequential(keras, seed=3)
    fresh.load_weights(tmp_path / "m.h5")
    np.testing.assert_array_equal(fresh.get_weights()[0], model.get_weights()[0])


# ----------------------------------------------------------------- with real Keras 3
def test_layout_is_keras3s(real_keras, tmp_path):
    """fusednn's file has exactly the groups, datasets, shapes and name lists Keras 3
    writes for the same model."""
    x, y = _data()
    for build in (_sequential, _functional) if HAS_FUNCTIONAL else (_sequential,):
        for k, name in ((real_keras, "k.h5"), (keras, "f.h5")):
            model = build(k)
            model.fit(x, y if build is _sequential else x[:, :2], epochs=1, batch_size=10, verbose=0)
            model.save(tmp_path / name)
        assert _layout(tmp_path / "f.h5") == _layout(tmp_path / "k.h5")


def test_fusednn_h5_loads_in_keras(real_keras, tmp_path):
    x, y = _data()
    for build, target in ((_sequential, y), (_functional, x[:, :2])) if HAS_FUNCTIONAL else ((_sequential, y),):
        model = build(keras)
        model.fit(x, target, epochs=2, batch_size=10, verbose=0)
        model.save(tmp_path / "m.h5")
        k = real_keras.models.load_model(tmp_path / "m.h5")
        np.testing.assert_allclose(k.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
        assert int(k.optimizer.iterations.numpy()) == model.optimizer.iterations
        assert type(k.optimizer).__name__ == type(model.optimizer).__name__
        assert float(k.optimizer.learning_rate.numpy()) == pytest.approx(float(model.optimizer.learning_rate))
        # (Keras 3 builds the optimizer over the model's own variables when it reads a .h5 file, so it
        # restores the step count and the rate only, from its own files too; the layout test above
        # checks that the per-variable state is written where and as Keras writes it)


def test_keras_h5_loads_in_fusednn(real_keras, tmp_path):
    x, y = _data()
    k = _sequential(real_keras, dropout=False)  # (no random masks: the next step is compared)
    k.fit(x, y, epochs=2, batch_size=10, verbose=0)
    k.save(tmp_path / "k.h5")
    model = keras.models.load_model(tmp_path / "k.h5")
    np.testing.assert_allclose(model.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert model.optimizer.iterations == int(k.optimizer.iterations.numpy())
    assert model.optimizer.learning_rate == pytest.approx(0.01)
    # one more identical step on both sides gives the same weights (the Adam state came across)
    k.fit(x[:10], y[:10], epochs=1, batch_size=10, verbose=0, shuffle=False)
    model.fit(x[:10], y[:10], epochs=1, batch_size=10, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_adapted_normalization_prelu_layernorm_both_ways(real_keras, tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32) * 3 + 1
    norm = real_keras.layers.Normalization()
    norm.adapt(x)  # Keras keeps adapted statistics as weights (mean, variance, count)
    k = real_keras.Sequential([real_keras.Input((3,)), norm, real_keras.layers.Dense(2), real_keras.layers.PReLU(),
                               real_keras.layers.LayerNormalization(), real_keras.layers.Dense(1)])
    k.save(tmp_path / "k.h5")
    model = keras.models.load_model(tmp_path / "k.h5")
    np.testing.assert_allclose(model.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "f.h5")
    back = real_keras.models.load_model(tmp_path / "f.h5")
    np.testing.assert_allclose(back.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_keras_loads_the_keras2_fixtures(real_keras):
    """Real Keras 3 reads the hand-made tf.keras 2.x files and predicts the NumPy
    reference: the imitation of Keras 2's layout is faithful."""
    for name in ("keras2_sequential", "keras2_functional"):
        ref = _ref(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k = real_keras.models.load_model(FIXTURES / f"{name}.h5")
        np.testing.assert_allclose(k.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=1e-6)


def test_keras_save_weights_h5_raises_as_ours(real_keras, tmp_path):
    k = _sequential(real_keras)
    with pytest.raises(ValueError) as theirs:
        k.save_weights(str(tmp_path / "w.h5"))
    with pytest.raises(ValueError) as ours:
        _sequential(keras).save_weights(str(tmp_path / "w.h5"))
    assert str(ours.value) == str(theirs.value)


# ----------------------------------------------------------------- hostile files
@pytest.fixture()
def good(tmp_path) -> pathlib.Path:
    model = _sequential(keras)
    model.fit(*_data(), epochs=1, verbose=0)
    model.save(tmp_path / "good.h5")
    return tmp_path / "good.h5"


def _mutate(path: pathlib.Path, edit) -> pathlib.Path:
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(f, path, data=None, **kwargs):
    del f[path]
    f.create_dataset(path, data=np.zeros((4, 6), np.float32) if data is None else data, **kwargs)


KERNEL = "model_weights/dense/seq/dense/kernel"


@pytest.mark.parametrize("edit, message", [
    (lambda f: _replace(f, KERNEL, np.zeros((5, 6), np.float32)), r"has shape \(5, 6\), the model needs \(4, 6\)"),
    (lambda f: _replace(f, KERNEL, compression="gzip"), "'model_weights/dense/seq/dense/kernel' is not stored "
                                                        "contiguously"),
    (lambda f: (f.__delitem__(KERNEL), f.create_dataset(KERNEL, shape=(2**20, 2**20), dtype="f4")),
     r"has shape \(1048576, 1048576\), the model needs \(4, 6\)"),
    (lambda f: _replace(f, KERNEL, np.zeros((4, 6), np.int32)), "weights must be floats"),
    (lambda f: (f.__delitem__(KERNEL), f.__setitem__(KERNEL, h5py.ExternalLink("/etc/passwd.h5", "/x"))),
     "ExternalLink, not stored in the file"),
    (lambda f: (f.__delitem__(KERNEL), f.__setitem__(KERNEL, h5py.SoftLink("/model_weights/dense_1/seq/dense_1/kernel"))),
     "SoftLink, not stored in the file"),
    (lambda f: f.__delitem__(KERNEL), "missing"),
    (lambda f: f["model_weights/dense"].attrs.__setitem__("weight_names", [b"../../dense_1/seq/dense_1/kernel",
                                                                          b"seq/dense/bias"]),
     "not a weight or layer name"),
    (lambda f: f["model_weights/dense"].attrs.__setitem__("weight_names", [b"seq/dense/kernel"]),
     "has 1 weight arrays, the model needs 2"),
    (lambda f: f.__delitem__("model_weights/dense_1"), "holds no weights for layer"),
    (lambda f: f.attrs.__setitem__("model_config", b"{not json"), "model_config.*not valid JSON"),
    (lambda f: f.attrs.__setitem__("model_config", b"[" * 100000 + b"]" * 100000), "not valid JSON"),
    (lambda f: f.attrs.__setitem__("model_config", b'{"a": NaN}'), "NaN, which is not valid JSON"),
    (lambda f: f.attrs.__delitem__("model_config"), "no model config found"),
])
def test_hostile_weights_and_attrs(good, edit, message):
    with pytest.raises(ValueError, match=message):
        keras.models.load_model(_mutate(good, edit))


def _layers_edit(edit):
    def run(f):
        config = json.loads(f.attrs["model_config"])
        edit(config["config"]["layers"])
        f.attrs["model_config"] = json.dumps(config).encode("utf8")
    return run


@pytest.mark.parametrize("edit, message", [
    (lambda ls: ls.insert(1, {"class_name": "Lambda", "config": {"name": "l", "function": ["4wEAAAA=", None, None],
                                                                "function_type": "lambda"}}),
     "Lambda is not loaded.*never runs code"),
    (lambda ls: ls.insert(1, {"class_name": "MyLayer", "config": {"name": "m"}}), "'MyLayer' is not supported"),
    (lambda ls: ls.insert(1, {"module": "os", "class_name": "Dense", "config": {"name": "m", "units": 1}}),
     "module 'os', which is not Keras"),
    (lambda ls: ls[1]["config"].__setitem__("units", 2**40), "units|shape|large|memory"),
    (lambda ls: ls[0]["config"].__setitem__("batch_shape", [None, 2**40]), "shape"),
    (lambda ls: ls[1]["config"].__setitem__("activation", {"class_name": "function", "config": "evil"}),
     "saved as a function object"),
])
def test_hostile_model_config(good, edit, message):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            keras.models.load_model(_mutate(good, _layers_edit(edit)))
        assert tracemalloc.get_traced_memory()[1] < 64 << 20  # nothing near the declared size was allocated
    finally:
        tracemalloc.stop()


def test_truncated_and_damaged_files(good, tmp_path):
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 100, 64):
        (tmp_path / "cut.h5").write_bytes(data[:cut])
        with pytest.raises(ValueError):
            keras.models.load_model(tmp_path / "cut.h5")
    rng = np.random.default_rng(0)
    for _ in range(20):  # flipped bytes: a ValueError or a model, never another exception
        bad = bytearray(data)
        for i in rng.integers(0, len(bad), 8):
            bad[i] ^= 0xFF
        (tmp_path / "flip.h5").write_bytes(bytes(bad))
        try:
            keras.models.load_model(tmp_path / "flip.h5")
        except ValueError:
            pass


def test_training_config_problems_warn_and_leave_uncompiled(good):
    _mutate(good, lambda f: f.attrs.__setitem__("training_config", json.dumps(
        {"loss": "mse", "optimizer_config": {"class_name": "Custom>MyOptimizer", "config": {}}}).encode()))
    with pytest.warns(UserWarning, match="without its compile settings.*MyOptimizer"):
        model = keras.models.load_model(good)
    assert model.optimizer is None
