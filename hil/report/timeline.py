"""The run's timeline: what ran on each hub when, and what each test spent waiting on.

Written as the run goes (``hil_pytest.timeline`` appends one JSON line per finished step
and per test phase to reports/run/<run-id>/timeline.jsonl); read here, by the Allure
per-hub page and by ``bench/critical_path.py``. Pure functions over those lines: no
pytest, no devices.

Line types:

- ``{"type": "step", "device", "kind", "title", "start", "end", "depth", "failed",
  "nodeid", "when", "worker", "lane"}``: one ``hil.steps`` step. ``depth`` 0 is a step
  not inside another step of the same thread; ``lane`` is "test" for the thread running
  the test and the job's name for a hub's background job (hil.overlap), whose time is
  not the test's own.
- ``{"type": "test", "device", "nodeid", "when", "start", "end", "outcome", "worker"}``:
  one pytest phase (setup, call, teardown) of a test.
- ``{"type": "session", "worker", "process_started", "session_started"}``: when a pytest
  process started (from /proc when available) and when its session started.

Times are epoch seconds of the harness host (one clock for every process of a run).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

TIMELINE_JSONL = "timeline.jsonl"

KINDS: dict[str, str] = {
    "lease": "waiting for the hub's lease (another holder)",
    "ready": "health check, readiness of declared services, recovery",
    "deploy": "uploading and deploying the candidate, waiting for its terminal status",
    "settle": "watching components stay RUNNING (stability windows)",
    "restore": "putting the hub's previous component set back",
    "sampling": "latency and model sampling windows (kept quiet)",
    "console": "serial console: prompts, logins, login's fail delay",
    "power": "PDU switching and waiting for the hub to boot",
    "scan": "network scanners (nmap, sslyze, ssh-audit, SSH offers and logins)",
    "ssh": "commands and transfers over SSH",
    "mqtt": "MQTT connections and round trips",
    "other": "any other step",
}
"""What a step waits on; the order is the legend's."""

_TITLE_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rx), kind) for rx, kind in (
        (r"^lease ", "lease"),
        (r"^(fence|check fence)$", "deploy"),
        (r"^hub \S+: power cycle", "power"),
        (r"^hub \S+: ", "ready"),
        (r"^health check", "ready"),
        (r"^deploy ", "deploy"),
        (r"^greengrass: wait for", "settle"),
        (r"^(watch|settle) ", "settle"),
        (r"restore|teardown on acquire", "restore"),
        (r"^measure |^replay ", "sampling"),
        (r"^console", "console"),
        (r"^power ", "power"),
        (r"^(nmap|python TCP connect scan|sslyze|ssh-audit|ssh auth methods|ssh passwords)", "scan"),
        (r"^(ssh|sftp|greengrass)", "ssh"),
        (r"(?i)^mqtt", "mqtt"),
    ))
"""A step without an explicit kind is judged by its title: the first pattern that matches."""


def kind_of(title: str, explicit: str | None = None) -> str:
    """The step's kind: the one it names, else the first title pattern that matches, else other."""
    if explicit in KINDS:
        return explicit
    for rx, kind in _TITLE_KINDS:
        if rx.search(title):
            return kind
    return "other"


# -- reading -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """One step or test phase on the timeline."""

    type: str
    device: str | None
    title: str
    start: float
    end: float
    kind: str = "other"
    depth: int = 0
    nodeid: str | None = None
    when: str | None = None
    lane: str = "test"
    failed: bool = False
    outcome: str | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; a line cut short by a killed process is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def _span(doc: dict[str, Any]) -> Span | None:
    try:
        start, end = float(doc["start"]), float(doc["end"])
    except (KeyError, TypeError, ValueError):
        return None
    kind = str(doc.get("kind") or "other")
    return Span(type=str(doc.get("type")), device=doc.get("device"),
                title=str(doc.get("title") or doc.get("nodeid") or ""), start=start, end=end,
                kind=kind if kind in KINDS else "other", depth=int(doc.get("depth") or 0),
                nodeid=doc.get("nodeid"), when=doc.get("when"), lane=str(doc.get("lane") or "test"),
                failed=bool(doc.get("failed")), outcome=doc.get("outcome"))


@dataclass
class TestSpan:
    """A test on one hub: its phases and what its own steps waited on, by kind."""

    nodeid: str
    device: str
    start: float
    end: float
    outcome: str = "passed"
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds per pytest phase (setup, call, teardown)."""
    waits: dict[str, float] = field(default_factory=dict)
    """Seconds per kind of the test's outermost steps (its own lane only)."""

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def unaccounted(self) -> float:
        """Time in the test's phases outside any step: test code, fixtures, pytest itself."""
        return max(0.0, self.duration - sum(self.waits.values()))


@dataclass
class HubTimeline:
    device: str
    tests: list[TestSpan]
    background: list[Span]
    """Steps of the hub's background jobs (overlapped with its tests)."""

    @property
    def start(self) -> float:
        return min([t.start for t in self.tests] + [s.start for s in self.background])

    @property
    def end(self) -> float:
        return max([t.end for t in self.tests] + [s.end for s in self.background])

    @property
    def span(self) -> float:
        return self.end - self.start

    @property
    def busy(self) -> float:
        """Seconds in tests (phases); the rest of the span is the harness between tests."""
        return sum(t.duration for t in self.tests)

    def waits(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for t in self.tests:
            for k, v in t.waits.items():
                out[k] += v
        return dict(out)

    def background_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for s in self.background:
            if s.depth == 0:
                out[s.kind] += s.duration
        return dict(out)


@dataclass
class RunTimeline:
    hubs: dict[str, HubTimeline]
    process_started: float | None
    session_started: float | None
    workers_started: dict[str, float]

    @property
    def origin(self) -> float:
        """The earliest known start: the controller process, else the first span."""
        if self.process_started is not None:
            return self.process_started
        if self.session_started is not None:
            return self.session_started
        return min((h.start for h in self.hubs.values()), default=0.0)

    @property
    def end(self) -> float:
        return max((h.end for h in self.hubs.values()), default=self.origin)

    def critical_hub(self) -> HubTimeline | None:
        """The hub whose last activity ends last: it decides the run's time to verdict."""
        return max(self.hubs.values(), key=lambda h: h.end, default=None)

    def first_test_after_start(self) -> dict[str, float]:
        """Seconds from the controller's process start to each hub's first test (its setup)."""
        return {name: h.tests[0].start - self.origin for name, h in sorted(self.hubs.items()) if h.tests}


def build(lines: Iterable[dict[str, Any]]) -> RunTimeline:
    """Per-hub timelines from timeline.jsonl lines (any order, any number of processes)."""
    phases: dict[tuple[str, str], list[Span]] = defaultdict(list)
    steps: list[Span] = []
    process_started: float | None = None
    session_started: float | None = None
    workers: dict[str, float] = {}
    for doc in lines:
        kind = doc.get("type")
        if kind == "session":
            worker = str(doc.get("worker") or "main")
            started = doc.get("process_started") or doc.get("session_started")
            if worker in ("main", "controller"):
                process_started = _float(doc.get("process_started"))
                session_started = _float(doc.get("session_started"))
            elif started is not None:
                workers[worker] = float(started)
            continue
        span = _span(doc)
        if span is None:
            continue
        if kind == "test" and span.device and span.nodeid:
            phases[(span.device, span.nodeid)].append(span)
        elif kind == "step":
            steps.append(span)
    tests: dict[str, list[TestSpan]] = defaultdict(list)
    index: dict[tuple[str, str], TestSpan] = {}
    for (device, nodeid), spans in phases.items():
        ts = TestSpan(nodeid=nodeid, device=device, start=min(s.start for s in spans),
                      end=max(s.end for s in spans))
        for s in spans:
            ts.phases[s.when or "?"] = ts.phases.get(s.when or "?", 0.0) + s.duration
            if s.outcome and s.outcome != "passed":
                ts.outcome = s.outcome
        tests[device].append(ts)
        index[(device, nodeid)] = ts
    background: dict[str, list[Span]] = defaultdict(list)
    for s in steps:
        if s.lane != "test":
            if s.device:
                background[s.device].append(s)
            continue
        owner = index.get((s.device or "", s.nodeid or "")) if s.nodeid else None
        if owner is None and s.nodeid:
            # a step without a device (a scanner) belongs to its test's hub
            owner = next((t for (_d, n), t in index.items() if n == s.nodeid), None)
        if owner is not None and s.depth == 0:
            owner.waits[s.kind] = owner.waits.get(s.kind, 0.0) + s.duration
    hubs = {}
    for device in sorted(set(tests) | set(background)):
        hubs[device] = HubTimeline(device, sorted(tests.get(device, []), key=lambda t: t.start),
                                   sorted(background.get(device, []), key=lambda s: s.start))
    return RunTimeline(hubs, process_started, session_started, workers)


def _float(value: object) -> float | None:
    try:
        return float(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def load(run_folder: Path) -> RunTimeline:
    return build(read_lines(run_folder / TIMELINE_JSONL))


# -- text ------------------------------------------------------------------------------------------

def _short(nodeid: str) -> str:
    path, _, name = nodeid.rpartition("::")
    return f"{Path(path).stem}::{name}" if path else nodeid


def _kinds(waits: dict[str, float], *, floor: float = 0.05) -> str:
    parts = [f"{k} {v:.1f}" for k, v in sorted(waits.items(), key=lambda kv: -kv[1]) if v >= floor]
    return ", ".join(parts) or "-"


def hub_table(hub: HubTimeline, origin: float) -> list[str]:
    """One line per test, in the order they ran: offset, duration, outcome, waits by kind."""
    lines = [f"{'at s':>7} {'took s':>7}  {'outcome':8} test  [waits by kind, s; 'code' = outside steps]"]
    for t in hub.tests:
        waits = dict(t.waits)
        if t.unaccounted >= 0.05:
            waits["code"] = t.unaccounted
        lines.append(f"{t.start - origin:7.2f} {t.duration:7.2f}  {t.outcome:8} {_short(t.nodeid)}  "
                     f"[{_kinds(waits)}]")
    for s in hub.background:
        if s.depth == 0:
            lines.append(f"{s.start - origin:7.2f} {s.duration:7.2f}  {'bg':8} {s.lane}: {s.title[:90]}  "
                         f"[{s.kind}]")
    return lines


def summary(run: RunTimeline) -> list[str]:
    """The critical path of a run, for people (bench/critical_path.py prints it)."""
    origin = run.origin
    out = [f"run: {run.end - origin:.1f} s from the controller's start to the last hub's end"]
    for name, at in run.first_test_after_start().items():
        out.append(f"  first test on {name}: {at:.2f} s after start")
    for name, h in sorted(run.hubs.items()):
        gaps = h.span - h.busy
        out.append(f"  {name}: {h.start - origin:6.1f} -> {h.end - origin:6.1f} s ({h.span:.1f} s; tests "
                   f"{h.busy:.1f} s, between tests {max(0.0, gaps):.1f} s); waits: {_kinds(h.waits())}"
                   + (f"; background: {_kinds(h.background_by_kind())}" if h.background else ""))
    crit = run.critical_hub()
    if crit is not None:
        out.append(f"critical path: {crit.device} (ends last)")
        ranked = sorted(crit.tests, key=lambda t: -t.duration)
        for t in ranked[:15]:
            waits = dict(t.waits)
            if t.unaccounted >= 0.05:
                waits["code"] = t.unaccounted
            out.append(f"  {t.duration:6.2f} s  {_short(t.nodeid)}  [{_kinds(waits)}]")
        if len(ranked) > 15:
            rest = sum(t.duration for t in ranked[15:])
            out.append(f"  {rest:6.2f} s  {len(ranked) - 15} further tests")
    return out


# -- picture ----------------------------------------------------------------------------------------

COLOURS: dict[str, str] = {
    "lease": "#9e9e9e", "ready": "#8d6e63", "deploy": "#1e88e5", "settle": "#43a047",
    "restore": "#5e35b1", "sampling": "#fb8c00", "console": "#e53935", "power": "#212121",
    "scan": "#00897b", "ssh": "#90caf9", "mqtt": "#f06292", "other": "#cfd8dc",
}


def svg(hub: HubTimeline, origin: float, *, width: int = 1100) -> str:
    """A Gantt picture of one hub: its tests in a row, what they waited on below, background jobs."""
    end = max(hub.end, origin + 1.0)
    scale = (width - 180) / (end - origin)
    lanes = ["tests", "waits", *dict.fromkeys(s.lane for s in hub.background)]
    row = 26
    height = 40 + row * len(lanes) + 30 + 18 * ((len(KINDS) + 5) // 6)

    def x(t: float) -> float:
        return 170 + (t - origin) * scale

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="10" y="16" font-size="13">{escape(hub.device)}: {hub.span:.1f} s '
             f'({hub.start - origin:.1f} to {hub.end - origin:.1f} s after start)</text>']
    for i, lane in enumerate(lanes):
        y = 30 + i * row
        parts.append(f'<text x="10" y="{y + 15}">{escape(lane[:24])}</text>')
        parts.append(f'<line x1="170" y1="{y + row - 2}" x2="{width - 10}" y2="{y + row - 2}" '
                     'stroke="#eee"/>')
    for t in hub.tests:
        colour = {"passed": "#c8e6c9", "failed": "#ffcdd2"}.get(t.outcome, "#fff9c4")
        parts.append(f'<rect x="{x(t.start):.1f}" y="32" width="{max(0.5, t.duration * scale):.1f}" '
                     f'height="20" fill="{colour}" stroke="#555" stroke-width="0.3">'
                     f'<title>{escape(_short(t.nodeid))}: {t.duration:.2f} s ({escape(t.outcome)})'
                     f'</title></rect>')
    for t in hub.tests:
        cursor = t.start
        for kind, seconds in sorted(t.waits.items(), key=lambda kv: -kv[1]):
            parts.append(_bar(x(cursor), 30 + row + 2, seconds * scale, kind,
                              f"{_short(t.nodeid)}: {kind} {seconds:.2f} s"))
            cursor += seconds
    for s in hub.background:
        if s.depth:
            continue
        y = 30 + (lanes.index(s.lane)) * row + 2
        parts.append(_bar(x(s.start), y, s.duration * scale, s.kind,
                          f"{s.lane}: {s.title}: {s.duration:.2f} s"))
    ticks = max(1, int((end - origin) // 10))
    base = 30 + row * len(lanes)
    for i in range(0, ticks + 1):
        tx = x(origin + i * 10)
        parts.append(f'<line x1="{tx:.1f}" y1="28" x2="{tx:.1f}" y2="{base}" stroke="#ddd"/>'
                     f'<text x="{tx:.1f}" y="{base + 12}" text-anchor="middle">{i * 10} s</text>')
    for i, (kind, text) in enumerate(KINDS.items()):
        lx, ly = 10 + (i % 6) * 180, base + 30 + (i // 6) * 18
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{COLOURS[kind]}">'
                     f'<title>{escape(text)}</title></rect><text x="{lx + 14}" y="{ly}">{kind}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _bar(x: float, y: float, w: float, kind: str, tip: str) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(0.5, w):.1f}" height="20" '
            f'fill="{COLOURS.get(kind, COLOURS["other"])}"><title>{escape(tip)}</title></rect>')

