"""Host-side logic of the fast CUDA training paths, checked without a device: the
persistent trainer's shared-memory size rule (``_cuda.persistent_plan``) against the
rule written out independently here, the graph cache's bookkeeping
(``_cuda.GraphCacheModel``), and the opt-in dispatch (``backends.cuda_paths``)."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn.optimizers
from fusednn.backends import cuda_paths

_cuda = pytest.importorskip("fusednn._cuda")

H200_SMEM = 232448  # cudaDevAttrMaxSharedMemoryPerBlockOptin on sm_90


def pitch(n):
    return n + 1 if n % 2 == 0 else n


def rule_bytes(dims, bias, states, batch, y_cols, threads=512):
    """The size rule of persistent_plan.h, written out again."""
    params = sum((1 + states) * (dims[i] * pitch(dims[i + 1]) + (dims[i + 1] if bias[i] else 0))
                 for i in range(len(bias)))
    acts = batch * (pitch(dims[0]) + y_cols + 2 * sum(pitch(d) for d in dims[1:]))
    return 3 * (threads // 32) * 8 + 16 + 4 * (params + acts)


@pytest.mark.parametrize("dims,bias,states,batch,y_cols", [
    ([10, 64, 64, 1], [True] * 3, 2, 32, 1),       # the brief's program, Adam
    ([10, 64, 64, 1], [True] * 3, 0, 1, 1),        # plain SGD, batch 1
    ([5, 16, 8, 3], [True, False, True], 1, 7, 1),  # momentum, a layer without bias, sparse labels
    ([784, 256, 256, 10], [True] * 3, 2, 128, 10),
    ([3, 1], [False], 2, 1000, 1),
])
def test_plan_matches_the_rule_and_lays_out_disjoint_regions(dims, bias, states, batch, y_cols):
    plan = _cuda.persistent_plan(dims, bias, states, batch, y_cols)
    assert plan["bytes"] == rule_bytes(dims, bias, states, batch, y_cols)
    assert plan["bytes"] == plan["header_bytes"] + 4 * plan["floats"]
    # every region inside the float area, none overlapping
    regions = [(plan["x"], batch * plan["ldx"]), (plan["y"], batch * y_cols)]
    for lp in plan["layers"]:
        assert lp["ldw"] % 2 == 1 and lp["lda"] % 2 == 1 and lp["ldw"] >= lp["out"]
        nw, nb = lp["in"] * lp["ldw"], lp["out"]
        regions += [(lp["W"], nw), (lp["A"], batch * lp["lda"]), (lp["G"], batch * lp["lda"])]
        regions += [(lp[k], nw) for k in ("W_s1", "W_s2")[:states]]
        assert all(lp[k] == -1 for k in ("W_s1", "W_s2")[states:])
        if lp["bias"]:
            regions += [(lp["b"], nb)] + [(lp[k], nb) for k in ("b_s1", "b_s2")[:states]]
        else:
            assert lp["b"] == lp["b_s1"] == lp["b_s2"] == -1
    regions.sort()
    assert regions[0][0] == 0
    for (a, na), (b, _) in zip(regions, regions[1:]):
        assert a + na == b  # packed: no gap, no overlap
    assert regions[-1][0] + regions[-1][1] == plan["floats"]


def test_brief_model_fits_an_h200_and_the_mnist_mlp_does_not():
    assert rule_bytes([10, 64, 64, 1], [True] * 3, 2, 32, 1) == 95508
    assert _cuda.persistent_why_not([10, 64, 64, 1], [True] * 3, 2, 32, 1, H200_SMEM) == ""
    # sm_75's 64 KB cannot hold it
    assert "95508 bytes" in _cuda.persistent_why_not([10, 64, 64, 1], [True] * 3, 2, 32, 1, 65536)
    why = _cuda.persistent_why_not([784, 256, 256, 10], [True] * 3, 2, 128, 10, H200_SMEM)
    assert "shared memory" in why
    deep = [4] * 10
    assert "at most 8" in _cuda.persistent_why_not(deep, [True] * 9, 0, 2, 4, H200_SMEM)


def test_plan_rejects_bad_sizes():
    with pytest.raises(ValueError, match="widths"):
        _cuda.persistent_plan([10, 0, 1], [True, True], 2, 32, 1)
    with pytest.raises(ValueError, match="batch"):
        _cuda.persistent_plan([10, 1], [True], 2, 0, 1)
    with pytest.raises(ValueError, match="L \\+ 1"):
        _cuda.persistent_plan([10, 1], [True, True], 2, 4, 1)


def test_graph_book_captures_on_the_second_sighting_and_replays_after():
    m = _cuda.GraphCacheModel(2, 3)
    assert m.use([0, 10, 1]) == ("direct",)          # first sighting: run without a graph
    assert m.use([0, 10, 1]) == ("captured", 0, 0)   # second: capture
    assert m.use([0, 10, 1]) == ("replay", 0)        # then replay
    assert m.use([0, 10, 2]) == ("direct",)          # any field changed: a new key
    assert m.use([0, 10, 2]) == ("captured", 1, 0)
    assert m.use([0, 10, 1]) == ("replay", 0)        # the first graph is still there
    assert m.use([10, 13, 1]) == ("direct",)
    assert m.use([10, 13, 1]) == ("captured", 2, 1)  # full: drops the least recently used (graph 1)
    assert m.released == [1] and len(m) == 2
    assert m.use([0, 10, 2]) == ("captured", 3, 1)   # still remembered as seen: captured again
    assert m.released == [1, 0]


def test_graph_book_never_captures_ranges_that_do_not_repeat_soon():
    """One step at a time over a long epoch (a per-batch callback): each range comes back
    only after more than `seen` others, so none is captured and none costs a capture."""
    m = _cuda.GraphCacheModel(4, 3)
    for _ in range(3):
        assert all(m.use([s, s + 1]) == ("direct",) for s in range(10))
    assert len(m) == 0 and m.released == []
    assert _cuda.GRAPH_CACHE_CAPACITY >= 51  # ~50 progress-bar chunks of an epoch plus its tail
    assert _cuda.GRAPH_SEEN_CAPACITY >= _cuda.GRAPH_CACHE_CAPACITY


class _W:
    def __init__(self, shape):
        self.shape = shape


def _specs(dims, bias=True):
    return [{"W": _W((a, b)), "b": object() if bias else None} for a, b in zip(dims, dims[1:])]


# Optimizer.kernel_spec() of Adam() and SGD(momentum=0.9)
ADAM = fusednn.optimizers.Adam().kernel_spec()
MOMENTUM = fusednn.optimizers.SGD(momentum=0.9).kernel_spec()


def test_plan_inputs_follow_the_trainer_specs():
    got = cuda_paths.plan_inputs(_specs([10, 64, 64, 1]), ADAM, "mse", 32)
    assert got == {"dims": [10, 64, 64, 1], "bias": [True] * 3, "states": 2, "batch": 32, "y_cols": 1}
    got = cuda_paths.plan_inputs(_specs([5, 8, 3], bias=False), MOMENTUM, "sparse", 7)
    assert got["states"] == 1 and got["y_cols"] == 1 and got["bias"] == [False, False]
    assert cuda_paths.plan_inputs(_specs([5, 3]), fusednn.optimizers.SGD().kernel_spec(), "categorical", 7)["y_cols"] == 3


def test_choose_mode_keeps_regularized_models_off_the_persistent_kernel():
    specs = _specs([10, 64, 64, 1])
    specs[1]["W_l2"] = 1e-4
    mode, reason = cuda_paths.choose_mode(specs, ADAM, "mse", 32, _cuda.persistent_why_not, H200_SMEM,
                                          {"FUSEDNN_CUDA_PERSISTENT": "1", "FUSEDNN_CUDA_GRAPH": "1"})
    assert mode == "graph" and "regularizers" in reason


@pytest.mark.parametrize("env,smem,dims,want", [
    ({}, H200_SMEM, [10, 64, 64, 1], "ops"),                                      # today's default
    ({"FUSEDNN_CUDA_GRAPH": "1"}, H200_SMEM, [10, 64, 64, 1], "graph"),
    ({"FUSEDNN_CUDA_PERSISTENT": "1"}, H200_SMEM, [10, 64, 64, 1], "persistent"),
    ({"FUSEDNN_CUDA_PERSISTENT": "1", "FUSEDNN_CUDA_GRAPH": "1"}, H200_SMEM, [10, 64, 64, 1], "persistent"),
    ({"FUSEDNN_CUDA_PERSISTENT": "1"}, 65536, [10, 64, 64, 1], "ops"),           # does not fit sm_75
    ({"FUSEDNN_CUDA_PERSISTENT": "1", "FUSEDNN_CUDA_GRAPH": "1"}, H200_SMEM, [784, 256, 256, 10], "graph"),
    ({"FUSEDNN_CUDA_PERSISTENT": "0"}, H200_SMEM, [10, 64, 64, 1], "ops"),
    ({"FUSEDNN_CUDA_PERSISTENT": "1"}, 0, [10, 64, 64, 1], "ops"),               # no device
])
def test_choose_mode(env, smem, dims, want):
    mode, reason = cuda_paths.choose_mode(_specs(dims), ADAM, "mse", 32, _cuda.persistent_why_not, smem, env)
    assert mode == want
    asked_persistent = env.get("FUSEDNN_CUDA_PERSISTENT") == "1"
    assert bool(reason) == (asked_persistent and want != "persistent")
    if reason:
        assert "shared memory" in reason


@pytest.mark.parametrize("opt,loss,act,declined", [
    (fusednn.optimizers.Adam(), "mse", 1, ""),
    (fusednn.optimizers.SGD(momentum=0.9, nesterov=True), "sparse", 3, ""),
    (fusednn.optimizers.SGD(), "categorical", 0, ""),
    (fusednn.optimizers.Adam(clipnorm=1.0), "mse", 1, "clipping"),
    (fusednn.optimizers.Adam(global_clipnorm=1.0), "mse", 1, "clipping"),
    (fusednn.optimizers.AdamW(), "mse", 1, "weight decay"),
    (fusednn.optimizers.Adam(amsgrad=True), "mse", 1, "amsgrad"),
    (fusednn.optimizers.SGD(use_ema=True), "mse", 1, "EMA"),
    (fusednn.optimizers.RMSprop(), "mse", 1, "only SGD"),
    (fusednn.optimizers.Adam(), "huber", 1, "losses"),
    (fusednn.optimizers.Adam(), "mse", 7, "activations"),  # gelu
])
@pytest.mark.parametrize("env", [{"FUSEDNN_CUDA_PERSISTENT": "1"}, {"FUSEDNN_CUDA_GRAPH": "1"}])
def test_choose_mode_declines_what_the_fast_paths_cannot_do_exactly(opt, loss, act, declined, env):
    specs = [{**spec, "act": act} for spec in _specs([10, 16, 3])]
    mode, reason = cuda_paths.choose_mode(specs, opt.kernel_spec(), loss, 8, _cuda.persistent_why_not, H200_SMEM,
                                          env)
    if declined:
        assert mode == "ops" and declined in reason
    else:
        assert mode != "ops" and reason == ""


@pytest.mark.parametrize("env", [{"FUSEDNN_CUDA_PERSISTENT": "1"}, {"FUSEDNN_CUDA_GRAPH": "1"}])
def test_choose_mode_declines_layer_steps(env):
    specs = _specs([10, 16, 3])
    specs[0]["post"] = [{"kind": "dropout"}]  # a Dropout/BatchNormalization block: the fast paths are Dense only
    mode, reason = cuda_paths.choose_mode(specs, ADAM, "mse", 8, _cuda.persistent_why_not, H200_SMEM, env)
    assert mode == "ops" and "Dropout" in reason


def test_info_names_the_measured_crossover_when_both_backends_exist(monkeypatch, capsys):
    import importlib

    from fusednn import backends

    cli_main = importlib.import_module("fusednn.cli.main")  # the package re-exports a function `main`

    monkeypatch.setattr(backends, "available", lambda: ["cuda", "cpu", "numpy"])
    cli_main._info(None)
    out = capsys.readouterr().out
    assert "cpu 2.6x faster" in out and "cuda 1.8x faster" in out and "FUSEDNN_CUDA_PERSISTENT=1" in out
    monkeypatch.setattr(backends, "available", lambda: ["cpu", "numpy"])
    cli_main._info(None)
    assert "faster" not in capsys.readouterr().out
