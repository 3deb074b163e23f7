"""The metric-object kernels (fusednn/metric_math.h: AUC buckets, top-k, F-beta counts,
R² sums, MAPE, exact accuracy, weighted confusion counts and error sums) and the weighted
LossFn loss value, on every device against the float64 NumPy reference
(fusednn.backends.metric_kernels), which is itself checked against direct formulas."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import backends
from fusednn.backends import metric_kernels as mk
from fusednn.backends.base import LOSS_FNS

KEYS = mk.KINDS
AUC_T = np.array([-1e-7] + [(i + 1) / 9 for i in range(8)] + [1 + 1e-7])


def _spec(kind, cols, pre=0, k=0, threshold=None, sparse=False):
    spec = {"kind": KEYS[kind], "pre": pre, "k": k, "threshold": threshold, "sparse": sparse,
            "thresholds": AUC_T if kind == "auc" else None}
    return spec, mk.acc_size(kind, cols, k, len(AUC_T))


CASES = [("confusion", dict(k=3)), ("confusion", dict(k=3, sparse=True)), ("error_sums", {}),
         ("error_sums", dict(pre=2)), ("auc", {}), ("auc", dict(pre=1)), ("auc", dict(k=1)), ("auc", dict(k=4, pre=2)), ("top_k", dict(k=2)),
         ("top_k", dict(k=1, sparse=True)), ("fbeta", {}), ("fbeta", dict(threshold=0.3, pre=2)),
         ("r2", {}), ("r2", dict(pre=1)), ("mape", {}), ("equal", {})]


def _data(rng, rows, cols, kind, sparse):
    p = rng.standard_normal((rows, cols)).astype(np.float32)
    if kind in ("auc", "fbeta") and not sparse:
        t = (rng.random((rows, cols)) < 0.4).astype(np.float32)
    elif sparse:
        t = rng.integers(0, cols, (rows, 1)).astype(np.float32)
    elif kind in ("confusion", "top_k"):
        t = np.eye(cols, dtype=np.float32)[rng.integers(0, cols, rows)]
    else:
        t = rng.standard_normal((rows, cols)).astype(np.float32)
    if kind == "equal":
        p[::2] = t[::2]  # some exact matches
    return p, t


@pytest.mark.parametrize("rows", [1, 7, 67])
@pytest.mark.parametrize("kind,kw", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
@pytest.mark.parametrize("weighted", [False, True])
def test_metric_update_matches_reference(device, kind, kw, rows, weighted):
    rng = np.random.default_rng(rows)
    cols = 3
    spec, size = _spec(kind, cols, **kw)
    p, t = _data(rng, rows, cols, kind, kw.get("sparse", False))
    w = rng.random(rows).astype(np.float32) if weighted else None
    want = np.zeros(size)
    mk.metric_update(spec, want, p, t, w)
    acc = device.put(np.zeros(size))
    be = backends.get_backend()
    for _ in range(2):  # accumulates
        be.metric_update(spec, acc, device.put(p), device.put(t), None if w is None else device.put(w))
    np.testing.assert_allclose(device.get(acc), 2 * want, rtol=1e-12, atol=1e-12)


def test_reference_against_direct_formulas():
    rng = np.random.default_rng(0)
    p = rng.random((50, 2)).astype(np.float32)
    t = (rng.random((50, 2)) < 0.5).astype(np.float32)
    w = rng.random(50)
    spec, size = _spec("auc", 2)
    acc = np.zeros(size)
    mk.metric_update(spec, acc, p, t, w)
    t1 = len(AUC_T) + 1
    for i, th in enumerate(AUC_T):  # TP at threshold i: positives with p > th
        tp = ((p > th) & (t == 1)) * w[:, None]
        assert acc[i + 1:t1].sum() == pytest.approx(tp.sum(), rel=1e-12)
        fp = ((p > th) & (t == 0)) * w[:, None]
        assert acc[t1 + i + 1:].sum() == pytest.approx(fp.sum(), rel=1e-12)
    spec, size = _spec("r2", 2, pre=1)
    acc = np.zeros(size)
    mk.metric_update(spec, acc, p, t, w)
    sig = 1 / (1 + np.exp(-p.astype(np.float64)))
    np.testing.assert_allclose(acc[4:6], (w[:, None] * (t - sig) ** 2).sum(axis=0), rtol=1e-12)
    spec, size = _spec("top_k", 2, k=1)
    acc = np.zeros(size)
    mk.metric_update(spec, acc, p, np.eye(2, dtype=np.float32)[t[:, 0].astype(int)], w)
    assert acc[0] == pytest.approx(np.dot(w, p.argmax(1) == t[:, 0]), rel=1e-12)


def test_nan_and_out_of_range_labels(device):
    be = backends.get_backend()
    p = np.array([[np.nan, 0.2, 0.1], [0.1, 0.9, 0.0]], dtype=np.float32)
    t = np.array([[np.nan], [7.0]], dtype=np.float32)
    for kind, kw in (("top_k", dict(k=1, sparse=True)), ("confusion", dict(k=3, sparse=True))):
        spec, size = _spec(kind, 3, **kw)
        want = np.zeros(size)
        mk.metric_update(spec, want, p, t)
        acc = device.put(np.zeros(size))
        be.metric_update(spec, acc, device.put(p), device.put(t))
        np.testing.assert_array_equal(device.get(acc), want)
    spec, size = _spec("auc", 3)
    want = np.zeros(size)
    tt = np.ones((2, 3), np.float32)
    mk.metric_update(spec, want, p, tt)
    assert want[0] == 1.0  # NaN lands below every threshold
    acc = device.put(np.zeros(size))
    be.metric_update(spec, acc, device.put(p), device.put(tt))
    np.testing.assert_array_equal(device.get(acc), want)


@pytest.mark.parametrize("fn", sorted(LOSS_FNS))
@pytest.mark.parametrize("rows", [1, 13])
def test_weighted_loss_fn_matches_reference(device, fn, rows):
    rng = np.random.default_rng(rows)
    cols = 4
    p = rng.random((rows, cols)).astype(np.float32) + 0.05
    t = (rng.random((rows, cols)) < 0.5).astype(np.float32) if "hinge" in fn else \
        rng.random((rows, cols)).astype(np.float32)
    if fn in ("kl_divergence", "categorical_hinge"):
        t = np.eye(cols, dtype=np.float32)[rng.integers(0, cols, rows)]
    w = rng.random(rows).astype(np.float32)
    # Huber's delta; the focal losses' (gamma, alpha, label_smoothing, flags); 0 for the others
    param = 1.0 if fn == "huber" else ((1.5, 0.25, 0.1, 2) if "focal" in fn else 0.0)
    want = mk.weighted_loss_fn(fn, p, t, w, param)
    # the reference against the unweighted per-row loss: sum w_i l_i / rows
    from fusednn.backends.numpy_ext import loss_and_grad64
    if "hinge" not in fn or fn == "categorical_hinge":
        rowl = [loss_and_grad64(fn, p[i:i + 1].astype(np.float64), t[i:i + 1].astype(np.float64), param)[0]
                for i in range(rows)]
        assert want == pytest.approx(np.dot(w, rowl) / rows, rel=1e-12)
    out = device.put(np.zeros(1, np.float32))
    backends.get_backend().weighted_loss_fn(fn, device.put(p), device.put(t), device.put(w), out, param)
    assert float(device.get(out)[0]) == pytest.approx(want, rel=2e-6, abs=1e-7)


def test_hinge_conversion_is_decided_over_the_batch():
    p = np.array([[0.3], [-0.2]], np.float32)
    t = np.array([[1.0], [0.0]], np.float32)  # all 0/1: converted to 1, -1
    w = np.ones(2, np.float32)
    assert mk.weighted_loss_fn("hinge", p, t, w) == pytest.approx((0.7 + 0.8) / 2)
    t2 = np.array([[1.0], [-1.0]], np.float32)  # not converted
    assert mk.weighted_loss_fn("hinge", p, t2, w) == pytest.approx((0.7 + 0.8) / 2)
    t3 = np.array([[1.0], [0.5]], np.float32)
    assert mk.weighted_loss_fn("hinge", p, t3, w) == pytest.approx((0.7 + 1.1) / 2)


@pytest.mark.skipif("cpu" not in backends.available(), reason="the C++ extension is not built")
def test_binding_rejects_bad_input():
    from fusednn.backends import native
    k = native("cpu")
    spec, size = _spec("r2", 3)
    p = np.zeros((4, 3), np.float32)
    with pytest.raises(TypeError):
        k.metric_update({**spec, "acc": np.zeros(size, np.float32)}, p, p, None)  # accumulators not float64
    with pytest.raises(TypeError):
        k.metric_update({**spec, "acc": np.zeros(size)}, p.astype(np.float64), p, None)
    with pytest.raises(ValueError):
        k.metric_update({**spec, "acc": np.zeros(size)}, np.zeros((4, 6), np.float32)[:, ::2], p, None)
    with pytest.raises(ValueError, match="entries"):
        k.metric_update({**spec, "acc": np.zeros(size + 1)}, p, p, None)
    with pytest.raises(ValueError, match="columns"):
        k.metric_update({**spec, "acc": np.zeros(size)}, p, np.zeros((4, 1), np.float32), None)
    with pytest.raises(ValueError, match="weights"):
        k.metric_update({**spec, "acc": np.zeros(size)}, p, p, np.ones(3, np.float32))
    spec, size = _spec("auc", 3)
    with pytest.raises(ValueError, match="ascending"):
        k.metric_update({**spec, "thresholds": AUC_T[::-1].copy(), "acc": np.zeros(size)}, p, p, None)
    with pytest.raises(ValueError, match="kind"):
        k.metric_update({**spec, "kind": 99, "acc": np.zeros(size)}, p, p, None)
    with pytest.raises(ValueError, match="output index"):  # output 3 of 3
        k.metric_update({**spec, "k": 5, "acc": np.zeros(size)}, p, p, None)
    spec, size = _spec("fbeta", 3)
    with pytest.raises(ValueError, match="sparse"):
        k.metric_update({**spec, "sparse": True, "acc": np.zeros(size)}, p, p[:, :1].copy(), None)
    with pytest.raises(ValueError):
        k.weighted_loss_fn(p, p, np.ones(4, np.float32), 99, 0.0)
    with pytest.raises(TypeError):
        k.weighted_loss_fn(p, p, np.ones(4), 0, 0.0)


@pytest.mark.parametrize("spacing", ["keras", "uneven"])
def test_auc_buckets_exact_at_edges(device, spacing):
    """The bucket of a value (#thresholds below it) is exact for Keras' evenly spaced
    thresholds and for any ascending array: values on a threshold, just beside it,
    outside [0, 1], infinite or NaN."""
    rng = np.random.default_rng(7)
    if spacing == "keras":
        th = np.array([-1e-7] + [(i + 1) / 199 for i in range(198)] + [1 + 1e-7])
    else:
        th = np.sort(np.concatenate([rng.random(30), [0.25, 0.25, 0.5]]))
    near = th.astype(np.float32)
    p = np.concatenate([near, np.nextafter(near, np.float32(2)), np.nextafter(near, np.float32(-2)),
                        rng.standard_normal(200).astype(np.float32) * 2,
                        np.array([np.inf, -np.inf, np.nan, 0, 1], np.float32)]).astype(np.float32)
    p = p[:len(p) // 3 * 3].reshape(-1, 3)
    t = (rng.random(p.shape) < 0.5).astype(np.float32)
    spec = {"kind": KEYS["auc"], "pre": 0, "k": 0, "threshold": None, "sparse": False, "thresholds": th}
    want = np.zeros(2 * (len(th) + 1))
    mk.metric_update(spec, want, p, t)
    direct = np.array([(th < v).sum() if not np.isnan(v) else 0 for v in p.reshape(-1).astype(np.float64)])
    np.testing.assert_array_equal(want[:len(th) + 1] + want[len(th) + 1:], np.bincount(direct, minlength=len(th) + 1))
    acc = device.put(np.zeros_like(want))
    backends.get_backend().metric_update({**spec, "thresholds": device.put(th)}, acc, device.put(p), device.put(t))
    np.testing.assert_array_equal(device.get(acc), want)
