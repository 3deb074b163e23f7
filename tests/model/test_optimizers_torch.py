"""SGD (plain, momentum, Nesterov) and Adam against PyTorch: ten single-step fit
calls from identical weights on the same full batch must give the same weights.

Keras' SGD rule (v = mu*v - lr*g; w += v) equals torch's (b = mu*b + g; w -= lr*b)
with v = -lr*b. Keras' Adam adds epsilon to the uncorrected sqrt(v) while torch
adds it after bias correction; with torch's eps at step t set to
1e-7 / sqrt(1 - beta_2^t) the two updates are the same formula.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fusednn
from fusednn import keras

from model_refs import rel_diff

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
torch.set_num_threads(1)  # tiny tensors: extra threads only wait for each other on a busy machine

ACTS = ["tanh", "relu", "linear"]
CASES = {
    "sgd": (lambda: keras.optimizers.SGD(learning_rate=0.1),
            lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_momentum": (lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "sgd_nesterov": (lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.8, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "adam": (lambda: keras.optimizers.Adam(),
             lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.9, 0.999))),
    "adam_fast": (lambda: keras.optimizers.Adam(learning_rate=0.02, beta_1=0.8, beta_2=0.99),
                  lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99))),
}


def _torch_steps(weights, x, y, make_opt, steps, adam_beta_2=None):
    params = [torch.tensor(w.T.copy() if w.ndim == 2 else w.copy(), requires_grad=True) for w in weights]
    opt = make_opt(params)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for t in range(1, steps + 1):
        if adam_beta_2 is not None:
            for group in opt.param_groups:
                group["eps"] = 1e-7 / math.sqrt(1 - adam_beta_2**t)
        h = xt
        for i, act in enumerate(ACTS):
            h = torch.nn.functional.linear(h, params[2 * i], params[2 * i + 1])
            h = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda z: z}[act](h)
        loss = torch.mean((h - yt) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().numpy().T if p.ndim == 2 else p.detach().numpy() for p in params]


@pytest.mark.parametrize("case", sorted(CASES))
def test_ten_fit_calls_match_torch(backend_name, case):
    make_ours, make_torch = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 6)).astype(np.float32)
    y = rng.standard_normal((48, 2)).astype(np.float32)
    fusednn.set_random_seed(1)
    model = keras.Sequential([keras.layers.Dense(8, activation=ACTS[0], input_shape=(6,), bias_initializer="he_uniform"),
                              keras.layers.Dense(7, activation=ACTS[1], bias_initializer="he_uniform"),
                              keras.layers.Dense(2, activation=ACTS[2], bias_initializer="he_uniform")])
    opt = make_ours()
    model.compile(optimizer=opt, loss="mse")
    start = model.get_weights()
    for _ in range(10):
        model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    beta_2 = opt.beta_2 if isinstance(opt, keras.optimizers.Adam) else None
    ref = _torch_steps(start, x, y, make_torch, 10, beta_2)
    for got, want, w0 in zip(model.get_weights(), ref, start):
        assert rel_diff(got, want) < 1e-5
        assert rel_diff(want, w0) > 1e-3  # the weights moved, so agreement means something
