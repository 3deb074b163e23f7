"""The brief's worked example: learn y = 2x + 1 with one Dense unit.

The model is y_hat = w*x + b with w and b both starting at 1; plain (full-batch)
gradient descent on the mean squared error moves them to w = 2, b = 1.
Run: python examples/linear_regression.py [--backend numpy|cpu|cuda]
"""
from __future__ import annotations

import argparse

import numpy as np

import fusednn
from fusednn import keras


def main(backend: str | None = None, epochs: int = 300, learning_rate: float = 0.5) -> tuple[float, float]:
    """Train and return the learned (w, b)."""
    if backend:
        fusednn.set_backend(backend)
    x = np.linspace(0.0, 1.0, 101).reshape(-1, 1)
    y = 2.0 * x + 1.0
    model = keras.Sequential([
        keras.layers.Dense(1, input_shape=(1,), kernel_initializer="ones", bias_initializer="ones"),
    ])
    # Full-batch steps in a fixed order: exactly gradient descent, L = mean((y - y_hat)^2).
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="mse")
    print(f"backend: {fusednn.get_backend().name}; start: loss = {model.evaluate(x, y, verbose=0):.6f}")
    every = max(1, epochs // 10)
    for done in range(every, epochs + 1, every):
        history = model.fit(x, y, batch_size=len(x), epochs=every, shuffle=False, verbose=0)
        w, b = (float(v.ravel()[0]) for v in model.get_weights())
        print(f"epoch {done:4d}: loss = {history.history['loss'][-1]:.3e}   w = {w:.5f}   b = {b:.5f}")
    print(f"learned y = {w:.4f} x + {b:.4f}   (true: y = 2 x + 1)")
    return w, b


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["numpy", "cpu", "cuda"], default=None)
    main(parser.parse_args().backend)
