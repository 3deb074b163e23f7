"""Batches for fit/evaluate/predict that do not come as whole arrays, and Keras 3's
``steps_per_epoch`` / ``validation_steps`` walk over batches.

A *dataset* is a Python iterator or generator of batches, or a
``keras.utils.PyDataset``-like object (``__len__`` batches, ``__getitem__(i)`` the
i-th; ``on_epoch_end()`` called after each epoch when it has one). A batch is
``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``. Batches are read one at a
time, never all at once.

:class:`BatchCursor` reproduces how Keras 3's ``EpochIterator`` walks data with a
known number of batches when ``steps_per_epoch`` is given: the walk continues
across epochs from where the last one stopped, and starts a new pass (reshuffled
for arrays or a PyDataset with ``shuffle``) when a pass is used up; without
``steps_per_epoch`` every epoch is one whole pass.
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..py_dataset import PyDataset
from ..utils import rng


def is_dataset(x: Any) -> bool:
    """Whether ``x`` is an iterator/generator of batches or a PyDataset-like object
    (rather than an array, or something NumPy reads as one)."""
    if isinstance(x, PyDataset):
        return True
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)):
        return False
    if hasattr(x, "shape") or hasattr(x, "__array__") or hasattr(x, "__array_interface__") \
            or hasattr(x, "__cuda_array_interface__") or hasattr(x, "__dlpack__"):
        return False
    if hasattr(x, "__next__"):
        return True
    return hasattr(x, "__getitem__") and hasattr(x, "__len__")


def unpack(batch: Any) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of a batch (missing parts None), as Keras' unpack_x_y_sample_weight."""
    if isinstance(batch, tuple):
        if not 1 <= len(batch) <= 3:
            raise ValueError(f"a batch must be x, (x,), (x, y) or (x, y, sample_weight); got a tuple of {len(batch)}")
        return (*batch, *(None,) * (3 - len(batch)))  # type: ignore[return-value]
    if isinstance(batch, list) and len(batch) in (2, 3) and not np.isscalar(batch[0]):
        return (*batch, *(None,) * (3 - len(batch)))  # type: ignore[return-value]
    return batch, None, None


class BatchCursor:
    """Keras 3's walk over ``total`` batches: :meth:`take` returns the batch indices of
    the next epoch (``steps`` of them, continuing across epochs and starting a new,
    reshuffled pass when one is used up; all of one pass when ``steps`` is None)."""

    def __init__(self, total: int, shuffle: bool) -> None:
        self.total, self.shuffle = int(total), bool(shuffle)
        self.pass_order: np.ndarray | None = None
        self.pos = 0
        self.passes = 0  # passes started (a new pass reshuffles the rows of array data)

    def _new_pass(self) -> None:
        self.pass_order = np.arange(self.total)
        self.pos = 0
        self.passes += 1

    def take(self, steps: int | None) -> list[tuple[int, np.ndarray]]:
        """The next epoch as runs of consecutive batches: [(pass number, batch indices), ...]."""
        if steps is None or self.pass_order is None or self.pos >= self.total:
            self._new_pass()
        if steps is None:
            self.pos = self.total
            return [(self.passes, self.pass_order)]
        runs, left = [], int(steps)
        while left > 0:
            if self.pos >= self.total:
                self._new_pass()
            k = min(left, self.total - self.pos)
            runs.append((self.passes, self.pass_order[self.pos:self.pos + k]))
            self.pos += k
            left -= k
        return runs


class ArrayWalk:
    """Row orders for array data walked in batches of ``batch`` with a
    :class:`BatchCursor`: each pass is a fresh permutation when ``shuffle``."""

    def __init__(self, n: int, batch: int, shuffle: bool) -> None:
        self.n, self.batch, self.shuffle = n, batch, shuffle
        self.cursor = BatchCursor(-(-n // batch), False)
        self._perm: tuple[int, np.ndarray] | None = None

    def epoch(self, steps: int | None) -> list[np.ndarray]:
        """The next epoch's row orders, one per run of consecutive batches of a pass
        (each starts at a batch boundary, so only a pass's last batch may be short)."""
        out = []
        for p, idx in self.cursor.take(steps):
            if self._perm is None or self._perm[0] != p:
                self._perm = (p, rng().permutation(self.n) if self.shuffle else np.arange(self.n))
            perm = self._perm[1]
            lo, hi = int(idx[0]) * self.batch, min(self.n, (int(idx[-1]) + 1) * self.batch)
            out.append(perm[lo:hi])
        return out


class BatchSource:
    """The batches of a dataset, epoch by epoch: :meth:`epoch` yields ``(x, y, w)`` for
    ``steps`` batches (Keras' walk for a PyDataset; for an iterator, the next
    ``steps`` batches or until it ends). ``exhausted`` turns true when an iterator
    ran out before a requested step."""

    def __init__(self, data: Any, shuffle: bool = False) -> None:
        self.data = data
        self.sized = not hasattr(data, "__next__")
        if self.sized:
            try:
                self.length = data.num_batches if isinstance(data, PyDataset) else len(data)
            except (TypeError, NotImplementedError) as e:
                raise TypeError(f"a PyDataset-like object needs __len__ ({e})") from None
            if self.length is None:
                raise ValueError("a PyDataset with num_batches None (endless) is not supported: give it a length")
            if self.length < 1:
                raise ValueError("the dataset has no batches (len 0)")
            self.cursor = BatchCursor(self.length, shuffle)
            self._shuffle = shuffle
            self._orders: dict[int, np.ndarray] = {}
        self.exhausted = False

    def peek(self) -> Any:
        """The first batch, without consuming it from an iterator."""
        if self.sized:
            return self.data[0]
        first = next(self.data)
        self.data = itertools.chain([first], self.data)
        return first

    def steps(self, steps: int | None) -> int | None:
        """How many batches an epoch has (None: unknown, an iterator without steps)."""
        if steps is not None:
            return int(steps)
        return self.length if self.sized else None

    def epoch(self, steps: int | None) -> Iterator[tuple[Any, Any, Any]]:
        if self.sized:
            hook = getattr(self.data, "on_epoch_begin", None)
            if callable(hook):  # Keras calls it before every pass (fit's epochs, evaluate, predict)
                hook()
            for p, idx in self.cursor.take(steps):
                if self._shuffle:
                    order = self._orders.get(p)
                    if order is None:
                        self._orders = {p: rng().permutation(self.length)}
                        order = self._orders[p]
                    idx = order[idx]
                for i in idx:
                    yield unpack(self.data[int(i)])
            return
        taken = 0
        while steps is None or taken < steps:
            try:
                batch = next(self.data)
            except StopIteration:
                if steps is not None:
                    self.exhausted = True
                return
            taken += 1
            yield unpack(batch)

    def end_epoch(self) -> None:
        """Tell a PyDataset the epoch ended (its ``on_epoch_end``), as Keras does."""
        hook = getattr(self.data, "on_epoch_end", None)
        if self.sized and callable(hook):
            hook()


def warn_ran_out(steps: int, epochs: int) -> None:
    warnings.warn("Your input ran out of data; interrupting training. Make sure that your dataset or "
                  f"generator can generate at least `steps_per_epoch * epochs` batches ({steps * epochs}).",
                  UserWarning, stacklevel=3)
