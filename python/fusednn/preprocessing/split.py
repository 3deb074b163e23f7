"""Splitting: scikit-learn's :func:`train_test_split`, index for index for the same
integer ``random_state`` (1-d ``stratify``)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..arrays import to_host as _host

__all__ = ["train_test_split"]


def _split_sizes(n: int, test_size: Any, train_size: Any) -> tuple[int, int]:
    """scikit-learn's _validate_shuffle_split: (n_train, n_test), floats rounded test-up."""
    if test_size is None and train_size is None:
        test_size = 0.25
    for name, size in (("test_size", test_size), ("train_size", train_size)):
        kind = np.asarray(size).dtype.kind
        if size is not None and kind not in "if":
            raise ValueError(f"Invalid value for {name}: {size}")
        if (kind == "i" and not 0 < size < n) or (kind == "f" and not 0 < size < 1):
            raise ValueError(
                f"{name}={size} should be either positive and smaller than the number of samples {n} "
                "or a float in the (0, 1) range"
            )
    floats = [np.asarray(s).dtype.kind == "f" for s in (test_size, train_size)]
    if all(floats) and train_size + test_size > 1:
        raise ValueError(
            f"The sum of test_size and train_size = {train_size + test_size}, should be in the (0, 1) range. "
            "Reduce test_size and/or train_size."
        )
    n_test = None if test_size is None else (math.ceil(test_size * n) if floats[0] else int(test_size))
    n_train = None if train_size is None else (math.floor(train_size * n) if floats[1] else int(train_size))
    n_train = n - n_test if n_train is None else n_train
    n_test = n - n_train if n_test is None else n_test
    if n_train + n_test > n:
        raise ValueError(
            f"The sum of train_size and test_size = {n_train + n_test}, should be smaller than the number of "
            f"samples {n}. Reduce test_size and/or train_size."
        )
    if n_train == 0:
        raise ValueError(
            f"With n_samples={n}, test_size={test_size} and train_size={train_size}, the resulting train set "
            "will be empty. Adjust any of the aforementioned parameters."
        )
    return n_train, n_test


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng) -> np.ndarray:
    """Per-class draw counts closest to proportional, ties broken at random (sklearn's)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _stratified_indices(y: np.ndarray, n_train: int, n_test: int, rng) -> tuple[np.ndarray, np.ndarray]:
    if y.ndim == 2:
        _, y_idx, counts = np.unique(y, axis=0, return_inverse=True, return_counts=True)
    else:
        _, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    y_idx = y_idx.reshape(-1)
    if counts.min() < 2:
        raise ValueError(
            "The least populated class in y has only 1 member, which is too few. The minimum number of "
            "groups for any class cannot be less than 2."
        )
    for name, size in (("train_size", n_train), ("test_size", n_test)):
        if size < len(counts):
            raise ValueError(
                f"The {name} = {size} should be greater or equal to the number of classes = {len(counts)}"
            )
    class_indices = np.split(np.argsort(y_idx, kind="stable"), np.cumsum(counts)[:-1])
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train, test = [], []
    for i, members in enumerate(class_indices):
        perm = members.take(rng.permutation(counts[i]), mode="clip")
        train.extend(perm[: n_i[i]])
        test.extend(perm[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _take(a: Any, idx: np.ndarray) -> Any:
    if isinstance(a, (list, tuple)):
        return [a[i] for i in idx]
    if hasattr(a, "iloc"):
        return a.iloc[idx]
    return a[idx]


def train_test_split(
    *arrays: Any,
    test_size: float | int | None = None,
    train_size: float | int | None = None,
    random_state: "int | np.random.RandomState | np.random.Generator | None" = None,
    shuffle: bool = True,
    stratify: Any = None,
) -> list[Any]:
    """Split arrays into random train and test subsets: returns ``[a_train, a_test,
    b_train, b_test, ...]``, as ``sklearn.model_selection.train_test_split``. Sizes are
    fractions (float in (0, 1); test rounded up, train down) or counts (int); with
    neither given the test set is 25%. ``random_state`` (int, RandomState or
    Generator) makes it repeatable; an int gives the same indices as scikit-learn.
    ``stratify`` (class labels) keeps each class's proportion in both parts;
    ``shuffle=False`` takes the first rows for training and cannot stratify."""
    if not arrays:
        raise ValueError("At least one array required as input")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: {lengths}")
    n = lengths[0]
    n_train, n_test = _split_sizes(n, test_size, train_size)
    if not shuffle:
        if stratify is not None:
            raise ValueError("Stratified train/test split is not implemented for shuffle=False")
        train, test = np.arange(n_train), np.arange(n_train, n_train + n_test)
    else:
        rng = (random_state if isinstance(random_state, (np.random.RandomState, np.random.Generator))
               else np.random.RandomState(random_state))
        if stratify is not None:
            y = _host(stratify)
            if len(y) != n:
                raise ValueError(f"stratify has {len(y)} labels but the arrays have {n} samples")
            train, test = _stratified_indices(y, n_train, n_test, rng)
        else:
            perm = rng.permutation(n)
            test, train = perm[:n_test], perm[n_test: n_test + n_train]
    out: list[Any] = []
    for a in arrays:
        out += [_take(a, train), _take(a, test)]
    return out
