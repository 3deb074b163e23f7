"""Forward + backward time of every elementwise activation on the cpu backend (AVX2
path, then the portable path) beside PyTorch eager on the same float32 array, as a
ratio, checking each result against the NumPy float64 reference before timing.

    python benchmarks/bench_activations.py [--n 1048576]
"""
from __future__ import annotations

import argparse

import numpy as np

from fusednn import backends
from fusednn.backends import cpu as _cpu_backend
from fusednn.backends import numpy_ext
from fusednn.bench.timing import measure

NAMES = ["relu", "sigmoid", "tanh", "elu", "selu", "leaky_relu", "gelu", "gelu_tanh", "swish", "softplus",
         "softsign", "hard_sigmoid", "hard_swish", "relu6", "mish", "exponential"]


def torch_fn(torch, name):
    F = torch.nn.functional
    return {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "elu": F.elu, "selu": F.selu,
            "leaky_relu": lambda t: F.leaky_relu(t, 0.2), "gelu": F.gelu,
            "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "swish": F.silu, "softplus": F.softplus,
            "softsign": F.softsign, "hard_sigmoid": F.hardsigmoid, "hard_swish": F.hardswish, "relu6": F.relu6,
            "mish": F.mish, "exponential": torch.exp}[name]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1 << 20)
    args = ap.parse_args()
    k = _cpu_backend._cpu
    try:
        import torch
        torch.set_num_threads(k.num_threads())
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(args.n) * 3).astype(np.float32)
    dy = rng.standard_normal(args.n).astype(np.float32)
    out, dx = np.empty_like(x), np.empty_like(x)
    print(f"n = {args.n}, {k.num_threads()} threads, simd = {k.simd_path()}; microseconds (median of 7)")
    print(f"{'activation':<13}{'fwd avx2':>10}{'fwd port':>10}{'bwd avx2':>10}{'torch fwd':>10}{'torch/avx2':>11}")
    for name in NAMES:
        code = backends.ACTIVATIONS[name]
        saved = x if name in backends.NEEDS_INPUT else out
        if name not in ("relu", "sigmoid", "tanh"):  # check before timing
            want = numpy_ext.act_forward64(x.astype(np.float64), name)
            got = k.act_forward(x, code, out)
            assert np.allclose(got, want, rtol=1e-5, atol=1e-6), name
        times = []
        for portable in (False, True):
            k.force_portable(portable)
            times.append(measure(lambda: k.act_forward(x, code, out)).median)
        k.force_portable(False)
        k.act_forward(x, code, out)
        bwd = measure(lambda: k.act_backward(dy, saved, code, dx)).median
        if torch is not None:
            xt, f = torch.from_numpy(x), torch_fn(torch, name)
            tt = measure(lambda: f(xt)).median
            tcol, ratio = f"{tt * 1e6:10.0f}", f"{tt / times[0]:10.1f}x"
        else:
            tcol, ratio = f"{'-':>10}", f"{'-':>11}"
        print(f"{name:<13}{times[0] * 1e6:10.0f}{times[1] * 1e6:10.0f}{bwd * 1e6:10.0f}{tcol}{ratio}")


if __name__ == "__main__":
    main()
