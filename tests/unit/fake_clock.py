"""One fake clock for the unit tests: time moves only when the code under test sleeps.

``clock()`` is a monotonic clock in seconds, ``clock.ns()`` the same in nanoseconds (for
code that takes ``time.perf_counter_ns``), ``clock.sleep(s)`` advances it. ``min_step``
keeps a polling loop that sleeps 0 s from spinning forever.
"""

from __future__ import annotations


class FakeClock:
    def __init__(self, start: float = 1000.0, *, min_step: float = 0.0) -> None:
        self.now = start
        self.min_step = min_step

    def __call__(self) -> float:
        return self.now

    def ns(self) -> int:
        return round(self.now * 1e9)

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, self.min_step)
