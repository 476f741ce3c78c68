"""Latency maths: fixed-rate schedule from intended time, warm-up, HdrHistogram merge, budgets, plot."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_clock import FakeClock

from hil.errors import CommandTimeout
from hil.probes import latency
from hil.probes.evidence import to_json


def test_percentiles_and_n() -> None:
    ev = latency.evidence_from_samples("x", [i / 1000 for i in range(1, 1001)])  # 1..1000 ms
    assert ev.n == 1000 and ev.unit == "ms"
    assert ev.p50 == pytest.approx(500, rel=0.01)
    assert ev.p95 == pytest.approx(950, rel=0.01)
    assert ev.p99 == pytest.approx(990, rel=0.01)
    assert ev.max == pytest.approx(1000, rel=0.01)


def test_merge_of_encoded_histograms_equals_one_histogram() -> None:
    a = latency.evidence_from_samples("m", [0.001] * 900)
    b = latency.evidence_from_samples("m", [0.100] * 100)
    assert len(a.histogram) < 200  # small enough to ship from an xdist worker
    merged = latency.merge_evidence("m", [a, b])
    assert merged.n == 1000
    assert merged.p50 == pytest.approx(1.0, rel=0.01)
    assert merged.p95 == pytest.approx(100.0, rel=0.01)
    direct = latency.evidence_from_samples("m", [0.001] * 900 + [0.100] * 100)
    assert (merged.p50, merged.p95, merged.p99, merged.max) == (direct.p50, direct.p95, direct.p99,
                                                                direct.max)


def test_fixed_rate_measures_from_intended_time_and_drops_warmup() -> None:
    clock = FakeClock()
    durations = iter([0.5] * 5 + [0.002] * 5 + [0.300] + [0.002] * 9)  # 5 warm-up, then one stall

    def sampler() -> None:
        clock.sleep(next(durations))

    ev = latency.measure(sampler, metric="rt", rate_hz=100, count=15, warmup=5, clock=clock.ns,
                         sleep=clock.sleep)
    assert ev.n == 15 and ev.warmup == 5
    # the 300 ms stall delays the next 9 requests scheduled every 10 ms: coordinated omission
    # would record them as 2 ms; measured from their intended time they carry the stall
    assert ev.max == pytest.approx(300, rel=0.01)
    assert ev.p50 > 100
    # the slow warm-up (500 ms each) is discarded and does not make later samples late
    clock2 = FakeClock()

    def steady() -> None:
        clock2.sleep(0.002)

    ev2 = latency.measure(steady, metric="rt", rate_hz=100, count=50, warmup=5, clock=clock2.ns,
                          sleep=clock2.sleep)
    assert ev2.p99 == pytest.approx(2.0, rel=0.01)


def test_errors_are_counted_not_recorded() -> None:
    clock = FakeClock()
    calls = iter(range(100))

    def sampler() -> None:
        clock.sleep(0.001)
        if next(calls) % 4 == 0:
            raise OSError("reset")

    ev = latency.measure(sampler, metric="rt", rate_hz=50, count=20, warmup=0, clock=clock.ns,
                         sleep=clock.sleep)
    assert ev.errors == 5 and ev.n == 15
    verdict = latency.judge(ev, latency.Budget("rt", p95_ms=10, p99_ms=20))
    assert not verdict.passed and "5/20 round trips failed" in verdict.summary


def test_deadline() -> None:
    clock = FakeClock()
    with pytest.raises(CommandTimeout, match=r"rt: .* deadline"):
        latency.measure(lambda: clock.sleep(1.0), metric="rt", rate_hz=10, count=10, warmup=0,
                        deadline=2.5, clock=clock.ns, sleep=clock.sleep)


def test_budget_verdicts() -> None:
    ev = latency.evidence_from_samples("ssh", [0.002] * 98 + [0.050] * 2)
    assert latency.judge(ev, latency.Budget("ssh", p95_ms=5, p99_ms=100)).passed
    v = latency.judge(ev, latency.Budget("ssh", p95_ms=5, p99_ms=20))
    assert not v.passed and v.reasons == ("p99 50.015 ms > 20 ms",)
    assert not latency.judge(ev, latency.Budget("ssh", 5, 100, min_samples=1000)).passed
    assert '"summary"' in to_json(v)


def test_plot_is_a_png(tmp_path: Path) -> None:
    a = latency.evidence_from_samples("mqtt", [0.001 * (1 + i % 10) for i in range(500)], device="hub-01")
    b = latency.evidence_from_samples("mqtt", [0.002 * (1 + i % 10) for i in range(500)], device="hub-02")
    out = latency.plot_latency([a, b], tmp_path / "plots" / "mqtt.png",
                               budget=latency.Budget("mqtt", 15, 25))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
