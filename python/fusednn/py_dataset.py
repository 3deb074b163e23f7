"""``keras.utils.PyDataset``: the base class of Keras 3 datasets written in Python.

A subclass returns the batch at position ``index`` from ``__getitem__`` (``x``,
``(x, y)`` or ``(x, y, sample_weight)``) and says how many batches there are with
``__len__`` (or the ``num_batches`` property); ``fit``/``evaluate``/``predict`` read it
one batch at a time (``fusednn.training.datasets``) and call ``on_epoch_begin`` /
``on_epoch_end`` around every pass over it, as Keras does. ``workers``,
``use_multiprocessing`` and ``max_queue_size`` are kept for Keras compatibility: batches
are read in the training thread, in order (Keras' defaults, ``workers=1`` without
multiprocessing, behave the same way).

A leaf module: nothing in fusednn is imported here.
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any


class PyDataset:
    """Base class for datasets that produce batches in Python code (Keras 3's
    ``keras.utils.PyDataset``): subclasses implement ``__getitem__(index)`` and
    ``__len__`` (or ``num_batches``), call ``super().__init__(**kwargs)``, and may
    override ``on_epoch_begin``/``on_epoch_end`` (e.g. to reshuffle)."""

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10) -> None:
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    def _warn_if_super_not_called(self) -> None:
        # Keras' defaults and message, for a subclass whose __init__ forgot super().__init__()
        defaults = {"_workers": 1, "_use_multiprocessing": False, "_max_queue_size": 10}
        missing = [name for name in defaults if not hasattr(self, name)]
        for name in missing:
            setattr(self, name, defaults[name])
        if missing:
            warnings.warn("Your `PyDataset` class should call `super().__init__(**kwargs)` in its constructor. "
                          "`**kwargs` can include `workers`, `use_multiprocessing`, `max_queue_size`. Do not pass "
                          "these arguments to `fit()`, as they will be ignored.", stacklevel=3)

    @property
    def workers(self) -> int:
        """Keras' number of reader workers (kept; fusednn reads batches in order, in one thread)."""
        self._warn_if_super_not_called()
        return self._workers

    @workers.setter
    def workers(self, value: int) -> None:
        self._workers = value

    @property
    def use_multiprocessing(self) -> bool:
        """Keras' choice of processes over threads for the workers (kept, not used)."""
        self._warn_if_super_not_called()
        return self._use_multiprocessing

    @use_multiprocessing.setter
    def use_multiprocessing(self, value: bool) -> None:
        self._use_multiprocessing = value

    @property
    def max_queue_size(self) -> int:
        """Keras' bound on batches read ahead (kept, not used)."""
        self._warn_if_super_not_called()
        return self._max_queue_size

    @max_queue_size.setter
    def max_queue_size(self, value: int) -> None:
        self._max_queue_size = value

    def __getitem__(self, index: int) -> Any:
        """The batch at position ``index``: ``x``, ``(x, y)`` or ``(x, y, sample_weight)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index)")

    @property
    def num_batches(self) -> int | None:
        """The number of batches (``len(self)`` when the subclass defines ``__len__``;
        None would mean an endless dataset, which fusednn does not take)."""
        if hasattr(self, "__len__"):
            return len(self)  # type: ignore[arg-type]
        raise NotImplementedError("You need to implement the `num_batches` property:\n\n"
                                  "@property\ndef num_batches(self):\n  return ...")

    def __iter__(self) -> Iterator[Any]:
        """The batches in order (endlessly when ``num_batches`` is None), as Keras iterates them."""
        try:
            n = self.num_batches
        except NotImplementedError:
            n = None
        for index in (range(n) if n is not None else itertools.count()):
            yield self[index]

    def on_epoch_begin(self) -> None:
        """Called at the beginning of every pass (epoch) over the dataset."""

    def on_epoch_end(self) -> None:
        """Called at the end of every pass (epoch) over the dataset."""
