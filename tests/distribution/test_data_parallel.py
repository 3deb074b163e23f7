"""Data-parallel training (fusednn.distribution) under a real MPI launcher: 2 ranks
started with ``mpiexec -n 2`` on small problems, each run bounded in time.

Tolerance of the equivalence tests: a 2-rank fit sums two partial gradients (each
scaled by its share of the global batch) where one process sums one product, so the
weights differ by float32 reduction order only; after 3 epochs of SGD or Adam we see
< 5e-7 and assert |a - b| <= 2e-6 + 1e-5 |b| (scaling by 1/2, not rows/global_rows, moves
them by 8e-3 to 0.4)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mpi_worker  # noqa: E402

mpi4py = pytest.importorskip("mpi4py", reason="data-parallel tests need mpi4py (pip install 'fusednn[mpi]')")


def _mpiexec() -> str:
    # The MPI wheel installs mpiexec next to the interpreter; prefer it over any system one.
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec found (pip install 'fusednn[mpi]' brings MPICH's)")
    return found


def launch(mode: str, out: Path, ranks: int = 2, timeout: float = 90, env: dict | None = None
           ) -> tuple[subprocess.CompletedProcess, float]:
    """Run tests/distribution/mpi_worker.py MODE OUT on ``ranks`` ranks; returns (result, seconds)."""
    from fusednn.distribution.launch import mpiexec_command

    cmd = mpiexec_command(ranks, [sys.executable, str(HERE / "mpi_worker.py"), mode, str(out)],
                          mpiexec=_mpiexec())
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "FUSEDNN_NUM_THREADS": "1", **(env or {})})
    return r, time.monotonic() - t0


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp")
    r, _ = launch("equivalence", out)
    assert r.returncode == 0, r.stdout + r.stderr
    return [dict(np.load(out / f"rank{k}.npz")) for k in range(2)]


@pytest.mark.parametrize("case", mpi_worker.CASES, ids=[c[0] for c in mpi_worker.CASES])
def test_two_ranks_equal_one_process(case, two_rank_results):
    name = case[0]
    model, history = mpi_worker.fit_case(case)  # the same global batch in one process
    dist = two_rank_results[0]
    weights = model.get_weights()
    for i, w in enumerate(weights):
        np.testing.assert_allclose(dist[f"{name}/w{i}"], w, rtol=1e-5, atol=2e-6, err_msg=f"{name} weight {i}")
    assert set(history.history) == {k.split("/", 1)[1] for k in dist if k.startswith(name + "/")
                                    and not k.split("/", 1)[1].startswith("w")}
    for key, values in history.history.items():
        np.testing.assert_allclose(dist[f"{name}/{key}"], values, rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")


def test_ranks_hold_identical_weights_and_history(two_rank_results):
    r0, r1 = two_rank_results
    assert r0.keys() == r1.keys()
    for k in r0:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)


def test_a_short_last_batch_leaves_a_rank_empty():
    # 101 samples in batches of 10: the last batch has one row, so rank 1 gets none.
    from fusednn.distribution import shard_steps

    order = np.random.default_rng(0).permutation(101)
    parts = [shard_steps(order, 10, r, 2) for r in range(2)]
    assert [int(p[1][-1] - p[1][-2]) for p in parts] == [1, 0]
    joined = np.concatenate([np.concatenate([p[0][p[1][s]:p[1][s + 1]] for p in parts]) for s in range(11)])
    np.testing.assert_array_equal(joined, order)  # every sample once, in the global order
    np.testing.assert_array_equal(parts[0][2], [10] * 10 + [1])


def test_rank_zero_alone_prints_and_writes(tmp_path):
    r, _ = launch("side_effects", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["ckpt_rank0_1.npz", "ckpt_rank0_2.npz", "saved_rank0.npz"], files
    assert r.stdout.count("Epoch 1/2") == 1 and r.stdout.count("Epoch 2/2") == 1, r.stdout
    assert "rank 0 done" in r.stdout and "rank 1 done" in r.stdout
    import fusednn

    saved = fusednn.load_model(str(tmp_path / "saved_rank0.npz"))
    assert saved.count_params() > 0


def test_a_killed_rank_stops_the_job(tmp_path):
    r, seconds = launch("kill", tmp_path, timeout=120)
    assert r.returncode != 0
    assert "fault worker finished" not in r.stdout
    out = r.stdout + r.stderr
    # MPICH's launcher reports the signal and ends the job; our timeout is the fallback
    assert ("BAD TERMINATION" in out and "signal 9" in out) or "did not complete within" in out, out[-2000:]
    assert seconds < 60


def test_a_hung_rank_times_out_with_a_clear_error(tmp_path):
    r, seconds = launch("hang", tmp_path, timeout=120, env={"FUSEDNN_TEST_TIMEOUT": "3"})
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "DistributedTimeoutError" in out and "did not complete within 3 s" in out, (r.returncode, out[-2000:])
    assert "rank 0/2 failed; aborting the job" in out
    assert seconds < 60


def test_a_raising_rank_aborts_the_others(tmp_path):
    r, seconds = launch("raise", tmp_path, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "rank 1/2 failed; aborting the job" in out and "deliberate failure on rank 1" in out, \
        (r.returncode, out[-2000:])
    assert seconds < 60


def test_single_process_distribution_is_a_no_op():
    import fusednn
    from fusednn import distribution

    distribution.initialize()
    assert distribution.num_processes() == 1 and distribution.process_id() == 0 and distribution.is_chief()
    dp = distribution.DataParallel()
    distribution.set_distribution(dp)
    try:
        assert distribution.distribution() is dp
        model, history = mpi_worker.fit_case(mpi_worker.CASES[0], epochs=1)
        distribution.set_distribution(None)
        ref, ref_history = mpi_worker.fit_case(mpi_worker.CASES[0], epochs=1)
        for a, b in zip(model.get_weights(), ref.get_weights()):
            np.testing.assert_array_equal(a, b)
    finally:
        distribution.set_distribution(None)
    with pytest.raises(TypeError, match="DataParallel or None"):
        distribution.set_distribution("data")
    with pytest.raises(ValueError, match="timeout"):
        distribution.DataParallel(timeout=0)
    assert distribution.list_devices() == ["cpu:0"] or distribution.list_devices()[0].startswith("gpu:")
    assert distribution.DataParallel(devices=distribution.list_devices()).devices == distribution.list_devices()
    with pytest.raises(ValueError, match="its own device"):
        distribution.DataParallel(devices=["gpu:0", "gpu:1", "gpu:2"])
    with pytest.raises(NotImplementedError, match="device meshes"):
        distribution.DataParallel(device_mesh=object())
    with pytest.raises(NotImplementedError, match="auto_shard_dataset"):
        distribution.DataParallel(auto_shard_dataset=False)


def test_trainer_rejects_a_bad_step_layout():
    import fusednn

    be = fusednn.backends.get_backend()
    if not getattr(be, "has_trainer", False):
        pytest.skip(f"backend {be.name!r} has no fused trainer")
    from fusednn.training import fused

    model, _ = mpi_worker.fit_case(mpi_worker.CASES[0], epochs=1)
    ft = fused.trainer_for(model, 10)
    t = ft.trainer
    x, y = mpi_worker.data(3, "mse", 101)
    losses = np.zeros(11, dtype=np.float32)
    order = np.arange(20, dtype=np.int64)
    P = model.optimizer.step_params(0, 2)

    def run(**kw):
        steps = kw.pop("steps", 1)
        return t.run(x, y, order, ft.x_batch, ft.y_batch, losses, 0, steps, 0, step_params=P[:steps], **kw)

    with pytest.raises(ValueError, match="rows"):  # a step larger than the batch
        run(step_starts=np.array([0, 20], dtype=np.int64))
    with pytest.raises(ValueError, match=r"step_starts\[0\]"):
        run(step_starts=np.array([1, 10], dtype=np.int64))
    with pytest.raises(TypeError, match="int64"):
        run(step_starts=[0, 10, 20])

    def boom(step, rows):
        raise KeyError("from the hook")

    with pytest.raises(KeyError, match="from the hook"):
        run(steps=2, step_starts=np.array([0, 10, 20], dtype=np.int64), between=boom)


def test_cli_train_ranks_relaunches_under_mpiexec(tmp_path):
    import fusednn

    g = np.random.default_rng(0)
    x = g.normal(size=(203, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * g.normal(size=203)
    csv = tmp_path / "reg.csv"
    csv.write_text("a,b,c,t\n" + "".join(",".join(f"{v:.5f}" for v in (*r, t)) + "\n" for r, t in zip(x, y)))
    env = {**os.environ, "FUSEDNN_MPIEXEC": _mpiexec()}
    common = [sys.executable, "-m", "fusednn", "train", str(csv), "--target", "t", "--epochs", "3",
              "--layers", "8", "--verbose", "2"]
    two = subprocess.run([*common, "--out", str(tmp_path / "two.npz"), "--ranks", "2"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("Epoch 3/3") == 1 and two.stdout.count("saved ") == 1, two.stdout
    one = subprocess.run([*common, "--out", str(tmp_path / "one.npz")], capture_output=True, text=True,
                         timeout=120)
    assert one.returncode == 0, one.stderr
    for a, b in zip(fusednn.load_model(str(tmp_path / "two.npz")).get_weights(),
                    fusednn.load_model(str(tmp_path / "one.npz")).get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)


def _two_gpus_reason() -> str | None:
    import fusednn

    reason = fusednn.backends.unavailable().get("cuda")
    if reason is not None:
        return f"cuda backend unavailable: {reason}"
    import cupy

    if cupy.cuda.runtime.getDeviceCount() < 2:
        return "NCCL data parallelism needs 2 GPUs (one per rank); this machine has fewer"
    try:
        from cupy.cuda import nccl  # noqa: F401
    except ImportError as e:
        return f"CuPy has no NCCL: {e}"
    return None


@pytest.mark.gpu
def test_two_gpu_ranks_over_nccl_equal_one_gpu(tmp_path):
    reason = _two_gpus_reason()
    if reason is not None:
        pytest.skip(reason)
    import fusednn

    r, _ = launch("gpu_equivalence", tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    dist = dict(np.load(tmp_path / "rank0.npz"))
    previous = fusednn.get_backend().name
    fusednn.set_backend("cuda")
    try:
        for case in mpi_worker.CASES:
            model, history = mpi_worker.fit_case(case)
            for i, w in enumerate(model.get_weights()):
                np.testing.assert_allclose(dist[f"{case[0]}/w{i}"], w, rtol=1e-4, atol=1e-5)
            for key, values in history.history.items():
                np.testing.assert_allclose(dist[f"{case[0]}/{key}"], values, rtol=1e-4, atol=1e-5)
    finally:
        fusednn.set_backend(previous)


def test_a_model_the_fused_trainer_cannot_take_is_refused():
    import fusednn
    from fusednn import distribution

    dp = distribution.DataParallel()
    dp.num_processes = 2  # as if in a 2-rank job: the check comes before any communication
    distribution.set_distribution(dp)
    previous = fusednn.get_backend().name
    fusednn.set_backend("numpy")
    try:
        with pytest.raises(distribution.DistributedError, match="fused native trainer.*numpy"):
            mpi_worker.fit_case(mpi_worker.CASES[0], epochs=1)
    finally:
        fusednn.set_backend(previous)
        distribution.set_distribution(None)


def test_a_failed_fit_leaves_no_session_behind():
    from fusednn.distribution import state

    class Session:
        model = None

    stale = Session()
    model, _ = mpi_worker.fit_case(mpi_worker.CASES[0], epochs=1)
    stale.model = model
    state.begin_session(stale)  # as a data-parallel fit that raised would leave it
    assert state.fit_session(model) is stale
    model.fit(*mpi_worker.data(3, "mse", 101), epochs=1, verbose=0)  # no distribution: trains alone
    assert state.fit_session(model) is None


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_trainer_runs_a_step_layout_and_calls_the_hook(device):
    # The native side of data parallelism on one device (one GPU is enough for cuda): a
    # uniform step layout with a hook that changes nothing trains exactly as the plain run.
    import fusednn
    from fusednn.training import fused

    if device not in fusednn.backends.available():
        pytest.skip(f"backend {device!r} is not available")
    previous = fusednn.get_backend().name
    be = fusednn.set_backend(device)
    try:
        case = mpi_worker.CASES[1]
        models = [mpi_worker.fit_case(case, epochs=1)[0] for _ in range(2)]
        batch, n = case[6], case[5]
        x, y = mpi_worker.data(case[3], case[2], n)
        xd, yd = be.asarray(x), be.asarray(y)
        steps = -(-n // batch)
        order = np.random.default_rng(1).permutation(n).astype(np.int64)
        starts = np.minimum(np.arange(steps + 1, dtype=np.int64) * batch, n)
        calls = []
        for k, m in enumerate(models):
            ft = fused.trainer_for(m, batch)
            extra = {} if k == 0 else {"step_starts": starts,
                                       "between": lambda s, r: calls.append((s, r)) is None}
            ft.trainer.run(xd, yd, order, ft.x_batch, ft.y_batch, be.zeros((steps,)), 0, steps,
                           m.optimizer.iterations, step_params=m.optimizer.step_params(m.optimizer.iterations, steps),
                           **extra)
        assert calls == [(s, int(starts[s + 1] - starts[s])) for s in range(steps)]
        for a, b in zip(models[0].get_weights(), models[1].get_weights()):
            np.testing.assert_array_equal(a, b)
    finally:
        fusednn.set_backend(previous)


@pytest.mark.gpu
def test_nccl_communicator_on_one_gpu():
    pytest.importorskip("cupy.cuda.nccl", reason="CuPy was built without NCCL")
    import cupy
    from mpi4py import MPI

    from fusednn.distribution.communicators import MPICommunicator, NCCLCommunicator

    comm = NCCLCommunicator(MPICommunicator(MPI.COMM_WORLD, 30), 30)
    a = cupy.arange(7, dtype=cupy.float32)
    comm.allreduce_(a)
    comm.bcast_(a)
    comm.synchronize("test")
    np.testing.assert_array_equal(cupy.asnumpy(a), np.arange(7, dtype=np.float32))


def test_keras_namespace_has_distribution():
    from fusednn import distribution, keras
    from fusednn.keras.distribution import DataParallel, initialize, set_distribution  # noqa: F401

    assert keras.distribution is distribution and DataParallel is distribution.DataParallel
