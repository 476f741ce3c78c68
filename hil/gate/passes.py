"""The gate's passes: each judges one aspect of a run and returns its findings.

``decide()`` runs them in order over one shared ``GateContext``; a later pass may read
what an earlier one recorded there (the device-health pass reads the devices the
failures pass found unhealthy; the suites pass counts only healthy devices). To judge
something new (e.g. model metrics), write a function ``(GateContext) -> list[Finding]``
and add it to ``DEFAULT_PASSES`` (or pass your own sequence to ``decide``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hil.errors import FailureClass
from hil.gate.findings import (
    CheckGap,
    DeviceChecks,
    DeviceOutcome,
    Effect,
    Finding,
    GateFailure,
    SuiteOutcome,
)
from hil.gate.links import AllureLinks
from hil.gate.policy import GatePolicy, OnFailure
from hil.gate.results import Disposition, LatencyFigure, RunResults, TestRecord
from hil.ml.judge import judge as judge_ml

GAPS_NAMED_PER_DEVICE = 5
"""A coverage reason names this many unrun checks of a device, then counts the rest."""


@dataclass
class GateContext:
    """The run, the policy, and what the passes have found so far."""

    results: RunResults
    policy: GatePolicy
    today: dt.date
    selected: dict[str, str | None]
    """Devices the run was meant to cover -> model."""
    links: AllureLinks
    finished: bool | None
    required: list[str] = field(init=False)
    models: dict[str, str] = field(init=False)
    unhealthy: dict[str, str] = field(default_factory=dict)
    """device -> why it is not counted as healthy."""
    failing: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """suite -> devices with a blocking failure in it."""
    blocking: list[GateFailure] = field(default_factory=list)
    quarantined: list[GateFailure] = field(default_factory=list)
    other: list[GateFailure] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)
    ml: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, DeviceChecks] = field(default_factory=lambda: defaultdict(DeviceChecks))
    unassigned: DeviceChecks = field(default_factory=DeviceChecks)
    """Checks whose records name no device."""
    devices: dict[str, DeviceOutcome] = field(default_factory=dict)
    suites: dict[str, SuiteOutcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.required = list(dict.fromkeys(self.policy.required_for(self.results.metadata.candidate)))
        self.models = {d: (m or "unknown") for d, m in self.selected.items()}
        for r in self.results.records:
            if r.device:
                if r.model and self.models.get(r.device, "unknown") == "unknown":
                    self.models[r.device] = r.model
                self.models.setdefault(r.device, r.model or "unknown")
        broken = self.results.metadata.broken_devices
        self.unhealthy.update(dict.fromkeys(broken, "marked broken by the harness"))

    @property
    def records(self) -> list[TestRecord]:
        return self.results.records

    def is_required(self, rec: TestRecord) -> bool:
        return bool(rec.suites.intersection(self.required))

    def model_of(self, device: str | None) -> str | None:
        return self.models.get(device) if device else None


Pass = Callable[[GateContext], list[Finding]]


# -- failures --------------------------------------------------------------------------------------

def failures(ctx: GateContext) -> list[Finding]:
    """Every failure (and lab/harness skip), judged by its class, the quarantine and the policy."""
    out: list[Finding] = []
    for rec in ctx.records:
        if not rec.is_problem:
            continue
        cls = rec.failure_class or FailureClass.HARNESS
        if cls is FailureClass.INFRASTRUCTURE and rec.device:
            ctx.unhealthy.setdefault(rec.device, f"infrastructure: {first_line(rec.message)}")
        effect, why = _judge_failure(rec, cls, ctx)
        gf = GateFailure(test=rec.nodeid, device=rec.device, model=rec.model, failure_class=str(cls),
                         message=rec.message[:2000], suites=sorted(rec.suites), effect=effect, why=why,
                         allure_uuid=rec.allure_uuid, allure_link=ctx.links.link(rec))
        if effect is Effect.NONE:
            (ctx.quarantined if why.startswith("quarantined") else ctx.other).append(gf)
            continue
        ctx.blocking.append(gf)
        for s in rec.suites:
            ctx.failing[s].add(rec.device or "")
        out.append(Finding(effect, f"{cls} failure in {rec.nodeid}"
                                   + (f" on {rec.device}" if rec.device else "")
                                   + (f": {first_line(rec.message)}" if rec.message else "")))
    if ctx.quarantined:
        out.append(Finding(Effect.NONE,
                           f"{len(ctx.quarantined)} quarantined failure(s) reported, not blocking"))
    return out


def _judge_failure(rec: TestRecord, cls: FailureClass, ctx: GateContext) -> tuple[Effect, str]:
    policy = ctx.policy
    q = policy.quarantine_for(rec.nodeid)
    expired_note = ""
    if q is not None:
        if not q.expired(ctx.today):
            return Effect.NONE, f"quarantined until {q.expires.isoformat()}: {q.reason}"
        expired_note = f"; its quarantine expired on {q.expires.isoformat()} ({q.reason})"
    if not ctx.is_required(rec):
        # reported; an infrastructure fault still makes its device unhealthy (counted above)
        return Effect.NONE, "not in a required suite" + expired_note
    if cls is FailureClass.PRODUCT:
        return Effect.REJECT, "product failure in a required suite" + expired_note
    rule = policy.infrastructure if cls is FailureClass.INFRASTRUCTURE else policy.harness
    if rule is OnFailure.BLOCK:
        return Effect.REJECT, f"{cls} failures block (policy {cls}: block)" + expired_note
    if rule is OnFailure.TOLERATE and rec.device:
        return Effect.NONE, "lab fault tolerated: the device is left out of the count" + expired_note
    return Effect.INCONCLUSIVE, f"{cls} failure: run again (policy {cls}: {rule})" + expired_note


# -- latency ---------------------------------------------------------------------------------------

def latency(ctx: GateContext) -> list[Finding]:
    """Latency figures against their budgets; over budget in a required latency suite rejects."""
    out: list[Finding] = []
    for fig in ctx.results.latency:
        row, problem = judge_latency(fig, ctx.policy)
        ctx.latency.append(row)
        suite = latency_suite(fig)
        if problem and suite in ctx.required:
            msg = f"latency {fig.metric}" + (f" on {fig.device}" if fig.device else "") + f": {problem}"
            out.append(Finding(Effect.REJECT, msg))
            ctx.blocking.append(GateFailure(
                test=fig.nodeid or f"latency:{fig.metric}", device=fig.device,
                model=ctx.model_of(fig.device), failure_class=str(FailureClass.PRODUCT), message=msg,
                suites=[suite], effect=Effect.REJECT, why="over the latency budget in the gate policy"))
            ctx.failing[suite].add(fig.device or "")
    return out


def latency_suite(fig: LatencyFigure) -> str:
    """The suite a latency figure belongs to: its test's (suites/<name>/...), else by metric:
    ``ml_*`` figures (model inference) are the ml suite's, the rest the latency suite's."""
    if fig.nodeid and fig.nodeid.startswith("suites/"):
        return fig.nodeid.split("/")[1]
    return "ml" if fig.metric.startswith("ml_") else "latency"


# -- ML model figures ------------------------------------------------------------------------------

def ml(ctx: GateContext) -> list[Finding]:
    """ML figures (quality, agreement, footprint, drift, champion, provenance) against gate.yaml ml:.

    Judged again here with the same judges the suite used (hil.ml.judge), from the figures
    themselves, so a test that did not fail (or was not run) cannot hide a figure out of policy.
    """
    out: list[Finding] = []
    policy = ctx.policy.ml
    for fig in ctx.results.ml:
        problems = judge_ml(fig.kind, fig.values, policy) if policy is not None else []
        ctx.ml.append({"kind": fig.kind, "device": fig.device, "model": fig.model, "values": fig.values,
                       "nodeid": fig.nodeid,
                       "verdict": ("no ml policy" if policy is None else
                                   "; ".join(problems) if problems else "within policy")})
        if not problems or "ml" not in ctx.required:
            continue
        where = f" on {fig.device}" if fig.device else ""
        for problem in problems:
            msg = f"ml {fig.kind}{where}: {problem}"
            out.append(Finding(Effect.REJECT, msg))
            ctx.blocking.append(GateFailure(
                test=fig.nodeid or f"ml:{fig.kind}", device=fig.device, model=ctx.model_of(fig.device),
                failure_class=str(FailureClass.PRODUCT), message=msg, suites=["ml"], effect=Effect.REJECT,
                why="outside the ml policy in gate.yaml"))
        ctx.failing["ml"].add(fig.device or "")
    return out


def candidate_validity(ctx: GateContext) -> list[Finding]:
    """A candidate refused before it reached any hub (bad digest, broken recipe) is rejected."""
    problems = ctx.results.metadata.candidate.get("problems")
    if not isinstance(problems, list) or not problems:
        return []
    return [Finding(Effect.REJECT, f"candidate refused before deployment: {first_line(str(p))}")
            for p in problems[:10]]


def judge_latency(fig: LatencyFigure, policy: GatePolicy) -> tuple[dict[str, Any], str | None]:
    budget = policy.latency_budget(fig.metric)
    row: dict[str, Any] = {"metric": fig.metric, "device": fig.device, "p95_ms": fig.p95_ms,
                           "p99_ms": fig.p99_ms, "samples": fig.samples,
                           "budget_p95_ms": budget.p95_ms if budget else None,
                           "budget_p99_ms": budget.p99_ms if budget else None, "verdict": "no budget"}
    if budget is None:
        return row, None
    if budget.min_samples and (fig.samples or 0) < budget.min_samples:
        row["verdict"] = f"too few samples ({fig.samples or 0} < {budget.min_samples})"
        return row, None
    over = [f"{name} {value:.1f} ms > {limit:g} ms" for name, value, limit in (
        ("p95", fig.p95_ms, budget.p95_ms), ("p99", fig.p99_ms, budget.p99_ms))
        if value is not None and limit is not None and value > limit]
    row["verdict"] = "over budget: " + ", ".join(over) if over else "within budget"
    return row, ", ".join(over) or None


# -- coverage --------------------------------------------------------------------------------------

def coverage(ctx: GateContext) -> list[Finding]:
    """Per device: what ran, what failed, what did not run and why.

    A required check (a test of a required suite) that was skipped or not applicable
    counts against promotion (inconclusive: the candidate was not shown to pass it)
    unless gate.yaml waives it for the device's model; an expired waiver blocks again
    and is named. A skip the lab or the harness caused is judged by the failures pass.
    """
    blocked: dict[str | None, list[CheckGap]] = defaultdict(list)
    expired: list[str] = []
    for rec in ctx.records:
        checks = ctx.checks[rec.device] if rec.device else ctx.unassigned
        if rec.disposition is Disposition.PASSED:
            checks.passed.append(rec.nodeid)
            continue
        if rec.disposition is Disposition.FAILED:
            checks.failed.append({"check": rec.nodeid,
                                  "failure_class": str(rec.failure_class or FailureClass.HARNESS)})
            continue
        gap = _gap(rec, ctx)
        na = rec.disposition is Disposition.NOT_APPLICABLE
        (checks.not_applicable if na else checks.skipped).append(gap)
        if gap.effect is not Effect.NONE:
            blocked[rec.device].append(gap)
            if gap.waiver is not None:
                expired.append(f"the waiver of {gap.waiver['check']!r} for model {gap.waiver['model']} "
                               f"expired on {gap.waiver['expires']} ({gap.waiver['reason']}): "
                               f"{gap.check} did not run" + (f" on {rec.device}" if rec.device else ""))
    out = [Finding(Effect.INCONCLUSIVE, r) for r in expired]
    for device, gaps in blocked.items():
        unwaived = [g for g in gaps if g.waiver is None]
        if not unwaived:
            continue
        named = "; ".join(
            f"{g.check} ({g.disposition.replace('_', ' ')}: {first_line(g.reason) or 'no reason'})"
            for g in unwaived[:GAPS_NAMED_PER_DEVICE])
        more = len(unwaived) - GAPS_NAMED_PER_DEVICE
        where = f"on {device} (model {ctx.model_of(device)})" if device else "(no device named)"
        out.append(Finding(Effect.INCONCLUSIVE,
                           f"coverage: {len(unwaived)} required check(s) did not run {where} and no "
                           f"gate.yaml waiver covers them: {named}"
                           + (f"; and {more} more" if more > 0 else "")))
    return out


def _gap(rec: TestRecord, ctx: GateContext) -> CheckGap:
    base: dict[str, Any] = {"check": rec.nodeid, "disposition": str(rec.disposition), "reason": rec.message,
                            "required": ctx.is_required(rec),
                            "failure_class": str(rec.failure_class) if rec.failure_class else None}
    if rec.is_problem:
        return CheckGap(**base, effect=Effect.NONE,
                        why=f"a {rec.failure_class} problem: judged with the failures")
    if not base["required"]:
        return CheckGap(**base, effect=Effect.NONE, why="not in a required suite")
    model = ctx.model_of(rec.device)
    w = ctx.policy.waiver_for(rec.nodeid, model, ctx.today)
    if w is None:
        return CheckGap(**base, effect=Effect.INCONCLUSIVE,
                        why=f"required and not waived for model {model or 'unknown'}")
    waiver = {"check": w.check, "model": w.model, "reason": w.reason, "expires": w.expires.isoformat()}
    if w.expired(ctx.today):
        return CheckGap(**base, effect=Effect.INCONCLUSIVE, waiver=waiver,
                        why=f"its waiver expired on {w.expires.isoformat()}")
    return CheckGap(**base, effect=Effect.NONE, waiver=waiver,
                    why=f"waived until {w.expires.isoformat()}: {w.reason}")


# -- device health ---------------------------------------------------------------------------------

def device_health(ctx: GateContext) -> list[Finding]:
    """Each device: healthy, did it run at all, and enough healthy devices for the policy."""
    per_device: dict[str, list[TestRecord]] = defaultdict(list)
    for r in ctx.records:
        if r.device:
            per_device[r.device].append(r)
    failing_devices = set().union(*ctx.failing.values()) if ctx.failing else set()
    for name in sorted(set(ctx.models) | set(ctx.unhealthy)):
        recs = per_device.get(name, [])
        if not recs and name not in ctx.unhealthy:
            ctx.unhealthy[name] = "no results from this device"
        healthy = name not in ctx.unhealthy
        checks = ctx.checks.get(name, DeviceChecks())
        gaps = any(g.effect is not Effect.NONE for g in (*checks.skipped, *checks.not_applicable))
        outcome = ("unhealthy" if not healthy else "failed" if name in failing_devices
                   else "incomplete" if gaps else "passed")
        ctx.devices[name] = DeviceOutcome(
            model=ctx.models.get(name), healthy=healthy, outcome=outcome,
            passed=_count(recs, Disposition.PASSED), failed=_count(recs, Disposition.FAILED),
            skipped=_count(recs, Disposition.SKIPPED),
            not_applicable=_count(recs, Disposition.NOT_APPLICABLE),
            note=ctx.unhealthy.get(name, ""), checks=checks)
    healthy_names = [d for d, o in ctx.devices.items() if o.healthy]
    policy = ctx.policy
    want = len(ctx.selected) if policy.min_healthy_devices == "all" else policy.min_healthy_devices
    if len(healthy_names) < want:
        sick = ", ".join(f"{d} ({why})" for d, why in sorted(ctx.unhealthy.items())) or "none reported"
        return [Finding(Effect.INCONCLUSIVE,
                        f"{len(healthy_names)} healthy device(s), the policy needs {want} "
                        f"(min_healthy_devices: {policy.min_healthy_devices}); unhealthy: {sick}")]
    return []


def _count(recs: Iterable[TestRecord], d: Disposition) -> int:
    return sum(r.disposition is d for r in recs)


# -- suites ----------------------------------------------------------------------------------------

def suites(ctx: GateContext) -> list[Finding]:
    """Each required suite passed on enough healthy devices of each model."""
    out: list[Finding] = []
    records = ctx.records
    names = list(ctx.required) + sorted({s for r in records for s in r.suites} - set(ctx.required))
    any_device_info = any(r.device for r in records)
    healthy_names = [d for d, o in ctx.devices.items() if o.healthy]
    policy = ctx.policy
    for suite in names:
        recs = [r for r in records if suite in r.suites]
        so = SuiteOutcome(required=suite in ctx.required, passed=_count(recs, Disposition.PASSED),
                          failed=_count(recs, Disposition.FAILED), skipped=_count(recs, Disposition.SKIPPED),
                          not_applicable=_count(recs, Disposition.NOT_APPLICABLE))
        ctx.suites[suite] = so
        if not recs:
            if so.required:
                out.append(Finding(Effect.INCONCLUSIVE, f"required suite {suite}: no results"))
            continue
        blocked = suite in ctx.failing
        for dev in healthy_names:
            passed_here = any(r.device == dev and r.disposition is Disposition.PASSED for r in recs)
            if dev in ctx.failing.get(suite, set()) or not passed_here:
                continue
            so.devices_passed.setdefault(ctx.models.get(dev, "unknown"), []).append(dev)
        so.outcome = "failed" if blocked else "passed" if so.passed else "skipped"
        if not so.required or blocked:
            continue
        if not any_device_info:
            if policy.min_devices_per_model and max(policy.min_devices_per_model.values()) > 0:
                out.append(Finding(Effect.INCONCLUSIVE, f"required suite {suite}: results name no devices, "
                                                        "so min_devices_per_model cannot be checked"))
            continue
        for model in sorted(set(ctx.models.values()) | (set(policy.min_devices_per_model) - {"default"})):
            need = policy.min_devices_for(model)
            got = so.devices_passed.get(model, [])
            if len(got) < need:
                out.append(Finding(Effect.INCONCLUSIVE, f"required suite {suite}: {len(got)} device(s) of "
                                                        f"model {model} passed, the policy needs {need}"))
                so.outcome = "insufficient"
    return out


# -- the run as a whole ----------------------------------------------------------------------------

def completeness(ctx: GateContext) -> list[Finding]:
    out: list[Finding] = []
    finished = ctx.finished if ctx.finished is not None else ctx.results.metadata.finished
    if finished is False:
        out.append(Finding(Effect.INCONCLUSIVE, "the run did not finish (partial results)"))
    if not ctx.records:
        out.append(Finding(Effect.INCONCLUSIVE, "no test results were found"))
    return out


DEFAULT_PASSES: tuple[tuple[str, Pass], ...] = (
    ("failures", failures),
    ("candidate", candidate_validity),
    ("latency", latency),
    ("ml", ml),
    ("coverage", coverage),
    ("device_health", device_health),
    ("suites", suites),
    ("completeness", completeness),
)
"""In this order: device health reads the failures pass's unhealthy devices and the
coverage pass's gaps; suites counts the devices device health found healthy."""


def first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:200]
