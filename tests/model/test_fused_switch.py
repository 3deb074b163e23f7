"""compile(fused="auto"|True|False): the visible switch between the fused native trainer
and the per-op path, and model.fused_reason saying why a model is not fused."""
import warnings

import numpy as np
import pytest

import fusednn
from fusednn import keras

needs_cpu = pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")


@pytest.fixture
def on_backend():
    prev = fusednn.get_backend().name

    def use(name):
        fusednn.set_backend(name)
    yield use
    fusednn.set_backend(prev)


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((40, 3)), rng.standard_normal((40, 1))


def dense_model():
    return keras.Sequential([keras.layers.Dense(4, activation="tanh", input_shape=(3,)), keras.layers.Dense(1)])


class Halve(fusednn.constraints.Constraint):  # a Python projection: the fused trainer cannot run it
    def __call__(self, w):
        return w * 0.5


def mixed_model():  # a Dense with a user constraint: trains per-op
    return keras.Sequential([keras.layers.Dense(4, input_shape=(3,), kernel_constraint=Halve()),
                             keras.layers.Dense(1)])


def fit_quietly(model, **kw):
    x, y = data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=8, **kw)
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_bad_switch_value_is_rejected():
    for bad in ("yes", 1, None, "AUTO"):
        with pytest.raises(ValueError, match="fused must be 'auto', True or False"):
            dense_model().compile("adam", "mse", fused=bad)


def test_reason_before_compile_and_build():
    model = keras.Sequential([keras.layers.Dense(1)])
    assert model.fused_reason == "the model is not compiled"
    model.compile("adam", "mse")
    assert model.fused_reason == "the model is not built yet"


@needs_cpu
def test_auto_fuses_what_it_can_and_says_why_not(on_backend):
    on_backend("cpu")
    fast = dense_model()
    fast.compile("adam", "mse")
    assert fast.fused_mode == "auto" and fast.fused_reason is None
    assert fit_quietly(fast, verbose=2, epochs=1) == []
    assert fast._fused is not None  # the native trainer ran
    slow = mixed_model()
    slow.compile("adam", "mse")
    assert "Halve" in slow.fused_reason
    assert fit_quietly(slow, verbose=0) == []  # quiet when asked to be
    told = fit_quietly(slow, verbose=2)
    assert len(told) == 1 and "per-op path" in told[0] and "Halve" in told[0]
    assert fit_quietly(slow, verbose=2) == []  # once per compile
    assert slow._fused is None


@needs_cpu
def test_true_warns_naming_the_reason_when_it_cannot_be_honoured(on_backend):
    on_backend("cpu")
    model = mixed_model()
    model.compile("adam", "mse", fused=True)
    told = fit_quietly(model, verbose=0)
    assert len(told) == 1 and told[0].startswith("compile(fused=True) cannot be honoured: ")
    assert "Halve" in told[0]
    model.compile("adam", "mse", metrics=[lambda t, p: 0.0], fused=True)
    told = fit_quietly(model, verbose=0)
    assert len(told) == 1 and "Halve" in told[0]  # recompiling tells again
    ok = dense_model()
    ok.compile("adam", "mse", fused=True)
    assert fit_quietly(ok, verbose=0) == [] and ok._fused is not None


def test_true_on_the_numpy_backend_names_the_backend(on_backend):
    on_backend("numpy")
    model = dense_model()
    model.compile("adam", "mse", fused=True)
    told = fit_quietly(model, verbose=0)
    assert len(told) == 1 and "backend 'numpy' has no fused trainer" in told[0]
    auto = dense_model()
    auto.compile("adam", "mse")
    assert fit_quietly(auto, verbose=2) == []  # nothing faster exists here: nothing to say


@needs_cpu
def test_false_always_runs_the_per_op_path(on_backend):
    on_backend("cpu")
    model = dense_model()
    model.compile("adam", "mse", fused=False)
    assert model.fused_reason == "compile(fused=False) chose the per-op path"
    assert fit_quietly(model, verbose=2) == []
    assert model._fused is None


def test_the_switch_is_saved_with_the_compile_settings(tmp_path):
    model = dense_model()
    model.compile("sgd", "mse", fused=False)
    model.save(tmp_path / "m.npz")
    assert fusednn.load_model(tmp_path / "m.npz").fused_mode is False
