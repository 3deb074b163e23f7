"""Keras 3's optimizers (fusednn.optimizers) against a float64 reimplementation of
Keras' update_step code (clipping, weight decay, EMA included), written here
independently of the kernels' step-parameter rows: ten steps on every backend.
Also: the fused trainer gives the per-op path's bits with every optimizer and
option, and the state (with a schedule in the config) survives save/load."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fusednn
from fusednn import fused, keras
from fusednn import optimizers as O
from fusednn.optimizers import schedules

# ---------------------------------------------------------------- float64 reference


def _clip(grads, cfg):
    """Keras' BaseOptimizer._clip_gradients in float64."""
    if cfg.get("clipnorm"):
        c = cfg["clipnorm"]
        return [g * c / max(math.sqrt(float(np.sum(g * g))), c) for g in grads]
    if cfg.get("global_clipnorm"):
        c = cfg["global_clipnorm"]
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        return [g * (c * min(1 / norm, 1 / c)) for g in grads]
    if cfg.get("clipvalue"):
        c = cfg["clipvalue"]
        return [np.clip(g, -c, c) for g in grads]
    return grads


def reference(name, cfg, ws, grad_steps, lr_of_step):
    """Run Keras' rules in float64 over the parameter list ``ws`` for each gradient list of
    ``grad_steps``; returns the parameters (and the EMA applied as fit's end would)."""
    ws = [w.astype(np.float64).copy() for w in ws]
    n = len(ws)
    z = lambda: [np.zeros_like(w) for w in ws]  # noqa: E731
    st = {"m": z(), "v": z(), "vh": z(), "a": z(), "mo": z(), "ag": z(), "u": z(), "d": z(),
          "acc": [np.full_like(w, cfg.get("initial_accumulator_value", 0.1)) for w in ws], "ema": z()}
    u_product = 1.0
    b1, b2 = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999 if name != "lion" else 0.99)
    eps = cfg.get("epsilon", 1e-7)
    for it, grads in enumerate(grad_steps):
        lr = lr_of_step(it)
        t = it + 1
        grads = _clip([g.astype(np.float64) for g in grads], cfg)
        wd = cfg.get("weight_decay", 0.004 if name == "adamw" else None)
        if wd is not None:
            ws = [w - w * wd * lr for w in ws]
        if name == "nadam":
            u_product = u_product * b1 * (1 - 0.5 * 0.96 ** t)
        for i in range(n):
            g, w = grads[i], ws[i]
            if name == "sgd":
                mom = cfg.get("momentum", 0.0)
                if mom:
                    st["m"][i] = st["m"][i] * mom - g * lr
                    w = w + (st["m"][i] * mom - g * lr if cfg.get("nesterov") else st["m"][i])
                else:
                    w = w - g * lr
            elif name in ("adam", "adamw"):
                alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                st["m"][i] += (g - st["m"][i]) * (1 - b1)
                st["v"][i] += (g * g - st["v"][i]) * (1 - b2)
                v = st["v"][i]
                if cfg.get("amsgrad"):
                    st["vh"][i] = np.maximum(st["vh"][i], v)
                    v = st["vh"][i]
                w = w - st["m"][i] * alpha / (np.sqrt(v) + eps)
            elif name == "rmsprop":
                rho, mom = cfg.get("rho", 0.9), cfg.get("momentum", 0.0)
                st["v"][i] = rho * st["v"][i] + (1 - rho) * g * g
                if cfg.get("centered"):
                    st["ag"][i] = rho * st["ag"][i] + (1 - rho) * g
                    den = st["v"][i] - st["ag"][i] ** 2 + eps
                else:
                    den = st["v"][i] + eps
                inc = lr * g / np.sqrt(den)
                if mom > 0:
                    st["mo"][i] = mom * st["mo"][i] + inc
                    w = w - st["mo"][i]
                else:
                    w = w - inc
            elif name == "adagrad":
                st["acc"][i] = st["acc"][i] + g * g
                w = w - lr * g / np.sqrt(st["acc"][i] + eps)
            elif name == "adadelta":
                rho = cfg.get("rho", 0.95)
                st["a"][i] = rho * st["a"][i] + (1 - rho) * g * g
                delta = -np.sqrt(st["d"][i] + eps) * g / np.sqrt(st["a"][i] + eps)
                st["d"][i] = rho * st["d"][i] + (1 - rho) * delta * delta
                w = w + lr * delta
            elif name == "adamax":
                st["m"][i] += (g - st["m"][i]) * (1 - b1)
                st["u"][i] = np.maximum(b2 * st["u"][i], np.abs(g))
                w = w - lr * st["m"][i] / ((1 - b1 ** t) * (st["u"][i] + eps))
            elif name == "nadam":
                u_t = b1 * (1 - 0.5 * 0.96 ** t)
                u_t1 = b1 * (1 - 0.5 * 0.96 ** (t + 1))
                up1 = u_product * u_t1
                st["m"][i] += (g - st["m"][i]) * (1 - b1)
                st["v"][i] += (g * g - st["v"][i]) * (1 - b2)
                m_hat = u_t1 * st["m"][i] / (1 - up1) + (1 - u_t) * g / (1 - u_product)
                v_hat = st["v"][i] / (1 - b2 ** t)
                w = w - m_hat * lr / (np.sqrt(v_hat) + eps)
            elif name == "lion":
                w = w - lr * np.sign(st["m"][i] * b1 + g * (1 - b1))
                st["m"][i] = st["m"][i] * b2 + g * (1 - b2)
            ws[i] = w
        if cfg.get("use_ema"):
            mom = cfg.get("ema_momentum", 0.99) if it != 0 else 0.0
            st["ema"] = [mom * a + (1 - mom) * w for a, w in zip(st["ema"], ws)]
            freq = cfg.get("ema_overwrite_frequency")
            if freq and (it + 1) % freq == 0:
                ws = [a.copy() for a in st["ema"]]
    if cfg.get("use_ema"):
        ws = [a.copy() for a in st["ema"]]  # finalize_variable_values
    return ws


CLASSES = {"sgd": O.SGD, "adam": O.Adam, "adamw": O.AdamW, "rmsprop": O.RMSprop, "adagrad": O.Adagrad,
           "adadelta": O.Adadelta, "adamax": O.Adamax, "nadam": O.Nadam, "lion": O.Lion}

CASES = [
    ("sgd", {"learning_rate": 0.1}),
    ("sgd", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("adam", {"learning_rate": 0.01, "clipnorm": 0.5}),
    ("adamw", {"learning_rate": 0.01}),
    ("adamw", {"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True, "global_clipnorm": 1.0}),
    ("rmsprop", {"learning_rate": 0.01}),
    ("rmsprop", {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.9, "centered": True}),
    ("rmsprop", {"learning_rate": 0.01, "centered": True, "clipvalue": 0.3}),
    ("adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.2}),
    ("adadelta", {"learning_rate": 1.0}),
    ("adadelta", {"learning_rate": 1.0, "rho": 0.9, "weight_decay": 0.05}),
    ("adamax", {"learning_rate": 0.02}),
    ("nadam", {"learning_rate": 0.01}),
    ("nadam", {"learning_rate": 0.01, "beta_1": 0.8, "use_ema": True, "ema_momentum": 0.9}),
    ("lion", {"learning_rate": 0.01}),
    ("lion", {"learning_rate": 0.01, "beta_1": 0.95, "weight_decay": 0.1, "global_clipnorm": 0.5}),
    ("adam", {"learning_rate": 0.01, "use_ema": True, "ema_momentum": 0.8, "ema_overwrite_frequency": 3}),
]


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _check_moved(ours, ref, w0):
    """What the steps moved each parameter by agrees to 1e-5 of the largest move, plus
    the float32 rounding of the parameter itself (4 ulp of its size): a sharper test
    than comparing the parameters when the moves are small."""
    ulp = np.finfo(np.float32).eps
    for o, r, w in zip(ours, ref, w0):
        dr = r - w
        err = np.max(np.abs((o - w) - dr))
        assert err <= 1e-5 * np.max(np.abs(dr)) + 4 * ulp * np.max(np.abs(w)), (err, np.max(np.abs(dr)))


def _run_ours(opt, shapes, w0, grad_steps):
    be = fusednn.get_backend()
    params = [be.asarray(w.copy()) for w in w0]  # never the caller's arrays (numpy: same object)
    opt.build(be, params)
    for grads in grad_steps:
        opt.apply([be.asarray(g) for g in grads])
    opt.finalize_variable_values()
    return [np.asarray(be.to_numpy(p), dtype=np.float64) for p in params]


def _data(seed, shapes, steps=10):
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[(rng.standard_normal(s) * (1 + k)).astype(np.float32) for s in shapes] for k in range(steps)]
    return w0, grads


SHAPES = [(1,), (37,), (5, 3)]  # size 1, not a multiple of any vector width, 2-D


@pytest.mark.parametrize("name,cfg", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_ten_steps_match_float64_keras_formula(backend_name, name, cfg):
    w0, grads = _data(1, SHAPES)
    ours = _run_ours(CLASSES[name](**cfg), SHAPES, w0, grads)
    ref = reference(name, cfg, w0, grads, lambda it: cfg["learning_rate"])
    for o, r in zip(ours, ref):
        assert _rel(o, r) <= 1e-5
    _check_moved(ours, ref, w0)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "nadam", "lion"])
def test_schedule_drives_every_optimizer(backend_name, name):
    sched = schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5)
    w0, grads = _data(2, [(9,), (2, 4)])
    ours = _run_ours(CLASSES[name](learning_rate=sched), None, w0, grads)
    ref = reference(name, {}, w0, grads, lambda it: 0.05 * 0.5 ** (it / 3))
    for o, r in zip(ours, ref):
        assert _rel(o, r) <= 1e-5
    _check_moved(ours, ref, w0)


def test_backends_agree_to_rounding():
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    w0, grads = _data(3, [(300,)])
    out = {}
    prev = fusednn.get_backend().name
    try:
        for be in ("numpy", "cpu"):
            fusednn.set_backend(be)
            out[be] = _run_ours(O.Nadam(0.01, clipnorm=1.0, use_ema=True), None, w0, grads)[0]
    finally:
        fusednn.set_backend(prev)
    np.testing.assert_allclose(out["cpu"], out["numpy"], rtol=2e-6, atol=1e-7)


# ---------------------------------------------------------------- PyTorch, where it has the algorithm

torch = None
try:
    import torch  # noqa: F811
except ImportError:  # pragma: no cover - CI installs it
    pass

# Keras adds epsilon inside the square root (RMSprop, Adagrad), to u (Adamax) or to the
# uncorrected sqrt(v) (Adam); torch elsewhere: epsilon 0 makes the formulas the same.
TORCH = [
    ("rmsprop", {"learning_rate": 0.01, "epsilon": 0.0},
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=0.0)),
    ("rmsprop", {"learning_rate": 0.01, "epsilon": 0.0, "momentum": 0.5, "centered": True},
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=0.0, momentum=0.5, centered=True)),
    ("adagrad", {"learning_rate": 0.1, "epsilon": 0.0},
     lambda p: torch.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.1, eps=0.0)),
    ("adadelta", {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6},
     lambda p: torch.optim.Adadelta(p, lr=1.0, rho=0.9, eps=1e-6)),
    ("adamax", {"learning_rate": 0.02, "epsilon": 0.0},
     lambda p: torch.optim.Adamax(p, lr=0.02, eps=0.0)),
    ("nadam", {"learning_rate": 0.01, "epsilon": 0.0},
     lambda p: torch.optim.NAdam(p, lr=0.01, eps=0.0, momentum_decay=1.0)),
    ("adamw", {"learning_rate": 0.01, "epsilon": 0.0, "weight_decay": 0.1, "amsgrad": True},
     lambda p: torch.optim.AdamW(p, lr=0.01, eps=0.0, weight_decay=0.1, amsgrad=True)),
]


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch==2.13.0)")
@pytest.mark.parametrize("name,cfg,make", TORCH, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(TORCH)])
def test_ten_steps_match_pytorch(host_backend_name, name, cfg, make):
    w0, grads = _data(4, [(37,), (4, 3)])
    ours = _run_ours(CLASSES[name](**cfg), None, w0, grads)
    params = [torch.tensor(w.astype(np.float64), requires_grad=True) for w in w0]
    opt = make(params)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = torch.tensor(g.astype(np.float64))
        opt.step()
    theirs = [p.detach().numpy() for p in params]
    for o, t in zip(ours, theirs):
        assert _rel(o, t) <= 1e-5
    _check_moved(ours, theirs, w0)


# ---------------------------------------------------------------- fused == per-op


def _model(optimizer, n_in=7):
    fusednn.utils.set_random_seed(3)
    model = keras.Sequential([keras.layers.Dense(16, activation="tanh", input_shape=(n_in,)),
                              keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _fit(model, x, y, per_op, monkeypatch, **kw):
    if per_op:
        monkeypatch.setattr(fused, "unsupported_reason", lambda m: "forced off by the test")
    fusednn.utils.set_random_seed(11)
    hist = model.fit(x, y, verbose=0, **kw)
    monkeypatch.undo()
    return hist


FUSED = [lambda: O.RMSprop(0.01, momentum=0.5, centered=True, clipnorm=0.5),
         lambda: O.AdamW(schedules.CosineDecay(0.01, 20, warmup_target=0.02, warmup_steps=5), amsgrad=True),
         lambda: O.Adagrad(0.05, global_clipnorm=0.3),
         lambda: O.Adadelta(1.0, clipvalue=0.1, weight_decay=0.01),
         lambda: O.Adamax(schedules.PiecewiseConstantDecay([4, 9], [0.02, 0.01, 0.005])),
         lambda: O.Nadam(0.01, use_ema=True, ema_overwrite_frequency=4),
         lambda: O.Lion(schedules.InverseTimeDecay(0.003, 5, 0.5), weight_decay=0.1),
         lambda: O.SGD(schedules.ExponentialDecay(0.05, 3, 0.9, staircase=True), momentum=0.9, nesterov=True)]


@pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")
@pytest.mark.parametrize("make", FUSED)
def test_fused_equals_per_op(monkeypatch, make):
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((53, 7)), rng.standard_normal((53, 2))
        a, b = _model(make()), _model(make())
        ha = _fit(a, x, y, False, monkeypatch, epochs=3, batch_size=8)
        hb = _fit(b, x, y, True, monkeypatch, epochs=3, batch_size=8)
        assert a._fused is not None and b._fused is None
        assert a.optimizer.iterations == b.optimizer.iterations == 21
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)  # same kernel, same step rows: same bits
        np.testing.assert_array_equal(ha.history["loss"], hb.history["loss"])
    finally:
        fusednn.set_backend(prev)


# ---------------------------------------------------------------- saving, config, names


def test_save_load_continues_exactly(backend_name, tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((40, 7)), rng.standard_normal((40, 2))
    make = lambda: O.Nadam(schedules.CosineDecayRestarts(0.01, 4), use_ema=True, clipnorm=1.0)  # noqa: E731
    a = _model(make())
    fusednn.utils.set_random_seed(1)
    a.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    a.save(tmp_path / "m.npz")
    b = fusednn.load_model(tmp_path / "m.npz")
    assert isinstance(b.optimizer, O.Nadam) and b.optimizer.iterations == 10
    assert isinstance(b.optimizer._learning_rate, schedules.CosineDecayRestarts)
    assert b.optimizer.get_config() == a.optimizer.get_config()
    for sa, sb in zip(a.optimizer.get_state()[1], b.optimizer.get_state()[1]):
        np.testing.assert_array_equal(sa, sb)
    a.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    b.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_names_configs_and_defaults(name):
    opt = O.get(name)
    assert type(opt) is CLASSES[name] and O.get(name.upper()).__class__ is CLASSES[name]
    cfg = opt.get_config()
    assert cfg["learning_rate"] == (0.01 if name == "sgd" else 0.001)
    for key in ("weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "use_ema", "ema_momentum",
                "ema_overwrite_frequency"):
        assert key in cfg
    again = O.deserialize(O.serialize(opt))
    assert type(again) is type(opt) and again.get_config() == cfg
    assert O.get({"class_name": CLASSES[name].__name__, "config": cfg}).get_config() == cfg


def test_keras_defaults():
    assert O.AdamW().weight_decay == 0.004
    r = O.RMSprop()
    assert (r.rho, r.momentum, r.epsilon, r.centered) == (0.9, 0.0, 1e-7, False)
    assert O.Adagrad().initial_accumulator_value == 0.1 and O.Adadelta().rho == 0.95
    assert (O.Lion().beta_1, O.Lion().beta_2) == (0.9, 0.99)
    assert O.Adam().amsgrad is False and O.Adam().ema_momentum == 0.99
    assert keras.optimizers.schedules.ExponentialDecay is schedules.ExponentialDecay


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        O.Adam(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        O.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="beta_1"):
        O.Lion(beta_1=0.0)
    with pytest.raises(ValueError, match="ema_momentum"):
        O.SGD(use_ema=True, ema_momentum=1.5)
    with pytest.raises(ValueError, match="not supported"):
        O.Adam(gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="not recognized"):
        O.Adam(betas=(0.9, 0.99))
    with pytest.warns(UserWarning, match="decay"):
        O.SGD(decay=1e-4)
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        O.get("adamm")
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="1 less than"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1])


def test_learning_rate_read_and_assigned_like_keras():
    opt = O.SGD(0.1)
    assert opt.learning_rate == 0.1
    opt.learning_rate = 0.05
    assert opt.learning_rate == 0.05
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0
    sched = schedules.ExponentialDecay(0.1, 10, 0.5)
    opt = O.Adam(sched)
    opt.iterations = 10
    assert opt.learning_rate == pytest.approx(0.05, rel=1e-12)
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.1
    opt.learning_rate = schedules.InverseTimeDecay(0.1, 1, 1.0)  # another schedule may replace it
    assert opt.learning_rate == pytest.approx(0.1 / 11)
    # callables: Keras calls a plain callable with no argument; one taking the step gets it
    opt = O.SGD(lambda: 0.3)
    assert opt.learning_rate == 0.3
    opt = O.SGD(lambda step: 0.1 / (step + 1))
    assert list(opt.learning_rates(0, 3)) == [0.1, 0.05, 0.1 / 3]


def test_schedule_assigned_between_fits_reaches_the_fused_trainer(monkeypatch):
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((32, 7)), rng.standard_normal((32, 2))
    m = _model(O.SGD(0.1))
    _fit(m, x, y, False, monkeypatch, epochs=1, batch_size=32)
    before = [w.copy() for w in m.get_weights()]
    m.optimizer.learning_rate = schedules.PiecewiseConstantDecay([0], [0.1, 0.0])  # 0 after step 0
    _fit(m, x, y, False, monkeypatch, epochs=2, batch_size=32)
    for w0, w1 in zip(before, m.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_ops_optimizer_update_is_the_optimizers_kernel(host_backend_name):
    from fusednn import ops

    w0, grads = _data(7, [(33,)], steps=3)
    opt = O.RMSprop(0.01, momentum=0.5, centered=True, clipnorm=0.4)
    ours = _run_ours(opt, None, w0, grads)[0]
    w = w0[0].copy()
    s = [np.zeros_like(w) for _ in range(3)]
    spec = opt.kernel_spec()
    for k, (g,) in enumerate(grads):
        ops.optimizer_update(w, g, kind="rmsprop", flags=spec["flags"], step_params=opt.step_params(k, 1)[0],
                             s1=s[0], s2=s[1], s3=s[2], sumsq=ops.sum_squares(g))
    np.testing.assert_allclose(w, ours, rtol=1e-6, atol=1e-7)
    assert ops.sum_squares(np.array([3.0, 4.0])) == 25.0
    P = opt.step_params(0, 1)[0]
    with pytest.raises(ValueError, match="needs state array s3"):
        ops.optimizer_update(w, g, kind="rmsprop", flags=spec["flags"], step_params=P, s1=s[0], s2=s[1])
    with pytest.raises(ValueError, match="same shape"):
        ops.optimizer_update(w, g[:5], kind="adagrad", step_params=P, s1=s[0])
    with pytest.raises(TypeError, match="float32"):
        ops.optimizer_update(w.astype(np.float64), g, kind="adagrad", step_params=P, s1=s[0])
    with pytest.raises(ValueError, match="unknown optimizer kind"):
        ops.optimizer_update(w, g, kind="adamm", step_params=P)
    with pytest.raises(ValueError, match="step_params"):
        ops.optimizer_update(w, g, kind="sgd", step_params=P[:3])


@pytest.mark.skipif("cpu" not in fusednn.backends.available(), reason="cpu backend not built")
@pytest.mark.parametrize("n", [1, 7, 8, 511, 513, 70001])  # around the lane, block and threading sizes
def test_portable_and_simd_paths_agree(n):
    k = fusednn.backends.native("cpu")
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    ref = float(np.sum(x.astype(np.float64) ** 2))
    sums = []
    outs = []
    for portable in (True, False):
        k.force_portable(portable)
        try:
            sums.append(k.sum_squares(x))
            opt = O.RMSprop(0.01, momentum=0.5, centered=True, clipvalue=0.5, weight_decay=0.1, use_ema=True)
            w = rng.standard_normal(n).astype(np.float32) if not outs else outs[0][1].copy()
            w0 = w.copy()
            states = [np.zeros(n, np.float32) for _ in range(4)]
            spec = opt.kernel_spec()
            for t in range(3):
                k.optimizer_update(spec["kind"], spec["flags"], opt.step_params(t, 1)[0], w, x, *states, 0.0)
            outs.append((w, w0))
        finally:
            k.force_portable(False)
    assert sums[0] == sums[1]  # one order of additions on both paths
    assert sums[0] == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("make", FUSED)
def test_fused_cuda_matches_per_op_and_cpu(monkeypatch, make):
    """On the GPU the fused trainer queues the same rule (clipping norms summed on the
    device): per-op and fused agree to float32 rounding, and with the cpu backend."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((53, 7)), rng.standard_normal((53, 2))
    prev = fusednn.get_backend().name
    out = {}
    try:
        for be, per_op in (("cuda", False), ("cuda", True), ("cpu", True)):
            fusednn.set_backend(be)
            m = _model(make())
            _fit(m, x, y, per_op, monkeypatch, epochs=3, batch_size=8)
            assert (m._fused is None) == per_op
            out[(be, per_op)] = m.get_weights()
    finally:
        fusednn.set_backend(prev)
    # Lion steps by +-lr: a sign that rounding tips may move a weight by 2 lr
    atol = 1e-2 if isinstance(make(), O.Lion) else 1e-5
    for key in (("cuda", True), ("cpu", True)):
        for wa, wb in zip(out[("cuda", False)], out[key]):
            np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=atol)


def test_exclude_from_weight_decay(backend_name, monkeypatch):
    """Zero gradients leave only the decay: the kernel shrinks by (1 - wd*lr) per step,
    an excluded bias does not move; the fused trainer honours it too."""
    be = fusednn.get_backend()
    w, b = be.asarray(np.full((3, 2), 2.0, np.float32)), be.asarray(np.ones(2, np.float32))
    opt = O.AdamW(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.build(be, [w, b], ["kernel", "bias"])
    for _ in range(3):
        opt.apply([be.zeros(w.shape), be.zeros(b.shape)])
    np.testing.assert_allclose(be.to_numpy(w), 2.0 * 0.95 ** 3, rtol=1e-6)
    np.testing.assert_array_equal(be.to_numpy(b), 1.0)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        opt.exclude_from_weight_decay(var_names=["kernel"])
    # by identity (var_list), through a model, fused and per-op alike
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((24, 7)), rng.standard_normal((24, 2))
    out = []
    for per_op in (False, True):
        fusednn.utils.set_random_seed(3)
        model = keras.Sequential([keras.layers.Dense(16, activation="tanh", input_shape=(7,)), keras.layers.Dense(2)])
        assert model.weight_names == ["kernel", "bias", "kernel", "bias"]
        opt = O.AdamW(0.01, weight_decay=0.3)
        opt.exclude_from_weight_decay(var_list=[model.layers[0].kernel])
        model.compile(optimizer=opt, loss="mse")
        assert [opt.uses_weight_decay(i) for i in range(4)] == [False, True, True, True]
        _fit(model, x, y, per_op, monkeypatch, epochs=2, batch_size=8)
        out.append(model.get_weights())
    for wa, wb in zip(*out):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
