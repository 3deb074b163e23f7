"""What a model allows from several threads at once, and the deferral of Ctrl-C to a
point where the model's state is consistent.

Inference (``predict``, ``evaluate``) may run on one model from any number of threads
at once: each thread works in its own buffers (see ``per_thread``), the weights are
only read and the kernels release the GIL. ``fit`` writes the weights and keeps each
layer's forward inputs for its backward pass, so while it runs no other thread may
use the model: ``fit`` and inference in different threads raise a RuntimeError that
says so (a callback of the fit may still call ``predict``/``evaluate``: same thread).

A SIGINT (Ctrl-C) during training steps is deferred to the end of the step or run of
native steps in progress (at most about 0.1 s later), so that the weights, optimizer
moments and ``optimizer.iterations`` always describe the same step when
KeyboardInterrupt reaches the user.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

#: per-thread buffer caches kept per model; the oldest goes first beyond this
MAX_THREAD_CACHES = 16


def per_thread(store: dict[int, dict]) -> dict:
    """This thread's cache in ``store`` (a dict of thread id -> dict), made on first use."""
    tid = threading.get_ident()
    cache = store.get(tid)
    if cache is None:
        if len(store) >= MAX_THREAD_CACHES:
            store.pop(next(iter(store)), None)  # a live thread that lost it just makes another
        cache = store.setdefault(tid, {})
    return cache


class UseGuard:
    """Who is using one model: the thread running ``fit`` (at most one) and how many
    inference calls are running in other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fit_thread: int | None = None
        self._inference: dict[int, int] = {}  # thread id -> calls running

    @contextmanager
    def fitting(self, name: str) -> Iterator[None]:
        """Held for the whole of ``fit``; refuses to start beside another fit or beside
        inference in another thread."""
        me = threading.get_ident()
        with self._lock:
            if self._fit_thread is not None:
                raise RuntimeError(f"model {name!r} is already being fit (in "
                                   f"{'this' if self._fit_thread == me else 'another'} thread); "
                                   "one fit at a time per model")
            others = sum(n for t, n in self._inference.items() if t != me)
            if others:
                raise RuntimeError(f"model {name!r} is running predict/evaluate in another thread; fit "
                                   "would change its weights under them: wait for them to finish, or fit a "
                                   "copy of the model")
            self._fit_thread = me
        try:
            yield
        finally:
            with self._lock:
                self._fit_thread = None

    @contextmanager
    def inferring(self, name: str, what: str) -> Iterator[None]:
        """Held for one ``predict``/``evaluate``: any number at once, in any threads, but
        not in another thread than a running ``fit``."""
        me = threading.get_ident()
        with self._lock:
            if self._fit_thread is not None and self._fit_thread != me:
                raise RuntimeError(f"model {name!r} is being fit in another thread; {what} would read "
                                   "weights in the middle of an update: call it after fit returns, from "
                                   "a callback of the fit, or on a copy of the model")
            self._inference[me] = self._inference.get(me, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._inference[me] - 1
                if left:
                    self._inference[me] = left
                else:
                    del self._inference[me]


_current = threading.local()


class DeferredInterrupt:
    """Held for the whole of ``fit``: while it is active (in the main thread, when
    Python's default SIGINT handler is installed; otherwise it changes nothing), a
    SIGINT raises KeyboardInterrupt at once as usual, except inside
    :func:`uninterrupted` blocks, which it lets finish first."""

    def __init__(self) -> None:
        self.pending = False
        self.deferring = False
        self._previous: Any = None
        self._outer: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.deferring:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> "DeferredInterrupt":
        self._outer = getattr(_current, "active", None)
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handler)
            _current.active = self
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
            _current.active = self._outer


class _Uninterrupted:
    """See :func:`uninterrupted`."""

    __slots__ = ("_d",)

    def __enter__(self) -> None:
        d = self._d = getattr(_current, "active", None)
        if d is not None:
            d.deferring = True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        d = self._d
        if d is not None:
            d.deferring = False
            if d.pending:
                d.pending = False
                if exc_type is None:
                    raise KeyboardInterrupt


def uninterrupted() -> _Uninterrupted:
    """``with uninterrupted():`` around one training step (or one native run of steps)
    and the bookkeeping that goes with it: a Ctrl-C that arrives meanwhile is raised as
    KeyboardInterrupt when the block ends, so weights, optimizer state and
    ``optimizer.iterations`` never disagree. A no-op outside :class:`DeferredInterrupt`."""
    return _Uninterrupted()
