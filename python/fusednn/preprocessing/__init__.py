"""Data preparation, NumPy on the host: one file per family.

- ``scaling``: :class:`StandardScaler` and :class:`MinMaxScaler` with scikit-learn's
  conventions, savable without pickle (``state_dict``, ``get_config``);
- ``cleaning``: :func:`clean` (non-finite values, outliers) and its :class:`CleanReport`;
- ``split``: :func:`train_test_split`, scikit-learn's, index for index;
- ``augment``: image and noise transforms for training batches and the
  :class:`Augmentation` pipeline (training batches only: never validation or test data).

Inputs may be lists, NumPy arrays or CuPy arrays (copied to the host once).
"""
from . import augment, cleaning, scaling, split
from .augment import (Augmentation, Compose, GaussianNoise, RandomFlip, RandomResizedCrop, RandomRotation,
                      RandomZoom)
from .cleaning import CleanReport, clean
from .scaling import MinMaxScaler, NotFittedError, StandardScaler
from .split import train_test_split

__all__ = [
    "NotFittedError",
    "StandardScaler",
    "MinMaxScaler",
    "CleanReport",
    "clean",
    "train_test_split",
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomResizedCrop",
    "GaussianNoise",
    "Augmentation",
    "Compose",
]
