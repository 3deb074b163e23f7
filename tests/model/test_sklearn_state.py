"""fusednn.sklearn's MLPs keep their optimizer across pickling: partial_fit after
pickle/joblib round trips continues the same Adam/SGD state (step count, moments,
velocities) as scikit-learn's pickled _optimizer does, and fit starts a new one."""
from __future__ import annotations

import io
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
import joblib  # noqa: E402

import fusednn  # noqa: E402
from fusednn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(regression: bool):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((250, 6))
    y = x[:, 0] - 2 * x[:, 1] if regression else (x[:, 0] + x[:, 2] > 0).astype(int)
    return x, y


def _joblib_round_trip(est):
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    return joblib.load(buf)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("round_trip", [lambda e: pickle.loads(pickle.dumps(e)), _joblib_round_trip])
@pytest.mark.parametrize("predict_first", [False, True])
def test_partial_fit_after_unpickling_continues_the_optimizer(cls, solver, round_trip, predict_first):
    x, y = _data(cls is MLPRegressor)
    a = cls(hidden_layer_sizes=(8,), solver=solver, max_iter=4, random_state=0).fit(x, y)
    b = round_trip(a)
    if predict_first:  # the model is rebuilt lazily by predict before partial_fit
        np.testing.assert_array_equal(a.predict(x), b.predict(x))
    for _ in range(2):
        a.partial_fit(x, y)
        b.partial_fit(x, y)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(wa, wb)
    assert a.loss_curve_ == b.loss_curve_


def test_a_restarted_optimizer_would_differ():
    """The test above can fail: a fresh Adam state after unpickling gives other weights."""
    x, y = _data(False)
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, random_state=0).fit(x, y)
    b = pickle.loads(pickle.dumps(a))
    b.__dict__.pop("_opt_state")
    a.partial_fit(x, y)
    b.partial_fit(x, y)
    assert max(np.abs(wa - wb).max() for wa, wb in zip(a.coefs_, b.coefs_)) > 1e-6


def test_fit_after_unpickling_starts_a_new_optimizer():
    x, y = _data(True)
    a = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(x, y)
    b = pickle.loads(pickle.dumps(a)).fit(x, y)
    fresh = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(x, y)
    for wb, wf in zip(b.coefs_, fresh.coefs_):
        np.testing.assert_array_equal(wb, wf)


def test_partial_fit_only_estimator_round_trips():
    x, y = _data(False)
    a = MLPClassifier(hidden_layer_sizes=(5,), random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.partial_fit(x, y, classes=[0, 1])
    b = pickle.loads(pickle.dumps(a))
    a.partial_fit(x, y)
    b.partial_fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))


@pytest.mark.parametrize("cls, solver, alpha, replicas", [("MLPClassifier", "adam", 1e-4, False),
                                                           ("MLPRegressor", "sgd", 1e-3, False),
                                                           ("MLPClassifier", "sgd", 0.0, False),
                                                           ("MLPClassifier", "adam", 1e-4, True),
                                                           ("MLPRegressor", "sgd", 1e-3, True)])
def test_several_epochs_per_native_run_equal_one_by_one(monkeypatch, cls, solver, alpha, replicas):
    """The estimators run up to n_iter_no_change + 1 - count epochs in one native call; the
    fit (coefficients, loss curve, epoch count, where it stopped) is bit for bit the one of
    one epoch per call, with each step's rows in one replica or split in two."""
    from fusednn.sklearn import mlp
    from fusednn.training import fused

    if fusednn.get_backend().name != "cpu":
        pytest.skip("the several-epoch runs are the cpu backend's")
    monkeypatch.setattr(fused, "REPLICAS_ENABLED", replicas)
    threads = fusednn.get_num_threads()
    fusednn.set_num_threads(2)
    rng = np.random.default_rng(2)
    # a short last batch every epoch: 203 rows at batch 50; with replicas, batch 100 and a
    # last batch of 3 rows (split 2 + 1) or of 1 row (replica 1 empty)
    n, batch = ((403 if cls == "MLPClassifier" else 401), 100) if replicas else (203, 50)
    x = rng.normal(size=(n, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) if cls == "MLPClassifier" else x[:, 0] - 2 * x[:, 2]
    est = getattr(mlp, cls)
    params = dict(hidden_layer_sizes=(7,), solver=solver, alpha=alpha, batch_size=batch, max_iter=60,
                  n_iter_no_change=4, tol=1e-2, random_state=0,
                  **({"learning_rate": "adaptive"} if solver == "sgd" else {}))
    from fusednn.training.fused import FusedTrainer

    runs = []  # (epochs asked, epochs run) of each native run
    real = FusedTrainer.run_epochs

    def spy(self, *a, **k):
        ran = real(self, *a, **k)
        runs.append((a[3].shape[0], ran))
        return ran

    monkeypatch.setattr(FusedTrainer, "run_epochs", spy)
    monkeypatch.setattr(mlp, "_RUN_SECONDS", 1e9)  # (runs not bounded by their time here)
    try:
        many = est(**params).fit(x, y)
        # after the first epoch (alone, timed) a run asked for every epoch left; the trainer's
        # own no-improvement rule ended runs early, where scikit-learn's check stops (adam)
        # or lowers the rate (sgd)
        assert runs[0][0] == 59 and any(ran < asked for asked, ran in runs)
        if solver == "sgd":  # training went on after a run ended early (its shuffles' state put back)
            assert len(runs) > 1 and runs[0][1] < runs[0][0]
        assert many._trainer.trainer.last_replicas == (2 if replicas else 1)
        monkeypatch.setattr(mlp, "_MAX_EPOCHS_PER_RUN", 1)
        one = est(**params).fit(x, y)
    finally:
        fusednn.set_num_threads(threads)
    assert many.n_iter_ == one.n_iter_
    # the runs end where scikit-learn's checks act: adam stops early, sgd's adaptive rate drops
    assert many.n_iter_ < 60 if solver == "adam" else many._lr < 1e-3
    assert many.loss_curve_ == one.loss_curve_
    for a, b in zip(many.coefs_ + many.intercepts_, one.coefs_ + one.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 331, 1347])
@pytest.mark.parametrize("epochs", [1, 3, 11])
def test_native_epoch_shuffles_are_numpys(monkeypatch, n, epochs):
    """The estimators draw each epoch's order natively from the RandomState's own
    generator: the same orders as chained ``permutation`` calls, and the same state after."""
    from fusednn.backends.compiled import native
    from fusednn.sklearn import mlp

    if native("cpu") is None:
        pytest.skip("cpu backend not built")
    calls = []
    real = native("cpu").legacy_permutations
    monkeypatch.setattr(native("cpu"), "legacy_permutations", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    for seed, drawn in ((0, 0), (12345, 317)):  # (a state in the middle of its 624-word block)
        ours, ref = np.random.RandomState(seed), np.random.RandomState(seed)
        ours.random_sample(drawn), ref.random_sample(drawn)
        start = np.arange(n, dtype=np.int64) * 5 + 2
        got = mlp._permutations(ours, start, epochs)
        order = start
        for e in range(epochs):
            order = ref.permutation(order)
            np.testing.assert_array_equal(got[e], order)
        assert ours.randint(1 << 30) == ref.randint(1 << 30) and ours.random_sample() == ref.random_sample()
    assert calls == [epochs, epochs]  # the native path ran


@pytest.mark.parametrize("n", [2, 5, 1347])
def test_native_shuffle_through_the_generators_calls_is_numpys(n):
    """Without mt19937=True (any other BitGenerator) the draws go through the generator's
    own next_uint32: PCG64 behind a RandomState gives that RandomState's permutations, and
    MT19937 the same orders and state as its inlined path."""
    from fusednn.backends.compiled import native

    cpu = native("cpu")
    if cpu is None:
        pytest.skip("cpu backend not built")
    start = np.arange(n, dtype=np.int64)
    for make in (lambda: np.random.RandomState(np.random.PCG64(7)), lambda: np.random.RandomState(7)):
        ours, ref = make(), make()
        got = cpu.legacy_permutations(ours._bit_generator.capsule, start, 4)
        order = start
        for e in range(4):
            order = ref.permutation(order)
            np.testing.assert_array_equal(got[e], order)
        assert ours.randint(1 << 30) == ref.randint(1 << 30)
    inl, called = np.random.RandomState(3), np.random.RandomState(3)
    np.testing.assert_array_equal(cpu.legacy_permutations(inl._bit_generator.capsule, start, 3, mt19937=True),
                                  cpu.legacy_permutations(called._bit_generator.capsule, start, 3))
    assert inl.random_sample() == called.random_sample()


def test_native_shuffle_rejects_bad_arguments():
    from fusednn.backends.compiled import native

    cpu = native("cpu")
    if cpu is None:
        pytest.skip("cpu backend not built")
    bitgen = np.random.RandomState(0)._bit_generator
    with pytest.raises(ValueError, match="1-D"):
        cpu.legacy_permutations(bitgen.capsule, np.zeros((2, 2), np.int64), 1)
    with pytest.raises(ValueError, match="epochs"):
        cpu.legacy_permutations(bitgen.capsule, np.arange(3, dtype=np.int64), -1)
    import ctypes
    new_capsule = ctypes.pythonapi.PyCapsule_New
    new_capsule.restype, new_capsule.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    name = ctypes.create_string_buffer(b"other")
    with pytest.raises(TypeError, match="BitGenerator capsule"):
        cpu.legacy_permutations(new_capsule(ctypes.addressof(name), name, None), np.arange(3), 1)


def test_epoch_stop_rule_runs_and_checks_its_spec():
    """The trainer's native no-improvement rule: it ends the run after the epoch where the
    count exceeds the patience, its epoch losses are the Python loop's (same bits), and a
    malformed rule is refused before the run."""
    from fusednn.sklearn import mlp

    if fusednn.get_backend().name != "cpu":
        pytest.skip("run_epochs is the cpu backend's")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(130, 5))
    y = (x[:, 0] > 0).astype(int)
    est = mlp.MLPClassifier(hidden_layer_sizes=(6,), batch_size=50, max_iter=2, random_state=0).fit(x, y)
    net, trainer = est._net, est._trainer
    xd = np.ascontiguousarray(x, dtype=np.float32)
    yd = np.ascontiguousarray(est._label_binarizer.transform(y), dtype=np.float32)
    orders = np.stack([rng.permutation(130) for _ in range(6)])
    sizes = np.array([50.0, 50.0, 30.0])

    def rule(**over):
        r = {"steps": 3, "sizes": sizes, "rows": 130.0, "ratio": 1.0, "tol": 0.0, "patience": 1.0, "best": 0.0,
             "count": 0, "losses": np.zeros(6)}
        r.update(over)
        return r

    losses = np.zeros(18, np.float32)
    r = rule()  # best 0: no epoch improves, so the count passes 1 at the second epoch
    assert trainer.run_epochs(net, xd, yd, orders, losses, epoch_stop=r) == 2
    for e in range(2):
        assert r["losses"][e] == mlp._epoch_loss(losses[3 * e:3 * e + 3], sizes, 130)
    assert not losses[6:].any()
    assert trainer.run_epochs(net, xd, yd, orders, losses, epoch_stop=rule(best=np.inf, patience=np.inf)) == 6
    for bad, match in [(rule(steps=4), "whole epochs"), (rule(sizes=np.ones(2)), "one row count a step"),
                       (rule(losses=np.zeros(5)), "one entry an epoch")]:
        with pytest.raises(ValueError, match=match):
            trainer.run_epochs(net, xd, yd, orders, losses, epoch_stop=bad)
    del r["tol"]
    with pytest.raises(ValueError, match="needs 'tol'"):
        trainer.run_epochs(net, xd, yd, orders, losses, epoch_stop=r)
