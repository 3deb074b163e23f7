"""Augmentation of training batches: :class:`RandomFlip`, :class:`RandomRotation`,
:class:`RandomZoom`, :class:`RandomResizedCrop`, :class:`GaussianNoise` and the
:class:`Augmentation` pipeline transform whole batches at once, in NumPy, except that
the resampling transforms use the C++ ``affine_warp`` kernel of ``fusednn._cpu`` on
float32 batches where it is built.

**Augmentation is for training batches only**: ``fit`` applies it to each training
batch as it is drawn and never to validation or test data, whose scores must
describe the data as it is.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ..arrays import to_host as _host

__all__ = ["RandomFlip", "RandomRotation", "RandomZoom", "RandomResizedCrop", "GaussianNoise", "Augmentation", "Compose"]


def _as_images(x: Any, image_shape: Sequence[int] | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """The batch as (N, H, W, C) plus the input's shape, to restore the layout after."""
    x = _host(x)
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) not in (2, 3) or x.ndim < 2 or math.prod(shape) != math.prod(x.shape[1:]):
            raise ValueError(
                f"image_shape {shape} (H, W) or (H, W, C) does not fit samples of shape {x.shape[1:]}"
            )
        imgs = x.reshape((len(x),) + shape)
    elif x.ndim in (3, 4):
        imgs = x
    else:
        raise ValueError(
            f"image batches must be (N, H, W) or (N, H, W, C), got shape {x.shape}; "
            "pass image_shape=(H, W) or (H, W, C) for flat (N, H*W) data"
        )
    return (imgs if imgs.ndim == 4 else imgs[..., None]), x.shape


def _float_dtype(dtype: np.dtype) -> np.dtype:
    # float32 is the compute type; float inputs keep their own precision.
    return dtype if dtype.kind == "f" else np.dtype(np.float32)


def _range(factor: float | tuple[float, float], name: str) -> tuple[float, float]:
    lo, hi = (-abs(factor), abs(factor)) if np.isscalar(factor) else (float(factor[0]), float(factor[1]))
    if lo > hi:
        raise ValueError(f"{name} lower bound {lo} is above upper bound {hi}")
    return lo, hi


def _sample(imgs: np.ndarray, sy: np.ndarray, sx: np.ndarray, fill_value: float,
            interpolation: str) -> np.ndarray:
    """out[n, i, j] = imgs[n] read at source point (sy, sx)[n, i, j]; points outside
    the image read ``fill_value`` (bilinear blends the border with it)."""
    n, h, w, _ = imgs.shape
    batch = np.arange(n)[:, None, None]

    def read(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        vals = imgs[batch, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float64)
        return np.where(inside[..., None], vals, fill_value)

    if interpolation == "nearest":
        return read(np.floor(sy + 0.5).astype(np.intp), np.floor(sx + 0.5).astype(np.intp))
    y0, x0 = np.floor(sy), np.floor(sx)
    wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
    y0, x0 = y0.astype(np.intp), x0.astype(np.intp)
    return ((1 - wy) * ((1 - wx) * read(y0, x0) + wx * read(y0, x0 + 1))
            + wy * ((1 - wx) * read(y0 + 1, x0) + wx * read(y0 + 1, x0 + 1)))


class _Random:
    """Base of the random transforms: holds the Generator (``seed`` may be an int, a
    Generator or None) so repeated calls continue one reproducible stream."""

    def __init__(self, seed: "int | np.random.Generator | None" = None) -> None:
        if seed is None:  # from fusednn's global generator, so set_random_seed makes it repeat (as in Keras)
            from ..utils import rng

            seed = int(rng().integers(0, 2**63))
        self.rng = np.random.default_rng(seed)


class _ImageTransform(_Random):
    def __init__(self, *, image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        super().__init__(seed)
        self.image_shape = image_shape

    def __call__(self, x: Any) -> np.ndarray:
        imgs, shape = _as_images(x, self.image_shape)
        return self._apply(imgs).reshape(shape)


def _native_warp():
    """fusednn._cpu's affine_warp kernel, or None where the extension is not built."""
    from ..backends import native

    k = native("cpu")
    return k.affine_warp if k is not None else None


class _Resampling(_ImageTransform):
    """Transforms that read each output pixel from a per-sample source point given by
    an affine map of the output pixel (``_affine``: one 2x3 matrix per image). Float32
    batches are resampled by the C++ kernel when it is built, others in NumPy (float64)."""

    _clamp = False  # move source points outside the image to its edge instead of filling

    def __init__(self, fill_value: float, interpolation: str, image_shape, seed) -> None:
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        super().__init__(image_shape=image_shape, seed=seed)
        self.fill_value = fill_value
        self.interpolation = interpolation

    def _apply(self, imgs: np.ndarray) -> np.ndarray:
        n, h, w, _ = imgs.shape
        mats = np.ascontiguousarray(self._affine(n, h, w), dtype=np.float64)
        if imgs.size == 0:  # a zero-sized side: the empty batch (the kernel has nothing to do)
            return np.empty(imgs.shape, _float_dtype(imgs.dtype))
        warp = _native_warp()
        if warp is not None and imgs.dtype == np.float32:
            return warp(np.ascontiguousarray(imgs), mats, float(self.fill_value),
                        self.interpolation == "bilinear", self._clamp)
        gy, gx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
        m = mats[:, :, :, None, None]
        sy = m[:, 0, 0] * gy + m[:, 0, 1] * gx + m[:, 0, 2]
        sx = m[:, 1, 0] * gy + m[:, 1, 1] * gx + m[:, 1, 2]
        if self._clamp:
            sy, sx = np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)
        return _sample(imgs, sy, sx, self.fill_value, self.interpolation).astype(_float_dtype(imgs.dtype))

    def _affine(self, n: int, h: int, w: int) -> np.ndarray:
        """(n, 2, 3): sy = M[0] . (gy, gx, 1), sx = M[1] . (gy, gx, 1) for output pixel (gy, gx)."""
        raise NotImplementedError


class RandomFlip(_ImageTransform):
    """Flip each image of a batch, independently with probability 1/2, left-right
    ('horizontal'), up-down ('vertical') or each of the two ('horizontal_and_vertical'),
    as Keras's RandomFlip. Values and dtype are kept exactly."""

    def __init__(self, mode: str = "horizontal", *, image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(
                f"mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', got {mode!r}"
            )
        super().__init__(image_shape=image_shape, seed=seed)
        self.mode = mode

    def _apply(self, imgs: np.ndarray) -> np.ndarray:
        out = imgs.copy()
        for axis, kind in ((2, "horizontal"), (1, "vertical")):
            if kind in self.mode:
                m = self.rng.random(len(out)) < 0.5
                out[m] = np.flip(out[m], axis=axis)
        return out


class RandomRotation(_Resampling):
    """Rotate each image about its centre by an angle drawn uniformly from
    ``factor`` * 2 pi (a float f means [-f, f]; a pair gives the bounds), positive
    counter-clockwise, as Keras's RandomRotation: factor 0.05 is up to +-18 degrees.
    Pixels that come from outside the image are ``fill_value``."""

    def __init__(self, factor: float | tuple[float, float], fill_value: float = 0.0, *,
                 interpolation: str = "bilinear", image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        super().__init__(fill_value, interpolation, image_shape, seed)
        self.factor = _range(factor, "factor")

    def _affine(self, n, h, w):
        theta = self.rng.uniform(*self.factor, size=n) * 2 * np.pi
        cy, cx = (h - 1) / 2, (w - 1) / 2
        cos, sin = np.cos(theta), np.sin(theta)
        # Inverse map of a counter-clockwise turn in image (row-down) coordinates:
        # sy = cy + sin (gx - cx) + cos (gy - cy), sx = cx + cos (gx - cx) - sin (gy - cy)
        return np.stack([np.stack([cos, sin, cy - sin * cx - cos * cy], axis=1),
                         np.stack([-sin, cos, cx - cos * cx + sin * cy], axis=1)], axis=1)


class RandomZoom(_Resampling):
    """Zoom each image about its centre by 1 + f with f drawn uniformly from
    ``height_factor`` (a float f means [-f, f]); as in Keras, positive f zooms out
    (the content shrinks, borders get ``fill_value``) and negative f zooms in.
    ``width_factor`` None uses the same draw for both axes (keeps the aspect ratio)."""

    def __init__(self, height_factor: float | tuple[float, float],
                 width_factor: float | tuple[float, float] | None = None, fill_value: float = 0.0, *,
                 interpolation: str = "bilinear", image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        super().__init__(fill_value, interpolation, image_shape, seed)
        self.height_factor = _range(height_factor, "height_factor")
        self.width_factor = None if width_factor is None else _range(width_factor, "width_factor")
        if self.height_factor[0] <= -1 or (self.width_factor is not None and self.width_factor[0] <= -1):
            raise ValueError("zoom factors must be > -1 (a zoom of 1 + factor must stay positive)")

    def _affine(self, n, h, w):
        zy = 1 + self.rng.uniform(*self.height_factor, size=n)
        zx = zy
        if self.width_factor is not None:
            zx = 1 + self.rng.uniform(*self.width_factor, size=n)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        zero = np.zeros(n)
        # sy = cy + (gy - cy) zy, sx = cx + (gx - cx) zx
        return np.stack([np.stack([zy, zero, cy * (1 - zy)], axis=1),
                         np.stack([zero, zx, cx * (1 - zx)], axis=1)], axis=1)


class RandomResizedCrop(_Resampling):
    """Crop a random window covering a fraction of the image area drawn uniformly
    from ``scale`` (same fraction of height and width, random position inside the
    image) and resize it back to the full size. ``scale=(1, 1)`` is the identity."""

    def __init__(self, scale: tuple[float, float] = (0.64, 1.0), *, interpolation: str = "bilinear",
                 image_shape: Sequence[int] | None = None,
                 seed: "int | np.random.Generator | None" = None) -> None:
        super().__init__(0.0, interpolation, image_shape, seed)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        self.scale = (float(scale[0]), float(scale[1]))

    _clamp = True  # clipping to the edge keeps every read inside the image

    def _affine(self, n, h, w):
        s = np.sqrt(self.rng.uniform(*self.scale, size=n))
        top = self.rng.uniform(size=n) * h * (1 - s)
        left = self.rng.uniform(size=n) * w * (1 - s)
        zero = np.zeros(n)
        # pixel centres of the window: sy = top + (gy + 0.5) s - 0.5, likewise sx
        return np.stack([np.stack([s, zero, top + 0.5 * s - 0.5], axis=1),
                         np.stack([zero, s, left + 0.5 * s - 0.5], axis=1)], axis=1)


class GaussianNoise(_Random):
    """Add zero-mean Gaussian noise of standard deviation ``stddev`` to every value of
    a batch of any shape (images or tabular rows), as Keras's GaussianNoise layer in
    training."""

    def __init__(self, stddev: float, *, seed: "int | np.random.Generator | None" = None) -> None:
        if stddev < 0:
            raise ValueError(f"stddev must be >= 0, got {stddev}")
        super().__init__(seed)
        self.stddev = float(stddev)

    def __call__(self, x: Any) -> np.ndarray:
        x = _host(x)
        dtype = _float_dtype(x.dtype)
        return (x + self.rng.normal(0.0, self.stddev, size=x.shape)).astype(dtype)


class Augmentation:
    """Apply transforms in order to a training batch. With ``image_shape`` a flat
    (N, H*W) or (N, H*W*C) batch is viewed as images once for the whole pipeline and
    returned in its input layout. Use it on training batches only, never on
    validation or test data."""

    def __init__(self, transforms: Sequence[Callable[[np.ndarray], np.ndarray]], *,
                 image_shape: Sequence[int] | None = None) -> None:
        self.transforms = list(transforms)
        self.image_shape = image_shape

    def __call__(self, x: Any) -> np.ndarray:
        x = _host(x)
        shape = x.shape
        if self.image_shape is not None:
            x = _as_images(x, self.image_shape)[0]
        for t in self.transforms:
            x = t(x)
        return x.reshape(shape)


Compose = Augmentation
