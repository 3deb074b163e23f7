"""How one callable is timed: warm-up, calibrated inner loops, median and spread."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Timing:
    """Seconds per call: the median over repeats, and the fastest and slowest repeat."""

    median: float
    low: float
    high: float
    calls: int  # calls per repeat

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median: how noisy this measurement was."""
        return (self.high - self.low) / self.median if self.median > 0 else 0.0


def measure(fn: Callable[[], object], sync: Callable[[], None] = lambda: None, *,
            repeats: int = 7, min_repeat_time: float = 0.02, warmup: int = 2) -> Timing:
    """Time ``fn``: ``warmup`` untimed calls, then ``repeats`` repeats of as many calls
    as make one repeat last at least ``min_repeat_time`` seconds. ``sync`` waits for
    queued device work and is called before each clock read."""
    for _ in range(warmup):
        fn()
    sync()
    calls = 1
    while True:  # calibrate: double the inner loop until one repeat is long enough
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        dt = time.perf_counter() - t0
        if dt >= min_repeat_time or calls >= 1 << 20:
            break
        calls *= 2
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        per_call.append((time.perf_counter() - t0) / calls)
    return Timing(statistics.median(per_call), min(per_call), max(per_call), calls)
