"""Keras 3 file interop: ``.keras`` archives and ``.weights.h5`` files, both directions.

Three groups: files written by real Keras 3 and committed under ``fixtures/keras`` (made by
``fixtures/keras/make_fixtures.py``; these run wherever h5py is installed), round trips with
real Keras where it is importable (torch backend), and hostile files.
"""
from __future__ import annotations

import io
import json
import os
import pathlib
import shutil
import sys
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py is not installed (pip install 'fusednn[keras]')")

import fusednn  # noqa: E402
from fusednn import keras  # noqa: E402
from fusednn.saving import keras_archive, keras_config  # noqa: E402

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "keras"


def _fixture(name: str) -> tuple[pathlib.Path, dict[str, np.ndarray]]:
    with np.load(FIXTURES / f"{name}.npz") as ref:
        return FIXTURES / name, {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def real_keras():
    """Keras 3 itself (torch backend), or a skip saying why."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if os.environ["KERAS_BACKEND"] != "torch":
        pytest.skip("these tests drive Keras 3 on its torch backend; KERAS_BACKEND is set to something else")
    pytest.importorskip("torch", reason="Keras' torch backend needs torch (pip install torch)")
    return pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")


def _small_model(seed: int = 0, optimizer=None):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape=(5,)),
                              keras.layers.Dense(7, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)),
                              keras.layers.BatchNormalization(),
                              keras.layers.Dense(3, activation="softmax")], name="small")
    model.compile(optimizer=optimizer or keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data(n: int = 40, features: int = 5, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype(np.float32), rng.integers(0, classes, n)


# ----------------------------------------------------------------- committed files written by Keras 3
@pytest.mark.parametrize("name", ["dense_bn_adam", "layers_rmsprop", "schedule_sgd"])
def test_fixture_archive_loads_and_predicts_as_keras(name):
    path, ref = _fixture(name)
    model = keras.models.load_model(f"{path}.keras")
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=2e-6)
    # the compile config and the optimizer's step count came with it: training continues
    assert model.optimizer is not None and model.optimizer.iterations == int(ref["iterations"])
    before = [w.copy() for w in model.get_weights()]
    x = np.repeat(ref["x"], 4, axis=0)
    out = model.predict(x, verbose=0)
    y = out.argmax(axis=1) if name == "dense_bn_adam" else out  # any targets of the right kind
    if name == "schedule_sgd":
        y = np.eye(3, dtype=np.float32)[out.argmax(axis=1)]
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert model.optimizer.iterations == int(ref["iterations"]) + 8
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_fixture_compile_settings():
    model = keras.models.load_model(FIXTURES / "layers_rmsprop.keras")
    opt = model.optimizer
    assert type(opt).__name__ == "RMSprop" and opt.momentum == 0.5 and opt.centered
    assert opt.learning_rate == pytest.approx(0.01)
    assert type(model.loss).__name__ == "MeanSquaredError"
    assert [m.name for m in model.metrics] == ["mae", "root_mean_squared_error"]
    sched = keras.models.load_model(FIXTURES / "schedule_sgd.keras").optimizer
    assert sched.nesterov and sched.momentum == 0.9
    assert type(sched.get_config()["learning_rate"]) is dict  # the schedule, not a constant
    # ExponentialDecay(0.1, 4, 0.9) at the restored step count (8), as Keras computes it
    assert sched.learning_rate == pytest.approx(0.1 * 0.9 ** (8 / 4), rel=1e-6)


def test_fixture_layers_and_configs():
    model = keras.models.load_model(FIXTURES / "layers_rmsprop.keras", compile=False)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Normalization", "Dense", "LayerNormalization", "LeakyReLU", "Dense", "ELU", "ReLU",
                     "GaussianNoise", "GaussianDropout", "Dense"]
    assert model.layers[4].negative_slope == pytest.approx(0.2) and model.layers[6].alpha == 0.5
    assert model.layers[7].max_value == 6.0 and model.layers[5].activation == "tanh"
    assert model.optimizer is None  # compile=False
    dense = keras.models.load_model(FIXTURES / "dense_bn_adam.keras").layers[0]
    assert type(dense.kernel_initializer).__name__ == "HeNormal"
    assert dense.kernel_regularizer.l2 == pytest.approx(0.01)


def test_fixture_weights_file():
    path, ref = _fixture("dense_sigmoid")
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(5, activation="sigmoid"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.load_weights(f"{path}.weights.h5")
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=1e-6)
    model.compile(optimizer="adam", loss="binary_crossentropy")  # compiled: the optimizer's state loads too
    model.load_weights(f"{path}.weights.h5")
    assert model.optimizer.iterations == int(ref["iterations"])
    wrong = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(6, activation="sigmoid"),
                              keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="shape"):
        wrong.load_weights(f"{path}.weights.h5")


def test_fixture_lambda_refused():
    with pytest.raises(ValueError, match="Lambda.*never runs code"):
        keras.models.load_model(FIXTURES / "lambda.keras")


HAS_FUNCTIONAL = keras_config.functional_class() is not None
needs_functional = pytest.mark.skipif(not HAS_FUNCTIONAL, reason="this build has no functional API (keras.Model)")


@pytest.mark.skipif(HAS_FUNCTIONAL, reason="this build has the functional API: the file loads (tested below)")
def test_fixture_functional_refused_without_functional_api():
    with pytest.raises(ValueError, match="functional Keras model.*'Functional'.*no functional API"):
        keras.models.load_model(FIXTURES / "functional.keras")


@needs_functional
def test_fixture_functional_loads_and_trains():
    path, ref = _fixture("functional")
    model = keras.models.load_model(f"{path}.keras")
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=2e-6)
    assert [layer.name for layer in model.layers if type(layer).__name__ == "Concatenate"] == ["joined"]
    assert model.optimizer.iterations == int(ref["iterations"])
    history = model.fit(ref["x"], ref["y"] * 0.5, epochs=2, batch_size=4, verbose=0).history
    assert np.isfinite(history["loss"]).all() and model.optimizer.iterations == int(ref["iterations"]) + 4


# ----------------------------------------------------------------- round trips with real Keras 3
def test_fusednn_to_keras_same_predictions_and_compile(real_keras, tmp_path):
    x, y = _data()
    model = _small_model()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. Keras' "Skipping variable loading for optimizer"
        k = real_keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(k.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert type(k.optimizer).__name__ == "Adam" and int(k.optimizer.iterations.numpy()) == model.optimizer.iterations
    assert float(k.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    assert k.get_layer(index=0).kernel_regularizer.l2 == pytest.approx(0.01)
    assert [type(layer).__name__ for layer in k.layers] == ["Dense", "BatchNormalization", "Dense"]
    # fusednn's own extras ride in metadata.json, which Keras ignores
    model.metadata = {"labels": ["a", "b", "c"]}
    model.save(tmp_path / "m.keras")
    assert fusednn.load_model(tmp_path / "m.keras").metadata == {"labels": ["a", "b", "c"]}


def test_every_layer_fusednn_to_keras(real_keras, tmp_path):
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 2, 3)).astype(np.float32)
    model = keras.Sequential([
        keras.layers.Flatten(input_shape=(2, 3)),
        keras.layers.Normalization(mean=np.arange(6) * 0.1, variance=[1, 2, 0, 4, 1, 1]),  # a zero variance
        keras.layers.Dense(6, activation="elu", kernel_initializer="he_uniform"),
        keras.layers.LayerNormalization(), keras.layers.LeakyReLU(0.1), keras.layers.ELU(0.7),
        keras.layers.ReLU(max_value=2.0), keras.layers.Dropout(0.3), keras.layers.GaussianNoise(0.2),
        keras.layers.GaussianDropout(0.2), keras.layers.Identity(), keras.layers.Reshape((6,)),
        keras.layers.BatchNormalization(center=False), keras.layers.Activation("swish"),
        keras.layers.Dense(4, use_bias=False), keras.layers.Softmax(),
    ])
    model.compile(optimizer=keras.optimizers.Nadam(0.01), loss="categorical_crossentropy")
    model.fit(x, np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)], epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "all.keras")
    k = real_keras.models.load_model(tmp_path / "all.keras")
    np.testing.assert_allclose(k.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    again = keras.models.load_model(tmp_path / "all.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_keras_to_fusednn_continues_training_as_keras(real_keras, tmp_path):
    kr = real_keras
    kr.utils.set_random_seed(1)
    x, y = _data(seed=1)
    k = kr.Sequential([kr.Input(shape=(5,)), kr.layers.Dense(6, activation="tanh"), kr.layers.Dense(3, activation="softmax")])
    k.compile(optimizer=kr.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    k.fit(x, y, epochs=2, batch_size=8, verbose=0)
    k.save(tmp_path / "k.keras")
    model = keras.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # from the same weights and Adam moments, one more full-batch step agrees with Keras' own
    k.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


OPTIMIZERS = [("Adam", {"amsgrad": True}), ("AdamW", {}), ("SGD", {"momentum": 0.9, "nesterov": True}),
              ("SGD", {}), ("RMSprop", {"momentum": 0.5, "centered": True}), ("RMSprop", {}), ("Adagrad", {}),
              ("Adadelta", {}), ("Adamax", {}), ("Nadam", {}), ("Lion", {}), ("Adam", {"use_ema": True})]


def test_optimizer_variables_survive_keras_fusednn_keras(real_keras, tmp_path):
    """Keras -> fusednn -> Keras gives back every optimizer variable (moments, EMA,
    amsgrad maxima, Nadam's u_product, step count, rate) of every optimizer."""
    kr = real_keras
    x, y = _data(24, seed=2)
    for cls, kwargs in OPTIMIZERS:
        kr.utils.set_random_seed(2)
        k = kr.Sequential([kr.Input(shape=(5,)), kr.layers.Dense(4, activation="relu"), kr.layers.BatchNormalization(),
                           kr.layers.Dense(3, activation="softmax")])
        k.compile(optimizer=getattr(kr.optimizers, cls)(**kwargs), loss="sparse_categorical_crossentropy")
        k.fit(x, y, epochs=1, batch_size=8, verbose=0)
        k.save(tmp_path / "k.keras")
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            model = keras.models.load_model(tmp_path / "k.keras")
            model.save(tmp_path / "f.keras")
            k2 = kr.models.load_model(tmp_path / "f.keras")
        assert len(k2.optimizer.variables) == len(k.optimizer.variables), cls
        for a, b in zip(k.optimizer.variables, k2.optimizer.variables):
            np.testing.assert_allclose(np.asarray(b.numpy(), np.float64), np.asarray(a.numpy(), np.float64),
                                       rtol=1e-6, atol=1e-9, err_msg=f"{cls} {kwargs} {a.path}")


@needs_functional
def test_functional_round_trips_with_keras(real_keras, tmp_path):
    kr = real_keras
    kr.utils.set_random_seed(7)
    x = np.random.default_rng(7).normal(size=(24, 4)).astype(np.float32)
    inputs = kr.Input(shape=(4,))
    a = kr.layers.Dense(5, activation="relu")(inputs)
    b = kr.layers.BatchNormalization()(kr.layers.Dense(3)(inputs))
    k = kr.Model(inputs, kr.layers.Dense(2)(kr.layers.Concatenate()([a, b])))
    k.compile(optimizer=kr.optimizers.Adam(0.01), loss="mse")
    k.fit(x, x[:, :2], epochs=2, batch_size=8, verbose=0)
    k.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = keras.models.load_model(tmp_path / "k.keras")
        np.testing.assert_allclose(model.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
        model.save(tmp_path / "f.keras")
        k2 = kr.models.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(k2.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    for v, w in zip(k.optimizer.variables, k2.optimizer.variables):
        np.testing.assert_allclose(np.asarray(w.numpy(), np.float64), np.asarray(v.numpy(), np.float64),
                                   rtol=1e-6, atol=1e-9, err_msg=v.path)


@needs_functional
def test_functional_weights_h5_both_directions(real_keras, tmp_path):
    x = np.random.default_rng(9).normal(size=(24, 4)).astype(np.float32)

    def build(lib):
        inputs = lib.Input(shape=(4,))
        a = lib.layers.Dense(5, activation="relu")(inputs)
        b = lib.layers.BatchNormalization()(lib.layers.Dense(3)(inputs))
        model = lib.Model(inputs, lib.layers.Dense(2)(lib.layers.Concatenate()([a, b])))
        model.compile(optimizer="adam", loss="mse")
        return model

    real_keras.utils.set_random_seed(9)
    k = build(real_keras)
    k.fit(x, x[:, :2], epochs=2, verbose=0)
    k.save_weights(tmp_path / "k.weights.h5")
    model = build(keras)
    model.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(model.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert model.optimizer.iterations == int(k.optimizer.iterations.numpy())
    model.fit(x, x[:, :2], epochs=1, verbose=0)
    model.save_weights(tmp_path / "f.weights.h5")
    k2 = build(real_keras)
    k2.load_weights(tmp_path / "f.weights.h5")
    np.testing.assert_allclose(k2.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_weights_h5_both_directions(real_keras, tmp_path):
    kr = real_keras
    x, y = _data()
    model = _small_model()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save_weights(tmp_path / "f.weights.h5")
    kr.utils.set_random_seed(5)
    k = kr.Sequential([kr.Input(shape=(5,)), kr.layers.Dense(7, activation="relu"), kr.layers.BatchNormalization(),
                       kr.layers.Dense(3, activation="softmax")])
    k.load_weights(tmp_path / "f.weights.h5")
    np.testing.assert_allclose(k.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    k.compile(optimizer=kr.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    k.fit(x, y, epochs=1, verbose=0)  # different weights now
    k.save_weights(tmp_path / "k.weights.h5")
    fresh = _small_model(seed=9)
    fresh.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert fresh.optimizer.iterations == int(k.optimizer.iterations.numpy())  # Keras' file holds the optimizer too
    with h5py.File(tmp_path / "f.weights.h5") as f:  # Keras' layout: keys by class, not by layer name
        assert sorted(f["layers"]) == ["batch_normalization", "dense", "dense_1"]
        assert f["layers/dense/vars/0"].shape == (5, 7)


def test_keras_normalization_adapted_and_zero_variance(real_keras, tmp_path):
    kr = real_keras
    x = np.random.default_rng(4).normal(size=(30, 3)).astype(np.float32)
    x[:, 1] = 2.0  # a constant feature: Keras divides by max(sqrt(0), 1e-7)
    norm = kr.layers.Normalization()
    norm.adapt(x)
    k = kr.Sequential([kr.Input(shape=(3,)), norm, kr.layers.Dense(2)])
    k.save(tmp_path / "n.keras")
    model = keras.models.load_model(tmp_path / "n.keras")
    probe = x + np.float32(1e-3)  # off the constant: a huge but finite value both sides
    np.testing.assert_allclose(model.predict(probe, verbose=0), k.predict(probe, verbose=0), rtol=1e-4)


# ----------------------------------------------------------------- choice of format and atomic writes
def test_suffix_picks_the_format(tmp_path):
    x, y = _data()
    model = _small_model()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.npz")
    model.save_weights(tmp_path / "w.weights.h5")
    model.save_weights(tmp_path / "w.npz")
    assert zipfile.ZipFile(tmp_path / "m.keras").namelist() == ["metadata.json", "config.json", "model.weights.h5"]
    assert "fusednn_config.npy" in zipfile.ZipFile(tmp_path / "m.npz").namelist()
    assert (tmp_path / "w.weights.h5").read_bytes().startswith(b"\x89HDF")
    for name in ("m.keras", "m.npz"):
        np.testing.assert_array_equal(keras.models.load_model(tmp_path / name).predict(x, verbose=0),
                                      model.predict(x, verbose=0))
    for name in ("w.weights.h5", "w.npz", "m.keras"):  # load_weights reads either, and an archive's weights
        fresh = _small_model(seed=4)
        fresh.load_weights(tmp_path / name)
        np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))
    # a fusednn .npz file saved under a .keras name by earlier versions still loads
    shutil.copy(tmp_path / "m.npz", tmp_path / "old.keras")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "old.keras").predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left


def test_unsavable_model_leaves_old_file(tmp_path):
    class Twice(keras.layers.Layer):
        def forward(self, x, buf):
            return x * 2

    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2), Twice()])
    (tmp_path / "m.keras").write_bytes(b"old")
    with pytest.raises(ValueError, match="Twice.*no Keras 3 built-in equivalent.*npz"):
        model.save(tmp_path / "m.keras")
    assert (tmp_path / "m.keras").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.keras"]


def test_missing_h5py_is_a_clear_import_error(monkeypatch, tmp_path):
    model = _small_model()
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"fusednn\[keras\]"):
        model.save(tmp_path / "m.keras")
    with pytest.raises(ImportError, match=r"fusednn\[keras\]"):
        keras.models.load_model(FIXTURES / "dense_bn_adam.keras")
    assert not (tmp_path / "m.keras").exists()


# ----------------------------------------------------------------- hostile files
def _members(path: pathlib.Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _archive(tmp_path, members: dict[str, bytes], name: str = "bad.keras", deflate: bool = False) -> pathlib.Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def _with_config(tmp_path, edit) -> pathlib.Path:
    members = _members(FIXTURES / "dense_bn_adam.keras")
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    return _archive(tmp_path, members)


def _layer(config, i):
    return config["config"]["layers"][i]


@pytest.mark.parametrize("edit, message", [
    (lambda c: _layer(c, 1).update(class_name="MyDense"), "'MyDense' is not supported"),
    (lambda c: _layer(c, 1).update(module="evil.layers"), "module 'evil.layers', which is not Keras"),
    (lambda c: _layer(c, 1).update(registered_name="Custom>Dense"), "registered by user code as 'Custom>Dense'"),
    (lambda c: _layer(c, 1).update(class_name="Lambda"), "Lambda is not loaded"),
    (lambda c: _layer(c, 1)["config"].update(activation={"module": "builtins", "class_name": "function",
                                                          "config": "my_act", "registered_name": "function"}),
     "activation 'my_act' is saved as a function"),
    (lambda c: _layer(c, 1)["config"].update(dtype="mixed_float16"), "dtype policy 'mixed_float16'"),
    (lambda c: _layer(c, 1)["config"]["kernel_initializer"].update(module="os"), "module 'os'"),
    (lambda c: _layer(c, 1)["config"].update(units=9), r"shape \(5, 6\), the model needs \(5, 9\)"),
    (lambda c: _layer(c, 0)["config"].update(batch_shape=[None, 2_000_000_000]), "shape"),
    # a Sequential config labelled Functional: refused (no functional API) or its layers lack graph names
    (lambda c: c.update(class_name="Functional"), "'Functional'.*no functional API|layer 0: it has no name"),
    (lambda c: c["config"].update(layers={"not": "a list"}), "no list of layers"),
    (lambda c: _layer(c, 1).update(config=["x"]), "not a JSON object|not supported"),
])
def test_hostile_config(tmp_path, edit, message):
    path = _with_config(tmp_path, edit)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            keras.models.load_model(path)
        assert tracemalloc.get_traced_memory()[1] < 16 * path.stat().st_size + (4 << 20)
    finally:
        tracemalloc.stop()


def test_hostile_archive_members(tmp_path):
    good = _members(FIXTURES / "dense_bn_adam.keras")
    missing = {k: v for k, v in good.items() if k != "model.weights.h5"}
    with pytest.raises(ValueError, match="no model.weights.h5"):
        keras.models.load_model(_archive(tmp_path, missing))
    with pytest.raises(ValueError, match="not a valid .keras archive.*JSON|Expecting"):
        keras.models.load_model(_archive(tmp_path, {**good, "config.json": b"{not json"}))
    with pytest.raises(ValueError, match="NaN"):
        keras.models.load_model(_archive(tmp_path, {**good, "config.json": b'{"a": NaN}'}))
    data = (FIXTURES / "dense_bn_adam.keras").read_bytes()
    for cut in (len(data) // 3, len(data) - 30):  # truncated archives
        (tmp_path / "cut.keras").write_bytes(data[:cut])
        with pytest.raises(ValueError):
            keras.models.load_model(tmp_path / "cut.keras")


def test_zip_bomb_refused_before_inflating(tmp_path):
    good = _members(FIXTURES / "dense_bn_adam.keras")
    bomb = {**good, "model.weights.h5": b"\x89HDF\r\n\x1a\n" + bytes(200 << 20)}  # 200 MB of zeros: 200 KB deflated
    path = _archive(tmp_path, bomb, deflate=True)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="zip bomb"):
            keras.models.load_model(path)
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()


def test_member_over_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(keras_archive, "MAX_JSON_BYTES", 100)
    with pytest.raises(ValueError, match="config.json declares .* more than the 100 allowed"):
        keras.models.load_model(FIXTURES / "dense_bn_adam.keras")


def _h5_edit(tmp_path, edit, name="bad.keras") -> pathlib.Path:
    members = _members(FIXTURES / "dense_bn_adam.keras")
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "r+") as f:
        edit(f)
    members["model.weights.h5"] = buf.getvalue()
    return _archive(tmp_path, members, name)


def _replace(f, path, data, **kwargs):
    del f[path]
    f.create_dataset(path, data=data, **kwargs)


@pytest.mark.parametrize("edit, message", [
    (lambda f: _replace(f, "layers/dense/vars/0", np.zeros((5, 6), np.int32)), "int32 values; weights must be floats"),
    (lambda f: _replace(f, "layers/dense/vars/0", np.zeros((6, 5), np.float32)), r"shape \(6, 5\), the model needs"),
    (lambda f: _replace(f, "layers/dense/vars/0", np.zeros((5, 6), np.float32), compression="gzip"),
     "not stored contiguously"),
    (lambda f: f.__delitem__("layers/dense_1"), "no weights for layer 'dense_1'"),
    (lambda f: f["layers/dense/vars"].__setitem__("2", np.zeros(3, np.float32)), "3 weight arrays, the model needs 2"),
    (lambda f: (f.__delitem__("layers/dense/vars/1"),
                f["layers/dense/vars"].__setitem__("1", h5py.SoftLink("/layers/dense/vars/0"))), "SoftLink"),
    (lambda f: (f.__delitem__("layers/dense/vars/1"),
                f["layers/dense/vars"].__setitem__("1", h5py.ExternalLink("/etc/passwd", "/x"))), "ExternalLink"),
    (lambda f: _replace(f, "layers/dense/vars/0", np.zeros((5, 6), np.complex64)), "weights must be floats"),
])
def test_hostile_weights(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        keras.models.load_model(_h5_edit(tmp_path, edit))


def test_nan_weights_load(tmp_path):
    def nan(f):
        f["layers/dense_1/vars/1"][...] = np.float32("nan")
    model = keras.models.load_model(_h5_edit(tmp_path, nan))
    assert np.isnan(model.predict(np.ones((2, 5), np.float32), verbose=0)).all()


def test_corrupt_h5(tmp_path):
    good = _members(FIXTURES / "dense_bn_adam.keras")
    rng = np.random.default_rng(0)
    h5 = good["model.weights.h5"]
    for data in (b"\x89HDF\r\n\x1a\n" + rng.bytes(4000), h5[: len(h5) // 2], b"not hdf5 at all"):
        with pytest.raises(ValueError, match="HDF5|model.weights.h5"):
            keras.models.load_model(_archive(tmp_path, {**good, "model.weights.h5": data}))
    (tmp_path / "bad.weights.h5").write_bytes(h5[:2000])
    with pytest.raises(ValueError, match="HDF5"):
        _small_model().load_weights(tmp_path / "bad.weights.h5")


def test_optimizer_state_of_other_shape_warns_and_starts_fresh(tmp_path):
    def drop(f):
        del f["optimizer/vars/13"]
    with pytest.warns(UserWarning, match="optimizer state not restored"):
        model = keras.models.load_model(_h5_edit(tmp_path, drop))
    assert model.optimizer.iterations == 0


def test_checkpoint_and_hdf5_given_to_load_model(tmp_path):
    x, y = _data()
    model = _small_model()
    best = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.weights.h5"), monitor="loss", save_best_only=True,
                                           save_weights_only=True)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[best])
    assert (tmp_path / "best.weights.h5").read_bytes().startswith(b"\x89HDF")
    fresh = _small_model(seed=3)
    fresh.load_weights(tmp_path / "best.weights.h5")
    assert fresh.optimizer.iterations == model.optimizer.iterations
    with pytest.raises(ValueError, match="HDF5 file: a weights file.*load_weights"):
        keras.models.load_model(tmp_path / "best.weights.h5")


def _has(module_attr: str) -> bool:
    import importlib

    module, _, attr = module_attr.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


@pytest.mark.skipif(not (_has("fusednn.layers.PReLU") and _has("fusednn.constraints.MaxNorm")),
                    reason="this build has no PReLU layer or no keras.constraints")
def test_prelu_and_constraints_both_directions(real_keras, tmp_path):
    kr = real_keras
    kr.utils.set_random_seed(8)
    x = np.random.default_rng(8).normal(size=(20, 4)).astype(np.float32)
    k = kr.Sequential([kr.Input(shape=(4,)),
                       kr.layers.Dense(5, kernel_constraint=kr.constraints.MaxNorm(1.5)),
                       kr.layers.PReLU(alpha_initializer=kr.initializers.Constant(0.25)), kr.layers.Dense(1)])
    k.compile(optimizer="sgd", loss="mse")
    k.fit(x, x[:, :1], epochs=2, verbose=0)
    k.save(tmp_path / "k.keras")
    model = keras.models.load_model(tmp_path / "k.keras")
    assert type(model.layers[0].kernel_constraint).__name__ == "MaxNorm"
    np.testing.assert_allclose(model.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "f.keras")
    k2 = kr.models.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(k2.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert k2.layers[0].kernel_constraint.max_value == 1.5


def test_include_optimizer_false_writes_no_compile_config(tmp_path):
    x, y = _data()
    model = _small_model()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras", include_optimizer=False)
    members = _members(tmp_path / "m.keras")
    assert "compile_config" not in json.loads(members["config.json"])
    with h5py.File(io.BytesIO(members["model.weights.h5"])) as f:
        assert "optimizer" not in f
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer is None
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_mutated_files_are_value_errors_or_load(tmp_path):
    """Byte flips in the weights file and value swaps in the config: each load either
    succeeds or raises ValueError (HDF5 reports damage as KeyError, RuntimeError,
    OSError... which must not escape)."""
    members = _members(FIXTURES / "dense_bn_adam.keras")
    rng = np.random.default_rng(11)
    outcomes = {"loaded": 0, "ValueError": 0}
    h5 = members["model.weights.h5"]
    for _ in range(80):
        b = bytearray(h5)
        for i in rng.integers(0, len(b), size=rng.integers(1, 6)):
            b[i] = rng.integers(0, 256)
        try:
            keras_archive.load_model("mutated.keras", data=_archive(tmp_path, {**members, "model.weights.h5": bytes(b)})
                                     .read_bytes())
            outcomes["loaded"] += 1
        except ValueError:
            outcomes["ValueError"] += 1
    config = json.loads(members["config.json"])

    def leaves(o, path=()):
        yield path
        items = o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) else ()
        for k, v in items:
            yield from leaves(v, (*path, k))

    paths = list(leaves(config))[1:]
    values = [None, True, 0, -1, 1e308, 2**40, "x", [], {}, [None], {"class_name": "X"}, [1, 2], 0.5]
    for _ in range(80):
        c = json.loads(members["config.json"])
        for j in rng.integers(0, len(paths), size=rng.integers(1, 4)):
            node = c
            try:
                for k in paths[j][:-1]:
                    node = node[k]
                node[paths[j][-1]] = values[rng.integers(0, len(values))]
            except (KeyError, IndexError, TypeError):
                pass
        data = _archive(tmp_path, {**members, "config.json": json.dumps(c).encode()}).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                keras_archive.load_model("mutated.keras", data=data)
                outcomes["loaded"] += 1
            except ValueError:
                outcomes["ValueError"] += 1
    assert sum(outcomes.values()) == 160 and outcomes["ValueError"] > 40


def test_overlapping_members_refused(tmp_path):
    """Two directory entries pointing at one member's bytes (how small zips claim
    gigabytes): refused before anything is read."""
    members = _members(FIXTURES / "dense_bn_adam.keras")
    data = bytearray(_archive(tmp_path, {"config.json": members["config.json"],
                                         "model.weights.h5": members["config.json"]}).read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        first, second = zf.infolist()
    entries = [i for i in range(len(data)) if data[i:i + 4] == b"PK\x01\x02"]
    offset_field = entries[1] + 42  # the central directory's "relative offset of local header"
    data[offset_field:offset_field + 4] = first.header_offset.to_bytes(4, "little")
    (tmp_path / "overlap.keras").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="overlap|local header"):
        keras.models.load_model(tmp_path / "overlap.keras")


def test_own_loss_class_saves_without_compile_config(tmp_path):
    class Doubled(keras.losses.MeanSquaredError):
        pass

    x, y = _data()
    model = _small_model()
    model.compile(optimizer="adam", loss=Doubled())
    with pytest.warns(UserWarning, match="compile settings are not saved.*Doubled"):
        model.save(tmp_path / "m.keras")
    assert "compile_config" not in json.loads(_members(tmp_path / "m.keras")["config.json"])
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "m.keras").predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_keras_file_with_unbuilt_optimizer(real_keras, tmp_path):
    """Keras writes only the step count and the rate for an optimizer compiled after
    training (not built yet): the model loads with a fresh optimizer at that rate."""
    kr = real_keras
    x, y = _data()
    k = kr.Sequential([kr.Input(shape=(5,)), kr.layers.Dense(3, activation="softmax")])
    k.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    k.fit(x, y, epochs=1, verbose=0)
    k.compile(optimizer=kr.optimizers.RMSprop(0.005), loss="sparse_categorical_crossentropy")  # fresh, unbuilt
    k.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = keras.models.load_model(tmp_path / "k.keras")
    assert type(model.optimizer).__name__ == "RMSprop" and model.optimizer.iterations == 0
    assert model.optimizer.learning_rate == pytest.approx(0.005)
    np.testing.assert_allclose(model.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@needs_functional
def test_two_outputs_compile_config_both_directions(real_keras, tmp_path):
    kr = real_keras
    kr.utils.set_random_seed(12)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(24, 4)).astype(np.float32)
    y1, y2 = x[:, :1] * 2, rng.integers(0, 3, 24)
    inputs = kr.Input(shape=(4,))
    hidden = kr.layers.Dense(6, activation="relu")(inputs)
    k = kr.Model(inputs, [kr.layers.Dense(1, name="reg")(hidden),
                          kr.layers.Dense(3, activation="softmax", name="cls")(hidden)])
    k.compile(optimizer=kr.optimizers.Adam(0.01), loss=["mse", "sparse_categorical_crossentropy"],
              loss_weights=[1.0, 0.5], metrics=[["mae"], ["accuracy"]])
    k.fit(x, [y1, y2], epochs=2, batch_size=8, verbose=0)
    k.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = keras.models.load_model(tmp_path / "k.keras")
    assert model.loss.loss_weights == [1.0, 0.5]
    assert [type(loss).__name__ for loss in model.loss.losses] == ["MeanSquaredError", "SparseCategoricalCrossentropy"]
    assert model.optimizer.iterations == int(k.optimizer.iterations.numpy())
    for a, b in zip(model.predict(x, verbose=0), k.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    model.fit(x, [y1, y2], epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "f.keras")
    config = json.loads(_members(tmp_path / "f.keras")["config.json"])["compile_config"]
    assert config["loss_weights"] == [1.0, 0.5] and len(config["loss"]) == 2
    k2 = kr.models.load_model(tmp_path / "f.keras")
    for a, b in zip(model.predict(x, verbose=0), k2.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    k2.fit(x, [y1, y2], epochs=1, verbose=0)  # Keras trains on with what it read
