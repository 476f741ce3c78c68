"""Latency measurement: fixed-rate schedule, HdrHistogram, percentiles, budgets, plots.

Each operation is timed from its *intended* send time on a fixed schedule, not from
when it actually started: when the target stalls, the queued-up requests carry the
stall in their latency (no coordinated omission). Warm-up samples are discarded.
Values are recorded in microseconds; percentiles are reported in milliseconds with n.
Encoded histograms are a few dozen bytes, so xdist workers can ship them to the
controller, which merges them for a rack-wide figure.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hdrh.histogram import HdrHistogram

from hil.drivers.base import Shell
from hil.errors import CommandTimeout

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
"""One hour: deployment and boot times fit in the same histogram type."""
SIGNIFICANT_FIGURES = 3

Sampler = Callable[[], object]
"""One synchronous round trip; raising counts as an error sample."""


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


@dataclass(frozen=True)
class LatencyEvidence:
    metric: str
    n: int
    p50: float
    p95: float
    p99: float
    max: float
    unit: str
    histogram: str
    """Base64 HdrHistogram (microseconds), mergeable with ``merge_histograms``."""
    errors: int = 0
    rate_hz: float | None = None
    warmup: int = 0
    device: str | None = None


def _ms(us: int) -> float:
    return round(us / 1000.0, 3)


def evidence_from_histogram(metric: str, hist: HdrHistogram, *, errors: int = 0,
                            rate_hz: float | None = None, warmup: int = 0,
                            device: str | None = None) -> LatencyEvidence:
    n = int(hist.get_total_count())
    return LatencyEvidence(
        metric=metric, n=n,
        p50=_ms(hist.get_value_at_percentile(50)) if n else 0.0,
        p95=_ms(hist.get_value_at_percentile(95)) if n else 0.0,
        p99=_ms(hist.get_value_at_percentile(99)) if n else 0.0,
        max=_ms(hist.get_max_value()) if n else 0.0,
        unit="ms", histogram=hist.encode().decode("ascii"),
        errors=errors, rate_hz=rate_hz, warmup=warmup, device=device)


def histogram_of(evidence: LatencyEvidence) -> HdrHistogram:
    return HdrHistogram.decode(evidence.histogram.encode("ascii"))


def merge_histograms(encoded: Iterable[str | bytes]) -> HdrHistogram:
    """Add up encoded histograms (e.g. one per xdist worker) into one."""
    total = new_histogram()
    for enc in encoded:
        total.add(HdrHistogram.decode(enc.encode("ascii") if isinstance(enc, str) else enc))
    return total


def merge_evidence(metric: str, parts: Sequence[LatencyEvidence]) -> LatencyEvidence:
    """The rack-wide figure for ``metric`` from per-hub/per-worker evidence."""
    hist = merge_histograms(p.histogram for p in parts)
    return evidence_from_histogram(metric, hist, errors=sum(p.errors for p in parts),
                                   warmup=sum(p.warmup for p in parts))


def evidence_from_samples(metric: str, seconds: Iterable[float], *, device: str | None = None
                          ) -> LatencyEvidence:
    """For one-off durations (deployment, boot) measured elsewhere, in seconds."""
    hist = new_histogram()
    for s in seconds:
        hist.record_value(max(LOWEST_US, round(s * 1e6)))
    return evidence_from_histogram(metric, hist, device=device)


# -- fixed-rate schedule --------------------------------------------------------------------

def measure(sampler: Sampler, *, metric: str, rate_hz: float, count: int, warmup: int = 10,
            deadline: float | None = None, device: str | None = None,
            clock: Callable[[], int] = time.perf_counter_ns,
            sleep: Callable[[float], None] = time.sleep) -> LatencyEvidence:
    """Run ``sampler`` ``warmup + count`` times on a fixed schedule and record latencies.

    Latency = completion - intended start. ``deadline`` (seconds) bounds the whole run:
    when it passes, ``CommandTimeout`` names the metric and how far it got.
    """
    if rate_hz <= 0 or count <= 0:
        raise ValueError("rate_hz and count must be positive")
    interval_ns = int(1e9 / rate_hz)
    total = warmup + count
    budget = deadline if deadline is not None else 3 * total / rate_hz + 60.0
    hist = new_histogram()
    errors = 0
    start = clock()
    end_ns = start + int(budget * 1e9)  # the deadline covers warm-up too
    for i in range(total):
        if i == warmup:
            # the schedule restarts after warm-up: a slow first connection must not
            # leave the measured samples "late" from the start
            start = clock()
        intended = start + (i - warmup if i >= warmup else i) * interval_ns
        now = clock()
        if now > end_ns:
            raise CommandTimeout(f"latency {metric}: {i}/{total} samples after {budget:.0f} s deadline")
        if intended > now:
            sleep((intended - now) / 1e9)
        try:
            sampler()
        except Exception:  # a failed round trip is an error sample, reported in the evidence
            if i >= warmup:
                errors += 1
            continue
        if i >= warmup:
            hist.record_value(max(LOWEST_US, (clock() - intended) // 1000))
    return evidence_from_histogram(metric, hist, errors=errors, rate_hz=rate_hz, warmup=warmup,
                                   device=device)


# -- budgets ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    metric: str
    p95_ms: float
    p99_ms: float
    min_samples: int = 1
    max_error_ratio: float = 0.0


@dataclass(frozen=True)
class BudgetVerdict:
    metric: str
    passed: bool
    reasons: tuple[str, ...]
    evidence: LatencyEvidence
    budget: Budget

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("summary",)

    @property
    def summary(self) -> str:
        e = self.evidence
        head = (f"{e.metric}: n={e.n} p50={e.p50} p95={e.p95} p99={e.p99} max={e.max} {e.unit} "
                f"(budget p95<={self.budget.p95_ms} p99<={self.budget.p99_ms})")
        return head if self.passed else head + ": " + "; ".join(self.reasons)


def judge(evidence: LatencyEvidence, budget: Budget) -> BudgetVerdict:
    reasons: list[str] = []
    if evidence.n < budget.min_samples:
        reasons.append(f"only {evidence.n} samples, need {budget.min_samples}")
    if evidence.p95 > budget.p95_ms:
        reasons.append(f"p95 {evidence.p95} ms > {budget.p95_ms} ms")
    if evidence.p99 > budget.p99_ms:
        reasons.append(f"p99 {evidence.p99} ms > {budget.p99_ms} ms")
    attempts = evidence.n + evidence.errors
    if attempts and evidence.errors / attempts > budget.max_error_ratio:
        reasons.append(f"{evidence.errors}/{attempts} round trips failed")
    return BudgetVerdict(metric=evidence.metric, passed=not reasons, reasons=tuple(reasons),
                         evidence=evidence, budget=budget)


# -- plot -------------------------------------------------------------------------------------

def plot_latency(evidence: Sequence[LatencyEvidence], path: Path, *, title: str | None = None,
                 budget: Budget | None = None) -> Path:
    """A percentile-distribution plot (PNG) of one or more latency records."""
    from hil.extras import needs_extra

    with needs_extra("plots"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

    # Figure + Agg canvas directly: no pyplot global state, safe in xdist workers and threads
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for ev in evidence:
        hist = histogram_of(ev)
        xs: list[float] = []
        ys: list[float] = []
        for item in hist.get_percentile_iterator(5):
            pct = float(item.percentile_level_iterated_to)
            if pct >= 100.0:
                break
            xs.append(1.0 / (1.0 - pct / 100.0))
            ys.append(item.value_iterated_to / 1000.0)
        label = f"{ev.device + ' ' if ev.device else ''}{ev.metric} (n={ev.n}, p99={ev.p99} ms)"
        ax.plot(xs, ys, label=label)
    if budget:
        ax.axhline(budget.p95_ms, linestyle="--", color="tab:orange", label=f"p95 budget {budget.p95_ms} ms")
        ax.axhline(budget.p99_ms, linestyle=":", color="tab:red", label=f"p99 budget {budget.p99_ms} ms")
    ax.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title or ", ".join(sorted({e.metric for e in evidence})))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# -- samplers -----------------------------------------------------------------------------------

def ssh_command_sampler(shell: Shell, argv: Sequence[str] = ("true",), *,
                        timeout: float = 10.0) -> Sampler:
    """One command round trip over an already-open Shell (a failed exit counts as an error)."""
    args = list(argv)

    def sample() -> None:
        shell.run(args, timeout=timeout).check()

    return sample


class HttpRoundTrip:
    """GET on one keep-alive connection (http.client sets TCP_NODELAY); reconnects on failure."""

    def __init__(self, host: str, port: int = 80, path: str = "/", *, timeout: float = 5.0,
                 expect_status: int = 200) -> None:
        self.host, self.port, self.path = host, port, path
        self.timeout, self.expect_status = timeout, expect_status
        self._conn: http.client.HTTPConnection | None = None

    def __call__(self) -> None:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._conn.request("GET", self.path)
            resp = self._conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.status != self.expect_status:
            raise http.client.HTTPException(
                f"GET {self.path} -> {resp.status}, expected {self.expect_status}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
