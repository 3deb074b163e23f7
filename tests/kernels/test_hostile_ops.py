"""Hostile inputs for every fusednn.ops function on every backend (hypothesis).

Each example draws one op and one *kind* of hostile input, builds the arguments and
calls the op. The property: the op either returns what an independent float64
NumPy reference computes from the same values (to float32 rounding), or raises a
clear ValueError/TypeError; never a crash, never garbage, and an input it refuses
is left unchanged. Kinds that are valid input (NaN/inf, non-contiguous views,
convertible dtypes, exactly-in-place ``out``) must succeed; kinds that are not
(partial overlap of ``out``, uncomputable dtypes, wrong ranks or shapes) must
raise. Huge shapes are not drawn: converting a huge zero-stride view would
allocate it, which is NumPy's MemoryError, not ours; huge and negative integer
arguments (Adam's ``step``) are.

FUSEDNN_HOSTILE_COUNTS=path writes the number of examples tried per kind (JSON).
"""
from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fusednn
from fusednn import backends, ops
from fusednn.backends.numpy import adam_alpha

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

COUNTS: collections.Counter = collections.Counter()

KINDS = ["finite", "nan_inf", "zero_size", "noncontig", "scalar", "convertible_dtype", "bad_dtype",
         "wrong_shape", "out_in_place", "out_partial_overlap", "huge_values"]
MUST_SUCCEED = {"finite", "nan_inf", "noncontig", "convertible_dtype"}
MUST_RAISE = {"bad_dtype", "wrong_shape", "out_partial_overlap", "bad_in_place"}


# ------------------------------------------------------------- references (float64)
def _f64(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)  # the values the op sees


def _act(x, name):
    x = _f64(x)
    with np.errstate(all="ignore"):
        return {"relu": lambda: np.where(np.isnan(x), x, np.maximum(x, 0.0)),
                "sigmoid": lambda: 1.0 / (1.0 + np.exp(-x)),
                "tanh": lambda: np.tanh(x), "linear": lambda: x}[name]()


def _act_grad(dy, y, name):
    dy, y = _f64(dy), _f64(y)
    with np.errstate(all="ignore"):
        return {"relu": lambda: np.where(y > 0, dy, 0.0), "sigmoid": lambda: dy * (y * (1 - y)),
                "tanh": lambda: dy * ((1 - y) * (1 + y)), "linear": lambda: dy}[name]()


def _softmax(x):
    x = _f64(x)
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def _xent(z, t, kind):
    z, t = _f64(z), _f64(t)
    with np.errstate(all="ignore"):
        if kind == "binary":
            loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
            return loss.mean(), (1 / (1 + np.exp(-z)) - t) / z.size
        lse = z.max(axis=1, keepdims=True)
        lse = lse + np.log(np.exp(z - lse).sum(axis=1, keepdims=True))
        p = np.exp(z - lse)
        if kind == "sparse":
            lab = t.reshape(-1)
            ok = (lab >= 0) & (lab < z.shape[1]) & (lab == np.floor(lab))
            k = np.where(ok, lab, 0).astype(np.int64)
            onehot = np.eye(z.shape[1])[k]
            per_row = np.where(ok, lse[:, 0] - z[np.arange(len(z)), k], np.nan)
            g = np.where(ok[:, None], p - onehot, 0.0) / z.shape[0]
            return per_row.mean(), g
        return (t * (lse - z)).sum(axis=1).mean(), (p - t) / z.shape[0]


# -------------------------------------------------------------------- the ops
# Each spec: the argument names with their base shapes (from two sizes r, c), the call,
# the reference, which arguments are 2-D-only, and the names `out` may alias exactly.
def _shapes(r, c, k):
    return {"x": (r, c), "dy": (r, c), "y": (r, c), "pred": (r, c), "target": (r, c),
            "a": (r, k), "b": (k, c), "w": (k, c), "bias": (c,), "z": (r, c), "labels": (r,),
            "param": (r, c), "grad": (r, c), "m": (r, c), "v": (r, c), "velocity": (r, c)}


ACTS = ["relu", "sigmoid", "tanh", "linear"]
SPECS = {}


def spec(name, args, out_shape=None, in_place=(), two_d=(), positive=()):
    def deco(fn):
        SPECS[name] = dict(args=args, out_shape=out_shape, in_place=in_place, two_d=two_d,
                           positive=positive, run=fn)
        return fn
    return deco


for _n in ("relu", "sigmoid", "tanh"):
    spec(_n, ["x"], "x", in_place=("x",))(
        lambda A, out, R, _n=_n: (getattr(ops, _n)(A["x"], out=out), _act(R["x"], _n)))
spec("activation", ["x"], "x", in_place=("x",))(
    lambda A, out, R: (ops.activation(A["x"], "sigmoid", out=out), _act(R["x"], "sigmoid")))
for _n in ("relu", "sigmoid", "tanh"):
    spec(f"{_n}_grad", ["dy", "y"], "dy", in_place=("dy", "y"))(
        lambda A, out, R, _n=_n: (getattr(ops, f"{_n}_grad")(A["dy"], A["y"], out=out),
                               _act_grad(R["dy"], R["y"], _n)))
spec("activation_grad", ["dy", "y"], "dy", in_place=("dy", "y"))(
    lambda A, out, R: (ops.activation_grad(A["dy"], A["y"], "tanh", out=out), _act_grad(R["dy"], R["y"], "tanh")))
spec("softmax", ["x"], "x", in_place=("x",), two_d=("x",))(
    lambda A, out, R: (ops.softmax(A["x"], out=out), _softmax(R["x"])))


@spec("softmax_grad", ["dy", "y"], "dy", in_place=("dy", "y"), two_d=("dy", "y"))
def _(A, out, R):
    dy, y = _f64(R["dy"]), _f64(R["y"])
    return ops.softmax_grad(A["dy"], A["y"], out=out), y * (dy - (dy * y).sum(axis=1, keepdims=True))


@spec("matmul", ["a", "b"], "ab", two_d=("a", "b"))
def _(A, out, R):
    return ops.matmul(A["a"], A["b"], out=out), _f64(R["a"]) @ _f64(R["b"])


@spec("linear", ["a", "w", "bias"], "ab", two_d=("a", "w"))
def _(A, out, R):
    return (ops.linear(A["a"], A["w"], A["bias"], activation="tanh", out=out),
            _act(_f64(R["a"]) @ _f64(R["w"]) + _f64(R["bias"]), "tanh"))


for _n in ("sum_rows", "bias_grad"):
    spec(_n, ["x"], "cols", two_d=("x",))(
        lambda A, out, R, _n=_n: (getattr(ops, _n)(A["x"], out=out), _f64(R["x"]).sum(axis=0)))
spec("mse", ["pred", "target"])(
    lambda A, out, R: (ops.mse(A["pred"], A["target"]), ((_f64(R["pred"]) - _f64(R["target"])) ** 2).mean()))


@spec("mse_grad", ["pred", "target"], "pred", in_place=("pred", "target"))
def _(A, out, R):
    p, t = _f64(R["pred"]), _f64(R["target"])
    return ops.mse_grad(A["pred"], A["target"], out=out), 2 * (p - t) / max(p.size, 1)


for _kind in ("binary", "categorical", "sparse"):
    _t = "labels" if _kind == "sparse" else "target"
    spec(f"crossentropy[{_kind}]", ["z", _t], two_d=("z",))(
        lambda A, out, R, _kind=_kind, _t=_t: (ops.crossentropy(A["z"], A[_t], _kind), _xent(R["z"], R[_t], _kind)[0]))
    spec(f"crossentropy_grad[{_kind}]", ["z", _t], "z", two_d=("z",))(
        lambda A, out, R, _kind=_kind, _t=_t: (ops.crossentropy_grad(A["z"], A[_t], _kind, out=out),
                                            _xent(R["z"], R[_t], _kind)[1]))


@spec("sgd_update", ["param", "grad", "velocity"], positive=())
def _(A, out, R):
    p, g, v = _f64(R["param"]), _f64(R["grad"]), _f64(R["velocity"])
    v2 = 0.9 * v - 0.1 * g
    ops.sgd_update(A["param"], A["grad"], A["velocity"], learning_rate=0.1, momentum=0.9)
    return A["param"], p + v2


@spec("adam_update", ["param", "grad", "m", "v"], positive=("v",))
def _(A, out, R, step=3):
    p, g, m, v = (_f64(R[k]) for k in ("param", "grad", "m", "v"))
    m2 = m + (g - m) * 0.1
    v2 = v + (g * g - v) * np.float64(np.float32(1) - np.float32(0.999))
    with np.errstate(all="ignore"):
        ref = p - m2 * float(adam_alpha(1e-3, 0.9, 0.999, step)) / (np.sqrt(v2) + 1e-7)
    ops.adam_update(A["param"], A["grad"], A["m"], A["v"], step=step)
    return A["param"], ref


UPDATED = {"param", "m", "v", "velocity"}  # arrays the update ops write in place


# ------------------------------------------------------------------ building inputs
def _build(rng, name, kind, draw):
    sp = SPECS[name]
    r, c, k = draw(st.integers(1, 7)), draw(st.integers(1, 9)), draw(st.integers(1, 6))
    if kind == "zero_size":
        r, c, k = [0 if i == draw(st.integers(0, 2)) else v for i, v in enumerate((r, c, k))]
    shapes = _shapes(r, c, k)
    A = {}
    for a in sp["args"]:
        x = rng.standard_normal(shapes[a]).astype(np.float32) * 3
        if a in sp["positive"]:
            x = np.abs(x)
        if a == "labels":
            x = rng.integers(0, max(c, 1), size=shapes[a]).astype(np.float32)
        if a == "target" and name.startswith("crossentropy") and "categorical" in name:
            x = _softmax(rng.standard_normal(shapes[a])).astype(np.float32) if c else x
        if a == "target" and "binary" in name:
            x = rng.random(shapes[a]).astype(np.float32)
        A[a] = x
    victim = draw(st.sampled_from(sp["args"]))
    if victim in UPDATED and kind in ("noncontig", "convertible_dtype"):
        kind = "bad_in_place"  # an array updated in place cannot be a converted copy
    out = None
    x = A[victim]
    if kind == "nan_inf" and x.size:
        flat = x.reshape(-1)
        idx = rng.integers(0, flat.size, size=max(1, flat.size // 3))
        flat[idx] = rng.choice([np.nan, np.inf, -np.inf], size=idx.size)
    elif kind == "huge_values" and x.size:
        x.reshape(-1)[rng.integers(0, x.size)] = draw(st.sampled_from([3e38, -3e38, 1e-45, -0.0]))
    elif kind == "noncontig":
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],) if x.ndim else (2,), np.float32)
        view = big[..., ::2] if x.ndim else big[::2].reshape(())
        view[...] = x
        A[victim] = view.T.copy().T if x.ndim == 2 and draw(st.booleans()) else view
        if x.ndim == 2 and draw(st.booleans()):  # an F-ordered array, a transposed view
            A[victim] = np.asfortranarray(x)
    elif kind == "scalar":
        A[victim] = draw(st.sampled_from([0.5, -2.0, np.float32(1.5), np.array(0.25)]))
    elif kind == "bad_in_place":
        view = np.repeat(A[victim], 2, axis=-1)[..., ::2]
        # a view with size-1 axes is still C-contiguous: then a float64 copy instead
        A[victim] = view if view.size > 1 and not view.flags.c_contiguous and draw(st.booleans()) \
            else A[victim].astype(np.float64)
    elif kind == "convertible_dtype":
        dt = draw(st.sampled_from([np.float64, np.float16, np.int32, np.int64, np.bool_, np.uint8]))
        if victim in A:
            A[victim] = np.round(A[victim]).astype(dt) if dt not in (np.float64, np.float16) else A[victim].astype(dt)
    elif kind == "bad_dtype":
        A[victim] = draw(st.sampled_from([
            A[victim].astype(np.complex64), A[victim].astype(object),
            np.full(A[victim].shape, "1", dtype="U1"), "text", None if victim == "bias" else {"a": 1}]))
        if A[victim] is None:
            A[victim] = [[1, 2], [3]]
    elif kind == "wrong_shape":
        if len(sp["args"]) == 1 and not sp["two_d"]:
            kind = "finite"  # an elementwise op of one array takes any shape
        choice = draw(st.sampled_from([0, 2] if len(sp["args"]) == 1 else [0, 1, 2]))
        x = A[victim]
        A[victim] = (np.zeros(x.shape + (2,), np.float32) if choice == 0
                     else np.zeros((x.shape[0] + 1,) + x.shape[1:], np.float32) if x.ndim and choice == 1
                     else np.zeros((3, 2, 2), np.float32))
    elif kind in ("out_in_place", "out_partial_overlap"):
        if sp["out_shape"] is None:
            return A, None, "finite"  # no out= (scalars, in-place updates): a plain example
        oshape = {"x": shapes["x"], "dy": shapes["dy"], "pred": shapes["pred"], "z": shapes["z"],
                  "ab": (r, c), "cols": (c,)}[sp["out_shape"]]
        if kind == "out_in_place" and sp["in_place"]:
            target = draw(st.sampled_from(sp["in_place"]))
            return A, A[target], kind
        src = draw(st.sampled_from(sp["args"]))
        n = int(np.prod(oshape))
        if n == 0 or A[src].size == 0:
            return A, None, "zero_size"
        buf = np.zeros(A[src].size + n + 1, np.float32)
        buf[:A[src].size] = A[src].reshape(-1)
        A[src] = buf[:A[src].size].reshape(A[src].shape)
        shift = draw(st.integers(1, max(1, A[src].size)))
        if shift >= A[src].size:  # no overlap left: still a valid call
            return A, buf[shift:shift + n].reshape(oshape), "finite"
        return A, buf[shift:shift + n].reshape(oshape), "out_partial_overlap" if kind == "out_in_place" else kind
    return A, out, kind


def _check(name, kind, A, out):
    sp = SPECS[name]
    snapshot = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in A.items()}
    try:
        got, ref = sp["run"](dict(A), out, snapshot)
    except (ValueError, TypeError) as e:
        assert kind not in MUST_SUCCEED, f"{name} refused a valid {kind} input: {e}"
        assert str(e), "an error must say what is wrong"
        for k, v in snapshot.items():  # nothing half-written
            if isinstance(v, np.ndarray) and v.dtype.kind in "fiub":
                np.testing.assert_array_equal(A[k], v)
        return "refused"
    assert kind not in MUST_RAISE, f"{name} accepted a {kind} input"
    if out is not None and not isinstance(got, float):
        assert got is out
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    with np.errstate(over="ignore"):
        ref = ref.astype(np.float32).astype(np.float64)  # what float32 can hold (overflow: inf)
    if kind == "huge_values":
        # values near float32's limits overflow intermediate float32 products (Adam's
        # g*g) that a float64 reference does not: the reference is then the float32
        # NumPy backend, on copies of the same inputs
        previous = fusednn.get_backend().name
        fusednn.set_backend("numpy")
        try:
            again = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in snapshot.items()}
            ref = np.asarray(sp["run"](again, None if out is None else np.empty_like(out), snapshot)[0], np.float64)
        finally:
            fusednn.set_backend(previous)
    scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isinf(ref), 0, ref)), initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5 * scale, equal_nan=True,
                               err_msg=f"{name} on a {kind} input")
    return "agreed"


HOST = [n for n in ("numpy", "cpu") if n in backends.available()]


@pytest.fixture(params=HOST)
def hostile_backend(request):
    previous = fusednn.get_backend().name
    fusednn.set_backend(request.param)
    yield request.param
    fusednn.set_backend(previous)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_inputs_agree_or_raise(hostile_backend, kind, data):
    name = data.draw(st.sampled_from(sorted(SPECS)), label="op")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    A, out, kind = _build(np.random.default_rng(seed), name, kind, data.draw)
    outcome = _check(name, kind, A, out)
    COUNTS[f"{hostile_backend}:{kind}:{outcome}"] += 1
    COUNTS[f"{hostile_backend}:op:{name}"] += 1


@pytest.mark.parametrize("step", [0, -1, 2**63, 2**70, 1.5])
def test_adam_step_out_of_range_is_a_value_error(hostile_backend, step):
    p, g, m, v = (np.ones(3, np.float32) for _ in range(4))
    with pytest.raises(ValueError, match="step"):
        ops.adam_update(p, g, m, v, step=step)
    np.testing.assert_array_equal(p, 1.0)


def teardown_module(module):
    path = os.environ.get("FUSEDNN_HOSTILE_COUNTS")
    if path:
        with open(path, "w") as f:
            json.dump(dict(sorted(COUNTS.items())), f, indent=1)
