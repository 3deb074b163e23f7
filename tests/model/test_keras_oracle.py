"""fusednn's optimizers and schedules against Keras 3 itself (the torch backend, CPU):
ten steps of each optimizer from the same float32 variables and gradients, and every
schedule at every step. Keras computes in float32 with its own operation order per
backend, so agreement is to float32 rounding accumulated over ten steps (1e-5)."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # the oracle's backend: torch is a test dependency
pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
keras3 = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")
if keras3.backend.backend() != "torch":  # pragma: no cover - another backend was configured first
    pytest.skip(f"Keras runs on {keras3.backend.backend()!r}, this test needs the torch backend",
                allow_module_level=True)

import fusednn  # noqa: E402
from fusednn import keras  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CASES = [
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"learning_rate": 0.01, "amsgrad": True, "clipnorm": 0.5}),
    ("AdamW", {"learning_rate": 0.01, "global_clipnorm": 1.0}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    ("RMSprop", {"learning_rate": 0.01, "clipvalue": 0.3}),
    ("Adagrad", {"learning_rate": 0.1}),
    ("Adadelta", {"learning_rate": 1.0, "weight_decay": 0.05}),
    ("Adamax", {"learning_rate": 0.02}),
    ("Nadam", {"learning_rate": 0.01, "use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 4}),
    ("Lion", {"learning_rate": 0.01, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("name,cfg", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_ten_steps_match_keras(host_backend_name, name, cfg):
    rng = np.random.default_rng(0)
    shapes = [(37,), (5, 3)]
    w0 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[(rng.standard_normal(s) * (1 + k)).astype(np.float32) for s in shapes] for k in range(10)]

    kvars = [keras3.Variable(w.copy(), dtype="float32") for w in w0]
    kopt = getattr(keras3.optimizers, name)(**cfg)
    for gs in grads:
        kopt.apply([keras3.ops.convert_to_tensor(g) for g in gs], kvars)
    kopt.finalize_variable_values(kvars)
    theirs = [keras3.ops.convert_to_numpy(v) for v in kvars]

    be = fusednn.get_backend()
    params = [be.asarray(w.copy()) for w in w0]
    opt = getattr(keras.optimizers, name)(**cfg)
    opt.build(be, params)
    for gs in grads:
        opt.apply([be.asarray(g) for g in gs])
    opt.finalize_variable_values()
    ours = [np.asarray(be.to_numpy(p)) for p in params]

    ulp = np.finfo(np.float32).eps
    for o, t, w in zip(ours, theirs, w0):
        moved = t.astype(np.float64) - w
        err = np.max(np.abs(o.astype(np.float64) - t))
        assert err <= 1e-5 * np.max(np.abs(moved)) + 8 * ulp * np.max(np.abs(w)), (name, err)
    assert opt.iterations == int(keras3.ops.convert_to_numpy(kopt.iterations))


SCHEDULES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.9, staircase=True)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.5, decay_steps=3, decay_rate=0.25)),
    ("PiecewiseConstantDecay", dict(boundaries=[10, 50], values=[1.0, 0.5, 0.1])),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=70, end_learning_rate=0.01, power=0.5,
                             cycle=True)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=100, alpha=0.1, warmup_target=0.3,
                         warmup_steps=40)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=20, t_mul=1.5, m_mul=0.5)),
]


@pytest.mark.parametrize("name,cfg", SCHEDULES, ids=[n for n, _ in SCHEDULES])
def test_schedules_match_keras_at_every_step(name, cfg):
    ks = getattr(keras3.optimizers.schedules, name)(**cfg)
    ours = getattr(keras.optimizers.schedules, name)(**cfg)
    steps = np.arange(300)
    theirs = np.array([float(keras3.ops.convert_to_numpy(ks(int(s)))) for s in steps])
    mine = ours.at_steps(steps)
    if name == "CosineDecayRestarts":
        # At the first step of a restart, floor(log(1 + f (t_mul - 1)) / log(t_mul)) is an exact
        # integer in float64 but may round below it in Keras' float32 (step 50 here: Keras
        # gives the end of period 1, 0.0, where the formula gives the start of period 2, the
        # value fusednn's float64 evaluation gives). Compare everywhere else.
        starts = {20, 50, 95, 162}
        keep = np.array([s not in starts for s in steps])
        assert mine[50] == pytest.approx(0.1 * 0.5 ** 2) and theirs[50] in (0.0, pytest.approx(0.025))
        mine, theirs = mine[keep], theirs[keep]
    # Keras evaluates in float32: agreement to float32 rounding of the intermediate steps
    np.testing.assert_allclose(mine, theirs, rtol=2e-6, atol=1e-6 * np.max(np.abs(theirs)))
    assert ours.get_config() == {k: v for k, v in ks.get_config().items()}
    assert keras3.optimizers.schedules.serialize(ks)["config"] == keras.optimizers.schedules.serialize(ours)["config"]


def test_configs_have_keras_keys():
    for name, cfg in CASES:
        theirs = getattr(keras3.optimizers, name)(**cfg).get_config()
        ours = getattr(keras.optimizers, name)(**cfg).get_config()
        assert set(ours) == set(theirs), name
        for k in ours:
            if k not in ("name",):
                assert ours[k] == pytest.approx(theirs[k]) if isinstance(ours[k], float) else ours[k] == theirs[k], k
