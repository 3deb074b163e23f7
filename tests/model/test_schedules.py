"""Learning-rate schedules (keras.optimizers.schedules) against float64 scalar
reimplementations of Keras 3's formulas, at every step, rounded to float32 (what the
kernels receive); serialisation as Keras does it; custom schedules and callables."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fusednn
from fusednn import keras
from fusednn.optimizers import schedules as S

STEPS = np.arange(0, 400, dtype=np.int64)


def exp_decay(s, init, ds, rate, stair=False):
    p = s / ds
    return init * rate ** (math.floor(p) if stair else p)


def inv_time(s, init, ds, rate, stair=False):
    p = s / ds
    return init / (1 + rate * (math.floor(p) if stair else p))


def piecewise(s, bounds, values):
    if s <= bounds[0]:
        return values[0]
    for lo, hi, v in zip(bounds[:-1], bounds[1:], values[1:-1]):
        if lo < s <= hi:
            return v
    return values[-1]


def poly(s, init, ds, end=0.0001, power=1.0, cycle=False):
    if cycle:
        ds = ds * (1.0 if s == 0 else math.ceil(s / ds))
    else:
        s = min(s, ds)
    return (init - end) * (1 - s / ds) ** power + end


def cosine(s, init, ds, alpha=0.0, warmup_target=None, warmup_steps=0):
    def decay(step, frm):
        return frm * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / ds)) + alpha)
    if warmup_target is None:
        return decay(min(s, ds), init)
    s = min(s, ds + warmup_steps)
    if s < warmup_steps:
        return (warmup_target - init) * (s / warmup_steps) + init
    return decay(s - warmup_steps, warmup_target)


def restarts(s, init, first, t_mul=2.0, m_mul=1.0, alpha=0.0):
    frac = s / first
    if t_mul == 1.0:
        i = math.floor(frac)
        frac -= i
    else:
        i = math.floor(math.log(1 - frac * (1 - t_mul)) / math.log(t_mul))
        frac = (frac - (1 - t_mul ** i) / (1 - t_mul)) / t_mul ** i
    return init * ((1 - alpha) * 0.5 * m_mul ** i * (1 + math.cos(math.pi * frac)) + alpha)


CASES = [
    (S.ExponentialDecay(0.1, 7, 0.9), lambda s: exp_decay(s, 0.1, 7, 0.9)),
    (S.ExponentialDecay(0.1, 7, 0.9, staircase=True), lambda s: exp_decay(s, 0.1, 7, 0.9, True)),
    (S.InverseTimeDecay(0.5, 3, 0.25), lambda s: inv_time(s, 0.5, 3, 0.25)),
    (S.InverseTimeDecay(0.5, 3, 0.25, staircase=True), lambda s: inv_time(s, 0.5, 3, 0.25, True)),
    (S.PiecewiseConstantDecay([10, 50, 51], [1.0, 0.5, 0.25, 0.1]),
     lambda s: piecewise(s, [10, 50, 51], [1.0, 0.5, 0.25, 0.1])),
    (S.PiecewiseConstantDecay([100], [0.3, 0.03]), lambda s: piecewise(s, [100], [0.3, 0.03])),
    (S.PolynomialDecay(0.1, 120), lambda s: poly(s, 0.1, 120)),
    (S.PolynomialDecay(0.1, 70, end_learning_rate=0.01, power=0.5, cycle=True),
     lambda s: poly(s, 0.1, 70, 0.01, 0.5, True)),
    (S.CosineDecay(0.2, 150), lambda s: cosine(s, 0.2, 150)),
    (S.CosineDecay(0.0, 100, alpha=0.1, warmup_target=0.3, warmup_steps=40),
     lambda s: cosine(s, 0.0, 100, 0.1, 0.3, 40)),
    (S.CosineDecayRestarts(0.1, 30), lambda s: restarts(s, 0.1, 30)),
    (S.CosineDecayRestarts(0.1, 25, t_mul=1.0, m_mul=0.8, alpha=0.05),
     lambda s: restarts(s, 0.1, 25, 1.0, 0.8, 0.05)),
    (S.CosineDecayRestarts(0.1, 20, t_mul=1.5, m_mul=0.5), lambda s: restarts(s, 0.1, 20, 1.5, 0.5)),
]


@pytest.mark.parametrize("sched,formula", CASES, ids=lambda c: type(c).__name__ if isinstance(c, S.LearningRateSchedule) else "")
def test_every_step_matches_the_float64_formula(sched, formula):
    ref = np.array([formula(int(s)) for s in STEPS], dtype=np.float64)
    ours = sched.at_steps(STEPS)
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-16)
    # what the kernels get: float32, exactly the float32 rounding of the formula's value
    np.testing.assert_array_equal(ours.astype(np.float32), ref.astype(np.float32))
    # the rows an optimizer hands the trainer for a run of steps 123..222
    opt = keras.optimizers.SGD(learning_rate=sched)
    rows = opt.step_params(123, 100)
    np.testing.assert_array_equal(rows[:, 0], ref[123:223].astype(np.float32))
    assert sched(17) == pytest.approx(formula(17), rel=1e-13)


@pytest.mark.parametrize("sched", [c[0] for c in CASES], ids=lambda c: type(c).__name__)
def test_serialize_round_trip(sched):
    spec = S.serialize(sched)
    assert spec["class_name"] == type(sched).__name__ and spec["config"] == sched.get_config()
    again = S.deserialize(spec)
    np.testing.assert_array_equal(again.at_steps(STEPS), sched.at_steps(STEPS))
    opt = keras.optimizers.Adam(learning_rate=sched)
    cfg = opt.get_config()
    assert cfg["learning_rate"] == spec  # saved in the optimizer config as Keras does
    back = keras.optimizers.Adam.from_config(cfg)
    np.testing.assert_array_equal(back.learning_rates(0, 50), opt.learning_rates(0, 50))


class HalfEvery(S.LearningRateSchedule):
    """A user schedule: only __call__ and get_config, as in Keras' docs."""

    def __init__(self, initial, every):
        self.initial, self.every = initial, every

    def __call__(self, step):
        return self.initial * 0.5 ** (step // self.every)

    def get_config(self):
        return {"initial": self.initial, "every": self.every}


def test_custom_schedule_trains_fused_and_saves(tmp_path, host_backend_name):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 3)), rng.standard_normal((64, 1))
    fusednn.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(4, input_shape=(3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(HalfEvery(0.1, 4)), loss="mse")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert model.optimizer.iterations == 8 and model.optimizer.learning_rate == pytest.approx(0.025)
    model.save(tmp_path / "m.npz")
    back = fusednn.load_model(tmp_path / "m.npz")
    assert isinstance(back.optimizer._learning_rate, HalfEvery) and back.optimizer.learning_rate == 0.025


def test_unknown_or_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match="unknown learning rate schedule class"):
        S.deserialize({"class_name": "NoSuchDecay", "config": {}})
    with pytest.raises(ValueError, match="first_decay_steps"):
        S.CosineDecayRestarts(0.1, 0)

    class NoConfig(S.LearningRateSchedule):
        def __call__(self, step):
            return 0.1

    with pytest.raises(NotImplementedError, match="get_config"):
        keras.optimizers.SGD(NoConfig()).get_config()
    with pytest.raises(TypeError, match="plain callable"):
        keras.optimizers.SGD(lambda: 0.1).get_config()
