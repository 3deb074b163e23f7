"""The cuda backend object: arrays, memory policy, device info, MSE without sync."""
from __future__ import annotations

import numpy as np
import pytest

cp = pytest.importorskip("cupy")

import fusednn  # noqa: E402
from fusednn import backends  # noqa: E402
from fusednn.backends import cuda as cuda_backend  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture
def be():
    return backends.backend("cuda")


def test_arrays_round_trip(be):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    d = be.asarray(x)
    assert isinstance(d, cp.ndarray) and d.dtype == cp.float32 and d.flags.c_contiguous
    np.testing.assert_array_equal(be.to_numpy(d), x.astype(np.float32))
    assert be.xp is cp
    assert isinstance(be.empty((2, 3)), cp.ndarray) and be.zeros((2,)).tolist() == [0, 0]
    be.synchronize()


def test_can_hold_follows_free_memory_and_fraction(be, monkeypatch):
    free, _ = cp.cuda.runtime.memGetInfo()
    assert be.can_hold(1 << 20)
    assert not be.can_hold(4 * free)
    monkeypatch.setenv("FUSEDNN_GPU_DATA_FRACTION", "0")
    assert not be.can_hold(1)
    monkeypatch.setenv("FUSEDNN_GPU_DATA_FRACTION", "2")
    with pytest.raises(ValueError, match="FUSEDNN_GPU_DATA_FRACTION"):
        be.can_hold(1)


def test_mse_into_device_element_without_sync(be):
    rng = np.random.default_rng(0)
    p = rng.standard_normal((64, 3)).astype(np.float32)
    t = rng.standard_normal((64, 3)).astype(np.float32)
    losses = cp.full(5, cp.nan, dtype=cp.float32)
    P, T = cp.asarray(p), cp.asarray(t)
    for i in range(5):
        assert be.mse(P, T, out=losses[i:i + 1]) is not None
    ref = np.mean((p.astype(np.float64) - t) ** 2)
    np.testing.assert_allclose(cp.asnumpy(losses), np.full(5, ref), rtol=1e-6)
    assert be.mse(P, T) == pytest.approx(ref, rel=1e-6)


def test_device_info_and_cli(capsys):
    infos = cuda_backend.device_info()
    assert infos and infos[0]["name"] and infos[0]["total_memory"] > 0
    major, minor = infos[0]["compute_capability"]
    assert major >= 3 and minor >= 0
    from fusednn import cli

    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    assert "gpu 0:" in text and infos[0]["name"] in text and "compute capability" in text


def test_default_backend_is_cuda_when_usable():
    assert backends.available()[0] == "cuda"
    assert fusednn.backends.backend("cuda").name == "cuda"


def test_xent_into_device_element_and_metric_accumulators(be):
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((64, 5)) * 3).astype(np.float32)
    labels = rng.integers(0, 5, 64).astype(np.float32).reshape(-1, 1)
    Z, T = cp.asarray(z), cp.asarray(labels)
    losses = cp.full(3, cp.nan, dtype=cp.float32)
    grad = cp.full((64, 5), cp.nan, dtype=cp.float32)
    assert be.xent("sparse", Z, T, grad, losses[1:2], 1 / 64) is not None
    value = be.xent("sparse", Z, T)
    assert isinstance(value, float)
    z64 = z.astype(np.float64)
    lse = np.log(np.exp(z64 - z64.max(axis=1, keepdims=True)).sum(axis=1)) + z64.max(axis=1)
    ref = np.mean(lse - z64[np.arange(64), labels[:, 0].astype(int)])
    assert value == pytest.approx(ref, rel=1e-6)
    assert cp.asnumpy(losses)[1] == np.float32(value)
    p = np.exp(z64 - lse[:, None])
    np.testing.assert_allclose(cp.asnumpy(grad), (p - np.eye(5)[labels[:, 0].astype(int)]) / 64, rtol=1e-5,
                               atol=1e-8)
    probs = be.softmax(Z, cp.empty_like(Z))
    np.testing.assert_allclose(cp.asnumpy(probs), p, rtol=1e-6, atol=1e-7)
    counts = cp.zeros((5, 5), dtype=cp.float64)
    be.confusion_update(counts, Z, T, 5, True)
    c = cp.asnumpy(counts)
    assert c.sum() == 64 and np.trace(c) == np.sum(z.argmax(axis=1) == labels[:, 0])
    sums = cp.zeros(2, dtype=cp.float64)
    z1 = z + np.float32(1)
    be.error_sums_update(sums, Z, cp.asarray(z1))
    d = z64 - z1
    np.testing.assert_allclose(cp.asnumpy(sums), [np.abs(d).sum(), (d * d).sum()], rtol=1e-12)


def test_backend_has_a_fused_trainer(be):
    assert be.has_trainer
    from fusednn import fused, keras

    prev = fusednn.get_backend().name
    fusednn.set_backend("cuda")
    try:
        model = keras.Sequential([keras.layers.Dense(3, activation="softmax", input_shape=(4,))])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        assert fused.unsupported_reason(model) is None
        model.fit(np.zeros((10, 4)), np.arange(10) % 3, batch_size=4, verbose=0)
        assert model._fused is not None and model.optimizer.iterations == 3
    finally:
        fusednn.set_backend(prev)
