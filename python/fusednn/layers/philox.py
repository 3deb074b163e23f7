"""Philox4x32-10 in vectorised NumPy, bit-identical to ``csrc/include/fusednn/philox.h``.

The dropout mask (and, later, other training-time noise) is a pure function of a
layer's seed, its step counter and the element index, so the NumPy reference,
the C++ kernels and the CUDA kernels draw exactly the same numbers. Convention
for element ``e`` of the draw at step ``t``: key ``(lo32(seed), hi32(seed))``,
counter ``(lo32(e >> 2), hi32(e >> 2), lo32(t), hi32(t))``, word ``e & 3`` of the
output; the uniform is ``(word >> 8) * 2**-24`` (exact in float32).
"""
from __future__ import annotations

import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def philox4x32_10(c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, k0: int,
                  k1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four 32-bit output words (uint32 arrays) for counters ``(c0, c1, c2, c3)``
    (uint32 arrays of one shape, or scalars) and key ``(k0, k1)``."""
    c = [np.asarray(v, dtype=np.uint64) for v in (c0, c1, c2, c3)]
    c0, c1, c2, c3 = np.broadcast_arrays(*c)
    k0, k1 = int(k0) & 0xFFFFFFFF, int(k1) & 0xFFFFFFFF
    for r in range(10):
        if r:
            k0, k1 = (k0 + _W0) & 0xFFFFFFFF, (k1 + _W1) & 0xFFFFFFFF
        p0 = _M0 * c0  # < 2^64: the product of two 32-bit numbers
        p1 = _M1 * c2
        hi0, lo0 = p0 >> _S32, p0 & _MASK32
        hi1, lo1 = p1 >> _S32, p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    return tuple(v.astype(np.uint32) for v in (c0, c1, c2, c3))


def words(seed: int, step: int, index: np.ndarray) -> np.ndarray:
    """The uint32 word of each element index (uint64 array) at ``step`` for ``seed``."""
    e = np.asarray(index, dtype=np.uint64)
    blk = e >> np.uint64(2)
    t = int(step) & 0xFFFFFFFFFFFFFFFF
    out = philox4x32_10(blk & _MASK32, blk >> _S32, np.uint64(t & 0xFFFFFFFF), np.uint64(t >> 32),
                        int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF)
    stacked = np.stack(out, axis=-1)
    return np.take_along_axis(stacked, (e & np.uint64(3)).astype(np.intp)[..., None], axis=-1)[..., 0]


def uniform(seed: int, step: int, index: np.ndarray) -> np.ndarray:
    """Float32 uniforms in [0, 1) for each element index (see the module docstring)."""
    return (words(seed, step, index) >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)


def noise_index(rows: int, cols: int, row_b: bool, col_b: bool) -> np.ndarray:
    """The noise element of each (r, c) of a rows×cols draw, shared across rows
    (``row_b``) and/or columns (``col_b``) as Keras' ``noise_shape`` with a 1 there."""
    r = np.zeros((rows, 1), np.uint64) if row_b else np.arange(rows, dtype=np.uint64)[:, None]
    c = np.zeros((1, cols), np.uint64) if col_b else np.arange(cols, dtype=np.uint64)[None, :]
    nc = np.uint64(1 if col_b else cols)
    return np.broadcast_to(r * nc + c, (rows, cols))


def dropout_mask(rows: int, cols: int, rate: float, seed: int, step: int, row_b: bool = False,
                 col_b: bool = False) -> np.ndarray:
    """Inverted dropout's float32 mask: ``1/(1-rate)`` where the uniform is >= rate, else 0."""
    rate32 = np.float32(rate)
    scale = np.float32(1) / (np.float32(1) - rate32)
    u = uniform(seed, step, noise_index(rows, cols, row_b, col_b))
    return np.where(u >= rate32, scale, np.float32(0)).astype(np.float32)


def normal(rows: int, cols: int, seed: int, step: int) -> np.ndarray:
    """Float32 standard normals for a rows×cols draw by Box-Muller over Philox: element
    ``e`` takes the uniforms of indices ``2e`` (as ``(k + 1) * 2**-24`` in (0, 1], so the
    log is finite) and ``2e + 1``; the transcendental part runs in float64."""
    e = np.arange(rows * cols, dtype=np.uint64)
    w1 = words(seed, step, 2 * e) >> np.uint32(8)
    w2 = words(seed, step, 2 * e + np.uint64(1)) >> np.uint32(8)
    u1 = (w1.astype(np.float64) + 1.0) * 2.0**-24
    u2 = w2.astype(np.float64) * 2.0**-24
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32).reshape(rows, cols)
