"""Keras' ``Dropout``: inverted dropout in training, the identity in inference.

The mask comes from Philox4x32-10 (:mod:`.philox`, ``csrc/include/fusednn/philox.h``)
keyed by the layer's seed and its own step counter, with the element index as the
counter: the numpy, cpu and cuda backends and the fused trainer draw the same
mask for the same seed and step. The counter advances once per training batch (on
either path), so a model keeps drawing fresh masks across ``fit`` calls.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..utils import rng
from .base import Buffers, Layer


def _seed(seed: Any, where: str) -> tuple[int, int | None]:
    """(the seed the kernels use, the seed to save): None draws one from fusednn's generator."""
    if seed is None:
        return int(rng().integers(0, 2**63)), None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"{where} seed must be None or an integer in [0, 2**64), got {seed!r}")
    return int(seed), int(seed)


class Dropout(Layer):
    """Sets inputs to 0 with probability ``rate`` during training and scales the rest by
    ``1/(1-rate)``, as ``keras.layers.Dropout(rate, noise_shape=None, seed=None)``;
    outside training it passes inputs through. ``noise_shape`` (``(batch, features)``
    with ``None`` for "as the input" and ``1`` to share the draw along that axis, e.g.
    ``(None, 1)`` drops whole samples) broadcasts the mask as in Keras."""

    uses_training = True

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None, input_shape: Any = None,
                 input_dim: int | None = None, name: str | None = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)) \
                or not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)
        if noise_shape is not None:
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
            if len(noise_shape) != 2 or any(d is not None and d < 1 for d in noise_shape):
                raise ValueError(f"Dropout noise_shape must be (batch, features) with entries None or >= 1 "
                                 f"(layers take 2-D input), got {noise_shape!r}")
        self.noise_shape = noise_shape
        self.seed, self._saved_seed = _seed(seed, "Dropout")
        super().__init__(name, input_shape, input_dim)
        #: the step counter of the mask draws (host int64, shared with the fused trainer)
        self.counter = np.zeros(1, dtype=np.int64)
        self._mask = None

    def _broadcast(self, rows: int) -> tuple[bool, bool]:
        if self.noise_shape is None:
            return False, False
        r, c = self.noise_shape
        if c is not None and c not in (1, self.input_dim):
            raise ValueError(f"Dropout {self.name!r}: noise_shape {self.noise_shape} does not broadcast to "
                             f"{self.input_dim} features")
        if r is not None and r not in (1, rows):
            raise ValueError(f"Dropout {self.name!r}: noise_shape {self.noise_shape} does not broadcast to "
                             f"a batch of {rows}")
        return r == 1 and rows != 1, c == 1 and self.input_dim != 1

    def build(self, input_dim: int) -> None:
        super().build(input_dim)
        self._broadcast(1)  # checks the feature axis of noise_shape now

    def weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        """No weights: Dropout has none (what saving checks before building)."""
        return []

    def forward(self, x: Any, buf: Buffers, training: bool = False) -> Any:
        self._mask = None
        if not training or self.rate == 0.0:
            return x
        if buf.dz is None:  # the mask buffer of this batch size
            buf.dz = self.backend.empty(buf.y.shape)
        row_b, col_b = self._broadcast(x.shape[0])
        self.backend.dropout_mask(buf.dz, self.rate, self.seed, int(self.counter[0]), row_b, col_b)
        self.counter[0] += 1
        self.backend.mul(x, buf.dz, buf.y)
        self._mask = buf.dz
        return buf.y

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        if not need_dx:
            return None
        if self._mask is None:  # identity forward
            return dy
        if buf.dx is None:
            buf.dx = self.backend.empty(buf.y.shape)
        self.backend.mul(dy, self._mask, buf.dx)
        return buf.dx

    def fused_step(self, be: Any, batch: int) -> dict | None:
        """The fused trainer's step (fusednn/layer_steps.h), or None for the identity (rate 0)."""
        if self.rate == 0.0:
            return None
        row_b, col_b = self._broadcast(batch)
        if self.noise_shape is not None and self.noise_shape[0] == 1:
            row_b = True  # also for a last batch of one row: the same draw either way
        return {"kind": "dropout", "rate": self.rate, "seed": self.seed, "counter": self.counter,
                "row_b": row_b, "col_b": col_b, "M": be.empty((batch, self.input_dim))}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                "seed": self._saved_seed}

    def onnx_nodes(self, builder: Any, x: str) -> str:
        return x  # inference: the identity

    def __repr__(self) -> str:
        return f"<Dropout name={self.name!r} rate={self.rate}>"


class _TrainingNoise(Layer):
    """Base of the training-only Gaussian noise layers: the draws are Philox normals
    (:func:`.philox.normal`) keyed by the seed and the layer's step counter; the cpu
    backend and the fused cpu trainer draw them natively (csrc/cpu/steps_more.cpp), the
    others on the host, and every backend sees the same noise."""

    uses_training = True

    def __init__(self, seed: int | None, input_shape: Any, input_dim: int | None, name: str | None) -> None:
        self.seed, self._saved_seed = _seed(seed, type(self).__name__)
        super().__init__(name, input_shape, input_dim)
        self.counter = np.zeros(1, dtype=np.int64)
        self._factor = None

    def _factor_into(self, m: Any, scale: float, add_one: bool) -> Any:
        """``m`` = ``scale * z`` (+ 1 with ``add_one``) for this step's normals z (the backend's
        ``gaussian_factor``: native on cpu, the same numbers as the NumPy twin); advances the counter."""
        self.backend.gaussian_factor(m, self.seed, int(self.counter[0]), scale, add_one)
        self.counter[0] += 1
        return m

    def _scale(self) -> float:
        raise NotImplementedError

    def fused_step(self, be: Any, batch: int) -> dict | None:
        """The fused trainer's step (fusednn/layer_steps.h), or None for the identity (no noise)."""
        if self._scale() == 0.0:
            return None
        return {"kind": self._kind, "scale": self._scale(), "seed": self.seed, "counter": self.counter,
                "M": be.empty((batch, self.input_dim))}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self._saved_seed}


class GaussianNoise(_TrainingNoise):
    """``keras.layers.GaussianNoise(stddev, seed=None)``: adds zero-mean normal noise of
    standard deviation ``stddev`` in training; the identity in inference."""

    def __init__(self, stddev: float, seed: int | None = None, input_shape: Any = None,
                 input_dim: int | None = None, name: str | None = None) -> None:
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float, np.integer, np.floating)) or stddev < 0:
            raise ValueError(f"GaussianNoise stddev must be a number >= 0, got {stddev!r}")
        self.stddev = float(stddev)
        super().__init__(seed, input_shape, input_dim, name)

    def forward(self, x: Any, buf: Buffers, training: bool = False) -> Any:
        if not training or self.stddev == 0.0:
            return x
        if buf.dz is None:  # the noise buffer of this batch size
            buf.dz = self.backend.empty(buf.y.shape)
        buf.y[...] = x + self._factor_into(buf.dz, self._scale(), False)
        return buf.y

    _kind = "gaussian_noise"

    def _scale(self) -> float:
        return self.stddev

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        return dy if need_dx else None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev}

    def onnx_nodes(self, builder: Any, x: str) -> str:
        return x


class GaussianDropout(_TrainingNoise):
    """``keras.layers.GaussianDropout(rate, seed=None)``: multiplies by normal noise of mean
    1 and standard deviation ``sqrt(rate / (1 - rate))`` in training; the identity in inference."""

    def __init__(self, rate: float, seed: int | None = None, input_shape: Any = None,
                 input_dim: int | None = None, name: str | None = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"GaussianDropout rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)
        super().__init__(seed, input_shape, input_dim, name)

    def forward(self, x: Any, buf: Buffers, training: bool = False) -> Any:
        self._factor = None
        if not training or self.rate == 0.0:
            return x
        if buf.dz is None:
            buf.dz = self.backend.empty(buf.y.shape)
        self._factor_into(buf.dz, self._scale(), True)
        self.backend.mul(x, buf.dz, buf.y)
        self._factor = buf.dz
        return buf.y

    _kind = "gaussian_dropout"

    def _scale(self) -> float:
        """The normals' standard deviation sqrt(rate / (1 - rate)), rounded to float32."""
        return float(np.float32(np.sqrt(self.rate / (1.0 - self.rate))))

    def backward(self, dy: Any, buf: Buffers, need_dx: bool) -> Any:
        if not need_dx:
            return None
        if self._factor is None:
            return dy
        if buf.dx is None:
            buf.dx = self.backend.empty(buf.y.shape)
        self.backend.mul(dy, self._factor, buf.dx)
        return buf.dx

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}

    def onnx_nodes(self, builder: Any, x: str) -> str:
        return x
