"""The C++ affine resampling kernel behind RandomRotation/RandomZoom/RandomResizedCrop
against the NumPy implementation (float64 inputs take the NumPy path)."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import backends, preprocessing as P

pytestmark = pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")


@pytest.mark.parametrize("make", [
    lambda s: P.RandomRotation(0.2, seed=s),
    lambda s: P.RandomRotation(0.5, fill_value=-1.0, interpolation="nearest", seed=s),
    lambda s: P.RandomZoom((-0.4, 0.6), width_factor=0.3, seed=s),
    lambda s: P.RandomResizedCrop((0.3, 0.9), seed=s),
])
@pytest.mark.parametrize("channels", [1, 3])
def test_kernel_matches_numpy(make, channels):
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((37, 9, 7, channels))
    fast = make(5)(x.astype(np.float32))  # float32: the C++ kernel
    slow = make(5)(x.astype(np.float32).astype(np.float64))  # float64: NumPy, same random draws
    assert fast.dtype == np.float32 and slow.dtype == np.float64
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


def test_kernel_rejects_bad_arguments():
    warp = backends.native("cpu").affine_warp
    img = np.zeros((2, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=r"mats must have shape \(2, 2, 3\)"):
        warp(img, np.zeros((3, 2, 3)))
    with pytest.raises(TypeError, match="float64"):
        warp(img, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="4-D"):
        warp(img[0], np.zeros((2, 2, 3)))
