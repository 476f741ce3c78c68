"""A container's footprint while it works: peak resident memory and CPU, from the engine's stats.

Sampled on a thread every ``period`` s with one-shot stats (``docker stats --no-stream``
semantics, one reading per call); CPU is the share of one core between two readings. The
stats come from the hub's engine: untrusted, so missing or odd fields count as no reading.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Reader = Callable[[], dict[str, Any]]


@dataclass
class Footprint:
    samples: int = 0
    peak_rss_bytes: int = 0
    peak_cpu_percent: float = 0.0
    cpu_percents: list[float] = field(default_factory=list)

    @property
    def mean_cpu_percent(self) -> float:
        return sum(self.cpu_percents) / len(self.cpu_percents) if self.cpu_percents else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "peak_rss_mib": round(self.peak_rss_bytes / 2**20, 1),
                "peak_cpu_percent": round(self.peak_cpu_percent, 1),
                "mean_cpu_percent": round(self.mean_cpu_percent, 1)}


def rss_bytes(stats: dict[str, Any]) -> int | None:
    """Anonymous (resident, non-cache) memory: cgroup v1 ``rss``, v2 ``anon``."""
    mem = stats.get("memory_stats")
    inner = mem.get("stats") if isinstance(mem, dict) else None
    if not isinstance(inner, dict):
        return None
    for key in ("rss", "anon"):
        value = inner.get(key)
        if isinstance(value, int) and value >= 0:
            return value
    return None


def cpu_ns(stats: dict[str, Any]) -> int | None:
    cpu = stats.get("cpu_stats")
    usage = cpu.get("cpu_usage") if isinstance(cpu, dict) else None
    total = usage.get("total_usage") if isinstance(usage, dict) else None
    return total if isinstance(total, int) and total >= 0 else None


class FootprintSampler:
    """``with FootprintSampler(read) as fp: ...``: samples until the block ends."""

    def __init__(self, read: Reader, *, period: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.read, self.period, self.clock = read, period, clock
        self.footprint = Footprint()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="footprint", daemon=True)
        self._last: tuple[float, int] | None = None

    def sample(self) -> None:
        try:
            stats = self.read()
        except Exception as exc:  # the engine may hiccup: a missing reading is not a figure
            self.errors.append(str(exc)[:200])
            return
        now = self.clock()
        fp = self.footprint
        rss = rss_bytes(stats)
        if rss is not None:
            fp.samples += 1
            fp.peak_rss_bytes = max(fp.peak_rss_bytes, rss)
        used = cpu_ns(stats)
        if used is not None:
            if self._last is not None and now > self._last[0] and used >= self._last[1]:
                pct = (used - self._last[1]) / ((now - self._last[0]) * 1e9) * 100
                fp.cpu_percents.append(pct)
                fp.peak_cpu_percent = max(fp.peak_cpu_percent, pct)
            self._last = (now, used)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self.clock()
            self.sample()
            self._stop.wait(max(0.0, self.period - (self.clock() - started)))

    def __enter__(self) -> Footprint:
        self._thread.start()
        return self.footprint

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.sample()  # one reading after the work, so a short block still has two
