"""The kernel benchmark cases: what each computes, how much work it is, its float64
expected result, and how fusednn and each reference library run it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import ops
from . import reference

Inputs = dict[str, np.ndarray]
# A runner factory gets the case's inputs already placed on the device of the
# implementation (NumPy, torch or CuPy arrays) and returns a zero-argument
# callable that runs the kernel once and returns its output.
Factory = Callable[[Any, Inputs], Callable[[], Any]]


@dataclass
class Case:
    """One kernel at one size."""

    kernel: str
    size: str
    work: float  # FLOPs, or bytes read + written
    unit: str  # "GFLOP/s" or "GB/s"
    make: Callable[[np.random.Generator], Inputs]
    expected: Callable[[Inputs], np.ndarray]
    tol: float  # max |got - expected| / max(|expected|) allowed before timing
    fusednn: Factory
    refs: dict[str, Factory] = field(default_factory=dict)  # "numpy", "torch", "cupy"
    bandwidth_bound: bool = False


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------- matmul
def _matmul_case(M: int, N: int, K: int, ta: bool = False, tb: bool = False, tag: str = "") -> Case:
    def make(rng):
        return {"a": _f32(rng, *((K, M) if ta else (M, K))), "b": _f32(rng, *((N, K) if tb else (K, N)))}

    def expected(xs):
        return reference.matmul(xs["a"], xs["b"], ta, tb)[0]

    def ours(xp, xs):
        a, b = xs["a"], xs["b"]
        out = xp.empty((M, N), dtype=np.float32)
        return lambda: ops.matmul(a, b, transpose_a=ta, transpose_b=tb, out=out)

    def ref_np(xp, xs):  # NumPy and CuPy share the API
        a = xs["a"].T if ta else xs["a"]
        b = xs["b"].T if tb else xs["b"]
        out = xp.empty((M, N), dtype=np.float32)
        return lambda: xp.matmul(a, b, out=out)

    def ref_torch(torch, xs):
        a = xs["a"].T if ta else xs["a"]
        b = xs["b"].T if tb else xs["b"]
        out = torch.empty((M, N), dtype=torch.float32, device=a.device)
        return lambda: torch.matmul(a, b, out=out)

    op = ("T" if ta else "N") + ("T" if tb else "N")
    size = f"{M}x{K}·{K}x{N} {op}" + (f" ({tag})" if tag else "")
    return Case("matmul", size, 2.0 * M * N * K, "GFLOP/s", make, expected, 1e-5 * np.sqrt(K),
                ours, {"numpy": ref_np, "cupy": ref_np, "torch": ref_torch})


def _linear_case(M: int, K: int, N: int, act: str) -> Case:
    def make(rng):
        return {"x": _f32(rng, M, K), "w": _f32(rng, K, N) / np.float32(np.sqrt(K)), "b": _f32(rng, N)}

    def expected(xs):
        return reference.matmul(xs["x"], xs["w"], bias=xs["b"], activation_name=act)[0]

    def ours(xp, xs):
        out = xp.empty((M, N), dtype=np.float32)
        return lambda: ops.linear(xs["x"], xs["w"], xs["b"], activation=act, out=out)

    def ref_np(xp, xs):
        x, w, b = xs["x"], xs["w"], xs["b"]
        out = xp.empty((M, N), dtype=np.float32)

        def run():
            xp.matmul(x, w, out=out)
            xp.add(out, b, out=out)
            if act == "relu":
                xp.maximum(out, 0, out=out)
            elif act == "tanh":
                xp.tanh(out, out=out)
            else:
                xp.divide(1, 1 + xp.exp(-out), out=out)
            return out
        return run

    def ref_torch(torch, xs):
        f = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[act]
        x, w, b = xs["x"], xs["w"], xs["b"]
        return lambda: f(torch.addmm(b, x, w))

    return Case(f"linear+{act}", f"{M}x{K}·{K}x{N}", 2.0 * M * N * K, "GFLOP/s", make, expected,
                1e-5 * np.sqrt(K), ours, {"numpy": ref_np, "cupy": ref_np, "torch": ref_torch})


# ----------------------------------------------------------- elementwise
def _act_ref(act: str, x: np.ndarray) -> np.ndarray:
    return reference.activation(x, act)


def _act_fwd_case(act: str, n: int) -> Case:
    def make(rng):
        return {"x": _f32(rng, n) * np.float32(3)}

    def ours(xp, xs):
        out = xp.empty(n, dtype=np.float32)
        return lambda: ops.activation(xs["x"], act, out=out)

    def ref_np(xp, xs):
        x = xs["x"]
        out = xp.empty(n, dtype=np.float32)
        if act == "relu":
            return lambda: xp.maximum(x, 0, out=out)
        if act == "tanh":
            return lambda: xp.tanh(x, out=out)
        return lambda: xp.divide(1, 1 + xp.exp(-x), out=out)  # what NumPy users write

    def ref_torch(torch, xs):
        f = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[act]
        out = torch.empty_like(xs["x"])
        return lambda: f(xs["x"], out=out) if act != "relu" else torch.clamp_min(xs["x"], 0, out=out)

    return Case(f"{act}", _pow2(n), 8.0 * n, "GB/s", make, lambda xs: _act_ref(act, xs["x"]), 1e-6,
                ours, {"numpy": ref_np, "cupy": ref_np, "torch": ref_torch}, bandwidth_bound=True)


def _act_bwd_case(act: str, n: int) -> Case:
    def make(rng):
        y = _act_ref(act, _f32(rng, n) * np.float32(3)).astype(np.float32)
        return {"dy": _f32(rng, n), "y": y}

    def expected(xs):
        return reference.activation_grad(xs["dy"], xs["y"], act)

    def ours(xp, xs):
        out = xp.empty(n, dtype=np.float32)
        return lambda: ops.activation_grad(xs["dy"], xs["y"], act, out=out)

    def ref_np(xp, xs):
        dy, y = xs["dy"], xs["y"]
        if act == "relu":
            return lambda: dy * (y > 0)
        if act == "sigmoid":
            return lambda: dy * y * (1 - y)
        return lambda: dy * (1 - y * y)

    def ref_torch(torch, xs):
        dy, y = xs["dy"], xs["y"]
        if act == "relu":
            return lambda: torch.ops.aten.threshold_backward(dy, y, 0)
        if act == "sigmoid":
            return lambda: torch.ops.aten.sigmoid_backward(dy, y)
        return lambda: torch.ops.aten.tanh_backward(dy, y)

    return Case(f"{act}_grad", _pow2(n), 12.0 * n, "GB/s", make, expected, 1e-5, ours,
                {"numpy": ref_np, "cupy": ref_np, "torch": ref_torch}, bandwidth_bound=True)


def _copy_case(n: int) -> Case:
    """Device-to-device copy: the bandwidth ceiling the elementwise kernels are held to."""
    def make(rng):
        return {"x": _f32(rng, n)}

    def run(xp, xs):
        out = xp.empty(n, dtype=np.float32)
        return lambda: (xp.copyto(out, xs["x"]), out)[1]

    def ours(xp, xs):  # fusednn has no copy kernel: the linear activation is one
        out = xp.empty(n, dtype=np.float32)
        return lambda: ops.activation(xs["x"], "linear", out=out)

    def ref_torch(torch, xs):
        out = torch.empty_like(xs["x"])
        return lambda: out.copy_(xs["x"])

    return Case("copy", _pow2(n), 8.0 * n, "GB/s", make, lambda xs: xs["x"].astype(np.float64), 0.0,
                ours, {"numpy": run, "cupy": run, "torch": ref_torch}, bandwidth_bound=True)


def _mse_case(n: int) -> Case:
    def make(rng):
        return {"p": _f32(rng, n), "t": _f32(rng, n)}

    def expected(xs):
        return np.array([reference.mse(xs["p"], xs["t"])])

    def ours(xp, xs):
        return lambda: np.array([ops.mse(xs["p"], xs["t"])])

    def ref_np(xp, xs):
        return lambda: float(xp.mean((xs["p"] - xs["t"]) ** 2))

    def ref_torch(torch, xs):
        return lambda: float(torch.nn.functional.mse_loss(xs["p"], xs["t"]))

    return Case("mse", _pow2(n), 8.0 * n, "GB/s", make, expected, 1e-6, ours,
                {"numpy": ref_np, "cupy": ref_np, "torch": ref_torch}, bandwidth_bound=True)


def _mse_grad_case(n: int) -> Case:
    def make(rng):
        return {"p": _f32(rng, n), "t": _f32(rng, n)}

    def ours(xp, xs):
        out = xp.empty(n, dtype=np.float32)
        return lambda: ops.mse_grad(xs["p"], xs["t"], out=out)

    def ref_np(xp, xs):
        return lambda: (2.0 / n) * (xs["p"] - xs["t"])

    def ref_torch(torch, xs):
        return lambda: (2.0 / n) * (xs["p"] - xs["t"])

    return Case("mse_grad", _pow2(n), 12.0 * n, "GB/s", make,
                lambda xs: reference.mse_grad(xs["p"], xs["t"]), 1e-6, ours,
                {"numpy": ref_np, "cupy": ref_np, "torch": ref_torch}, bandwidth_bound=True)


# -------------------------------------------------------------- optimizers
def _adam_case(n: int) -> Case:
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7

    def make(rng):
        return {"w": _f32(rng, n), "g": _f32(rng, n), "m": np.zeros(n, np.float32), "v": np.zeros(n, np.float32)}

    def expected(xs):  # one step from m = v = 0
        return reference.adam_step(xs["w"], xs["g"], xs["m"], xs["v"], 1, lr, b1, b2, eps)[0]

    def ours(xp, xs):
        w, g, m, v = (xp.array(xs[k]) for k in "wgmv")  # private copies: updated in place
        return lambda: (ops.adam_update(w, g, m, v, step=1, learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps), w)[1]

    def ref_np(xp, xs):
        w, g, m, v = (xp.array(xs[k]) for k in "wgmv")
        alpha = np.float32(lr * np.sqrt(1 - b2) / (1 - b1))

        def run():
            m[...] = m + (g - m) * np.float32(1 - b1)
            v[...] = v + (g * g - v) * np.float32(1 - b2)
            w[...] = w - m * alpha / (xp.sqrt(v) + np.float32(eps))
            return w
        return run

    def ref_torch(torch, xs):
        w = torch.nn.Parameter(xs["w"].clone())
        w.grad = xs["g"].clone()
        # Keras adds epsilon to the uncorrected sqrt(v), PyTorch after bias correction:
        # at step 1 these agree when PyTorch's eps is eps / sqrt(1 - beta_2)
        opt = torch.optim.Adam([w], lr=lr, betas=(b1, b2), eps=eps / np.sqrt(1 - b2))

        def run():
            opt.step()
            return w.detach()
        return run

    return Case("adam_update", _pow2(n), 28.0 * n, "GB/s", make, expected, 1e-5, ours,
                {"numpy": ref_np, "cupy": ref_np, "torch": ref_torch}, bandwidth_bound=True)


def _sgd_case(n: int) -> Case:
    lr, mu = 0.01, 0.9

    def make(rng):
        return {"w": _f32(rng, n), "g": _f32(rng, n), "v": np.zeros(n, np.float32)}

    def expected(xs):  # one step from v = 0
        return reference.sgd_step(xs["w"], xs["g"], xs["v"], lr, mu, False)[0]

    def ours(xp, xs):
        w, g, v = (xp.array(xs[k]) for k in "wgv")
        return lambda: (ops.sgd_update(w, g, v, learning_rate=lr, momentum=mu), w)[1]

    def ref_np(xp, xs):
        w, g, v = (xp.array(xs[k]) for k in "wgv")

        def run():
            v[...] = np.float32(mu) * v - np.float32(lr) * g
            w[...] = w + v
            return w
        return run

    def ref_torch(torch, xs):
        w = torch.nn.Parameter(xs["w"].clone())
        w.grad = xs["g"].clone()
        opt = torch.optim.SGD([w], lr=lr, momentum=mu)

        def run():
            opt.step()
            return w.detach()
        return run

    return Case("sgd_update", _pow2(n), 20.0 * n, "GB/s", make, expected, 1e-5, ours,
                {"numpy": ref_np, "cupy": ref_np, "torch": ref_torch}, bandwidth_bound=True)


def _pow2(n: int) -> str:
    k = int(np.log2(n))
    return f"2^{k}" if 1 << k == n else str(n)


# ---------------------------------------------------------------- registry
MLP_SHAPES = [  # (M, N, K, ta, tb, tag): the seed MLP and the larger MLP, forward and backward
    (32, 64, 10, False, False, "seed fwd"), (32, 64, 64, False, False, "seed fwd"),
    (10, 64, 32, True, False, "seed dW"), (64, 64, 32, True, False, "seed dW"),
    (32, 64, 64, False, True, "seed dx"),
    (128, 256, 784, False, False, "mlp fwd"), (784, 256, 128, True, False, "mlp dW"),
    (128, 784, 256, False, True, "mlp dx"),
]


def cases(quick: bool = False) -> list[Case]:
    """Every benchmark case, smallest first within each kernel; ``quick`` keeps the
    sizes the issue's targets name and drops the largest."""
    squares = [256, 1024] if quick else [256, 512, 1024, 2048, 4096]
    ew = [1 << 24] if quick else [1 << 16, 1 << 20, 1 << 24]
    out: list[Case] = [_matmul_case(n, n, n) for n in squares]
    if not quick:
        out += [_matmul_case(1024, 1024, 1024, ta, tb) for ta, tb in ((False, True), (True, False), (True, True))]
    out += [_matmul_case(M, N, K, ta, tb, tag) for M, N, K, ta, tb, tag in MLP_SHAPES]
    out += [_linear_case(32, 10, 64, "relu"), _linear_case(32, 64, 64, "relu"),
            _linear_case(128, 784, 256, "relu"), _linear_case(128, 256, 256, "tanh"),
            _linear_case(128, 256, 256, "sigmoid")]
    for n in ew:
        out.append(_copy_case(n))
        for act in ("relu", "sigmoid", "tanh"):
            out += [_act_fwd_case(act, n), _act_bwd_case(act, n)]
        out += [_mse_case(n), _mse_grad_case(n), _adam_case(n), _sgd_case(n)]
    return out


KERNELS = ["matmul", "linear", "copy", "relu", "sigmoid", "tanh", "relu_grad", "sigmoid_grad", "tanh_grad",
           "mse", "mse_grad", "adam_update", "sgd_update"]
