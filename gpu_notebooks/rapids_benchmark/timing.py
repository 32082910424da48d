"""Honest timing: warm-up, repeats, median and spread, the GPU synchronized before the clock stops."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# pandas has no JIT and no device pool: its warm-up runs on a slice of this many rows.
CPU_WARMUP_ROWS = 1_000_000
# GPU warm-up lasts at least this long, so the clocks have left idle before the first timed call.
GPU_MIN_WARMUP_S = 0.25


@dataclass
class Timing:
    """Timed repeats of one operation (seconds), the warm-up time, and the last result."""

    times: list[float]
    warmup_s: float | None
    result: Any = field(default=None, repr=False)
    starts: list[float] = field(default_factory=list)  # perf_counter at each timed repeat's start
    counter: tuple = (None, None)  # read_counter() just before the first timed repeat and after the last

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


def time_operation(
    run: Callable[[], Any],
    repeats: int,
    sync: Callable[[], None] = lambda: None,
    warmup: Callable[[], Any] | None = None,
    on_repeat: Callable[[int], None] | None = None,
    min_warmup_s: float = 0.0,
    read_counter: Callable[[], Any] | None = None,
) -> Timing:
    """One uncounted warm-up, then `repeats` timed calls; the device is synchronized before each clock stops.

    With `min_warmup_s` the warm-up call repeats until that much time has passed: a GPU that sat idle
    while pandas ran has dropped to idle clocks, and a 2 ms kernel timed before it boosts runs slow.
    `read_counter` (NVML's energy counter) is read right before the first timed call and after the last.
    """
    t0 = time.perf_counter()
    warm = (warmup or run)()
    sync()
    warmup_s = time.perf_counter() - t0
    del warm
    while time.perf_counter() - t0 < min_warmup_s:
        extra = (warmup or run)()
        sync()
        del extra
    times, starts, result, after = [], [], None, None
    before = read_counter() if read_counter else None
    for i in range(repeats):
        result = None  # free the previous repeat's result before the next one allocates its own
        t0 = time.perf_counter()
        result = run()
        sync()
        times.append(time.perf_counter() - t0)
        starts.append(t0)
        if read_counter and i == repeats - 1:  # before the last progress tick
            after = read_counter()
        if on_repeat:
            on_repeat(i)
    return Timing(times=times, warmup_s=warmup_s, result=result, starts=starts, counter=(before, after))


def cuda_synchronize() -> None:
    """Wait until every queued GPU kernel has finished."""
    import cupy

    cupy.cuda.runtime.deviceSynchronize()
