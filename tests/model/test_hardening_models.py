"""Regression tests for the model-level defects of issue 13: inference from several
threads (6), batch sizes larger than the data (8) and Ctrl-C during fit (9). Each
failed before its fix."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fusednn
from fusednn import keras


def _model():
    model = keras.Sequential([keras.layers.Dense(32, activation="relu", input_shape=(8,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


# ------------------------------------------------------------- defect 6: threads
def test_concurrent_predict_and_evaluate_are_correct(host_backend_name):
    rng = np.random.default_rng(0)
    model = _model()
    xs = [rng.standard_normal((150 + 11 * i, 8)).astype(np.float32) for i in range(6)]
    ys = [rng.standard_normal((len(x), 3)).astype(np.float32) for x in xs]
    ref_p = [model.predict(x, batch_size=16, verbose=0) for x in xs]
    ref_e = [model.evaluate(x, y, batch_size=16, verbose=0) for x, y in zip(xs, ys)]
    wrong, errors = [], []

    def work(i):
        try:
            for _ in range(15):
                if not np.array_equal(model.predict(xs[i], batch_size=16, verbose=0), ref_p[i]):
                    wrong.append(("predict", i))
                if model.evaluate(xs[i], ys[i], batch_size=16, verbose=0) != ref_e[i]:
                    wrong.append(("evaluate", i))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors and not wrong, (errors, wrong[:5], len(wrong))


def test_fit_beside_inference_in_another_thread_is_a_clear_error(host_backend_name):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((64, 8)), rng.standard_normal((64, 3))
    model = _model()
    in_fit, release = threading.Event(), threading.Event()
    seen = {}

    class Hold(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen["own_predict"] = self.model.predict(x[:4], verbose=0).shape  # same thread: allowed
            in_fit.set()
            release.wait(10)

    t = threading.Thread(target=lambda: model.fit(x, y, epochs=1, verbose=0, callbacks=[Hold()]))
    t.start()
    try:
        assert in_fit.wait(30)
        with pytest.raises(RuntimeError, match="being fit in another thread"):
            model.predict(x, verbose=0)
        with pytest.raises(RuntimeError, match="being fit in another thread"):
            model.evaluate(x, y, verbose=0)
        with pytest.raises(RuntimeError, match="already being fit"):
            model.fit(x, y, epochs=1, verbose=0)
    finally:
        release.set()
        t.join(30)
    assert seen["own_predict"] == (4, 3)
    model.predict(x, verbose=0)  # after the fit: fine again


def test_fit_refused_while_another_thread_predicts(host_backend_name):
    model = _model()
    x, y = np.ones((8, 8), np.float32), np.ones((8, 3), np.float32)
    started, release = threading.Event(), threading.Event()

    def hold():
        with model._guard.inferring(model.name, "predict"):  # a predict in progress, held open
            started.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert started.wait(10)
        with pytest.raises(RuntimeError, match="running predict/evaluate in another thread"):
            model.fit(x, y, verbose=0)
    finally:
        release.set()
        t.join(10)
    model.fit(x, y, verbose=0)


# ------------------------------------------------------- defect 8: huge batch sizes
def test_batch_size_larger_than_the_data_is_one_batch(host_backend_name):
    """batch_size=10**9 on 64 rows used to allocate for 10**9 rows (MemoryError on cpu)."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((64, 8)), rng.standard_normal((64, 3))
    a, b = _model(), _model()
    b.set_weights(a.get_weights())
    ha = a.fit(x, y, batch_size=10**9, epochs=2, verbose=0, shuffle=False, validation_split=0.25)
    hb = b.fit(x, y, batch_size=48, epochs=2, verbose=0, shuffle=False, validation_split=0.25)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(ha.history["val_loss"], hb.history["val_loss"], rtol=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(a.predict(x, batch_size=10**9, verbose=0), a.predict(x, batch_size=64, verbose=0))
    assert a.evaluate(x, y, batch_size=10**9, verbose=0) == pytest.approx(a.evaluate(x, y, batch_size=64, verbose=0))


# --------------------------------------------------------- defect 9: Ctrl-C in fit
_CHILD = textwrap.dedent("""
    import sys, time, numpy as np, fusednn
    from fusednn import keras
    fusednn.set_backend(sys.argv[1])
    verbose = int(sys.argv[2])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200_000, 64)).astype(np.float32)
    y = rng.standard_normal((200_000, 1)).astype(np.float32)
    def make():
        m = keras.Sequential([keras.layers.Dense(256, activation="relu", input_shape=(64,)),
                              keras.layers.Dense(256, activation="relu"), keras.layers.Dense(1)])
        m.compile(optimizer="adam", loss="mse")
        return m
    model = make()
    w0 = model.get_weights()
    print("fitting", flush=True)
    try:
        model.fit(x, y, batch_size=32, epochs=1000, verbose=verbose, shuffle=False)
    except KeyboardInterrupt:
        t = time.perf_counter()
        print("interrupted", flush=True)
    steps = -(-len(x) // 32)
    it = model.optimizer.iterations
    # replay exactly `it` steps from the same start: the weights must be the interrupted ones
    replay = make()
    replay.set_weights(w0)
    epochs, rest = divmod(it, steps)
    if epochs:
        replay.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False)
    if rest:
        replay.fit(x[:rest * 32], y[:rest * 32], batch_size=32, epochs=1, verbose=0, shuffle=False)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), replay.get_weights()))
    print(f"iterations {it} replayed {replay.optimizer.iterations} maxdiff {diff:.3g}", flush=True)
""")


@pytest.mark.parametrize("backend,verbose", [("numpy", 0), ("cpu", 0), ("cpu", 1)])
def test_ctrl_c_during_fit_is_honoured_promptly_and_consistently(backend, verbose, tmp_path):
    """With verbose=0 the cpu backend used to run a whole epoch in C++ before seeing the
    SIGINT (31 s late on 400k rows), leave optimizer.iterations at 0 although the
    weights had moved, and (verbose=1) leave the progress bar open."""
    if backend not in fusednn.available_backends():
        pytest.skip(f"{backend} backend not built")
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    p = subprocess.Popen([sys.executable, str(script), backend, str(verbose)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout.readline().strip() == "fitting"
        time.sleep(1.5)  # well into the first epoch (an epoch takes several seconds)
        t0 = time.perf_counter()
        p.send_signal(signal.SIGINT)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "interrupted" in line:
                latency = time.perf_counter() - t0
                break
        else:
            pytest.fail("the child did not report the interrupt: " + "".join(lines[-5:]))
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out
    # ~0.1 s is the design; the bound is loose so that a loaded CI machine passes, and
    # far below the several seconds the unfixed code took to reach the end of the epoch
    assert latency < 2.0, latency
    last = out.strip().splitlines()[-1]
    it, replayed, diff = int(last.split()[1]), int(last.split()[3]), float(last.split()[5])
    assert it > 0 and replayed == it
    assert diff < 1e-5, last
    # the progress bar (verbose=1) was closed, ending its line, before "interrupted"
    assert lines[-1] == "interrupted\n", lines[-1][-200:]
