"""From a run's results and the gate policy to a decision CI can act on.

promote (exit 0): every required suite passed on enough healthy devices of each model.
reject (exit 1): the candidate is wrong (a product failure that is not quarantined),
  or the policy says infrastructure/harness failures block.
inconclusive (exit 2): the run proves nothing either way – too few healthy devices,
  infrastructure or harness failures under `requeue`, a partial run, no results.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hil.errors import FailureClass
from hil.gate.policy import GatePolicy, OnFailure
from hil.gate.results import LatencyFigure, Outcome, RunResults, TestRecord
from hil.redact import redact

GATE_JSON_VERSION = 1


class Decision(StrEnum):
    PROMOTE = "promote"
    REJECT = "reject"
    INCONCLUSIVE = "inconclusive"

    @property
    def exit_code(self) -> int:
        from hil.exitcodes import GateExit

        return int(GateExit[self.name])


class Effect(StrEnum):
    """What one failure does to the decision."""

    REJECT = "reject"
    INCONCLUSIVE = "inconclusive"
    NONE = "none"


@dataclass(frozen=True)
class GateFailure:
    test: str
    device: str | None
    model: str | None
    failure_class: str
    message: str
    suites: list[str]
    effect: Effect
    why: str
    """Why it blocks or why not (quarantined until ..., suite not required, ...)."""
    allure_uuid: str | None = None
    allure_link: str | None = None


@dataclass
class SuiteOutcome:
    outcome: str = "not run"
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    devices_passed: dict[str, list[str]] = field(default_factory=dict)
    """model -> devices that passed every test of this suite they ran."""
    required: bool = False


@dataclass
class DeviceOutcome:
    model: str | None
    healthy: bool
    outcome: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    note: str = ""


@dataclass
class GateDecision:
    decision: Decision
    reasons: list[str]
    candidate: dict[str, Any]
    harness_git_revision: str | None
    inventory_sha256: str | None
    run_id: str | None
    policy_file: str | None
    suites: dict[str, SuiteOutcome]
    devices: dict[str, DeviceOutcome]
    blocking_failures: list[GateFailure]
    quarantined_failures: list[GateFailure]
    other_failures: list[GateFailure]
    """Reported, not blocking: suites the policy does not require, tolerated lab faults."""
    latency: list[dict[str, Any]]
    sources: list[str]
    warnings: list[str]
    decided_at: str
    ci_job_url: str | None = None

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"gate_json_version": GATE_JSON_VERSION, **asdict(self)}
        doc["exit_code"] = self.exit_code
        out: dict[str, Any] = _redacted(json.loads(json.dumps(doc, default=str)))
        return out


def _redacted(node: Any) -> Any:
    """Redact every string value (redacting the JSON text could break its quoting)."""
    if isinstance(node, str):
        return redact(node)
    if isinstance(node, dict):
        return {redact(str(k)): _redacted(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_redacted(v) for v in node]
    return node


# -- the decision ------------------------------------------------------------------------------

def decide(results: RunResults, policy: GatePolicy, *, today: dt.date | None = None,
           selected_devices: Mapping[str, str | None] | None = None,
           report_dir: Path | None = None, finished: bool | None = None,
           git_revision: str | None = None, inventory_sha256: str | None = None) -> GateDecision:
    """Judge one run. ``selected_devices`` (device -> model) stands in for the run
    metadata's device list when that is missing (for ``min_healthy_devices: all``)."""
    today = today or dt.date.today()
    meta = results.metadata
    required = list(dict.fromkeys(policy.required_suites))
    links = AllureLinks(report_dir)
    reject: list[str] = []
    inconclusive: list[str] = []
    blocking: list[GateFailure] = []
    quarantined: list[GateFailure] = []
    other: list[GateFailure] = []

    # -- the devices the run was meant to cover
    selected: dict[str, str | None] = dict(meta.devices) or dict(selected_devices or {})
    if not selected:
        selected = {r.device: r.model for r in results.records if r.device}
    models: dict[str, str] = {d: (m or "unknown") for d, m in selected.items()}
    for r in results.records:
        if r.device:
            if r.model and models.get(r.device, "unknown") == "unknown":
                models[r.device] = r.model
            models.setdefault(r.device, r.model or "unknown")

    # -- every failure, judged one by one
    failing_devices: dict[str, set[str]] = defaultdict(set)  # suite -> devices with a blocking failure
    unhealthy: dict[str, str] = {d: "marked broken by the harness" for d in meta.broken_devices}
    for rec in results.records:
        if not rec.is_problem:
            continue
        cls = rec.failure_class or FailureClass.HARNESS
        if cls is FailureClass.INFRASTRUCTURE and rec.device:
            unhealthy.setdefault(rec.device, f"infrastructure: {_first_line(rec.message)}")
        effect, why = _judge(rec, cls, policy, required, today)
        gf = _failure(rec, cls, effect, why, links)
        if effect is Effect.NONE:
            (quarantined if why.startswith("quarantined") else other).append(gf)
            continue
        blocking.append(gf)
        for s in rec.suites:
            failing_devices[s].add(rec.device or "")
        (reject if effect is Effect.REJECT else inconclusive).append(
            f"{cls} failure in {rec.nodeid}" + (f" on {rec.device}" if rec.device else "")
            + (f": {_first_line(rec.message)}" if rec.message else ""))

    # -- latency figures against their budgets
    latency_rows: list[dict[str, Any]] = []
    for fig in results.latency:
        row, problem = _judge_latency(fig, policy)
        latency_rows.append(row)
        if problem and "latency" in required:
            msg = f"latency {fig.metric}" + (f" on {fig.device}" if fig.device else "") + f": {problem}"
            reject.append(msg)
            blocking.append(GateFailure(test=fig.nodeid or f"latency:{fig.metric}", device=fig.device,
                                        model=models.get(fig.device or ""), failure_class="product",
                                        message=msg, suites=["latency"], effect=Effect.REJECT,
                                        why="over the latency budget in the gate policy"))
            failing_devices["latency"].add(fig.device or "")

    # -- devices: healthy, and did they run at all
    devices: dict[str, DeviceOutcome] = {}
    per_device: dict[str, list[TestRecord]] = defaultdict(list)
    for r in results.records:
        if r.device:
            per_device[r.device].append(r)
    for name in sorted(set(models) | set(unhealthy)):
        recs = per_device.get(name, [])
        if not recs and name not in unhealthy:
            unhealthy[name] = "no results from this device"
        healthy = name not in unhealthy
        n_fail = sum(r.outcome is Outcome.FAILED for r in recs)
        devices[name] = DeviceOutcome(
            model=models.get(name), healthy=healthy,
            outcome=("unhealthy" if not healthy else "failed" if any(
                name in failing_devices[s] for s in failing_devices) else "passed"),
            passed=sum(r.outcome is Outcome.PASSED for r in recs), failed=n_fail,
            skipped=sum(r.outcome is Outcome.SKIPPED for r in recs), note=unhealthy.get(name, ""))

    healthy_names = [d for d, o in devices.items() if o.healthy]
    want = len(selected) if policy.min_healthy_devices == "all" else policy.min_healthy_devices
    if len(healthy_names) < want:
        sick = ", ".join(f"{d} ({why})" for d, why in sorted(unhealthy.items())) or "none reported"
        inconclusive.append(f"{len(healthy_names)} healthy device(s), the policy needs {want} "
                            f"(min_healthy_devices: {policy.min_healthy_devices}); unhealthy: {sick}")

    # -- suites: each required suite on enough healthy devices of each model
    suites: dict[str, SuiteOutcome] = {}
    names = list(required) + sorted({s for r in results.records for s in r.suites} - set(required))
    any_device_info = any(r.device for r in results.records)
    for suite in names:
        recs = [r for r in results.records if suite in r.suites]
        so = SuiteOutcome(required=suite in required, passed=sum(r.outcome is Outcome.PASSED for r in recs),
                          failed=sum(r.outcome is Outcome.FAILED for r in recs),
                          skipped=sum(r.outcome is Outcome.SKIPPED for r in recs))
        suites[suite] = so
        if not recs:
            if so.required:
                inconclusive.append(f"required suite {suite}: no results")
            continue
        blocked = suite in failing_devices
        for dev in healthy_names:
            dev_recs = [r for r in recs if r.device == dev]
            if dev in failing_devices[suite] or not any(r.outcome is Outcome.PASSED for r in dev_recs):
                continue
            so.devices_passed.setdefault(models.get(dev, "unknown"), []).append(dev)
        so.outcome = "failed" if blocked else "passed" if so.passed else "skipped"
        if not so.required or blocked:
            continue
        if not any_device_info:
            if policy.min_devices_per_model and max(policy.min_devices_per_model.values()) > 0:
                inconclusive.append(f"required suite {suite}: results name no devices, so "
                                    "min_devices_per_model cannot be checked")
            continue
        for model in sorted(set(models.values()) | (set(policy.min_devices_per_model) - {"default"})):
            need = policy.min_devices_for(model)
            got = so.devices_passed.get(model, [])
            if len(got) < need:
                inconclusive.append(f"required suite {suite}: {len(got)} device(s) of model {model} "
                                    f"passed, the policy needs {need}")
                so.outcome = "insufficient"

    run_finished = finished if finished is not None else meta.finished
    if run_finished is False:
        inconclusive.append("the run did not finish (partial results)")
    if not results.records:
        inconclusive.append("no test results were found")

    if reject:
        decision, reasons = Decision.REJECT, reject + [f"also: {r}" for r in inconclusive]
    elif inconclusive:
        decision, reasons = Decision.INCONCLUSIVE, inconclusive
    else:
        decision = Decision.PROMOTE
        reasons = [f"all required suites ({', '.join(required)}) passed on "
                   f"{len(healthy_names)} healthy device(s)"]
    if quarantined:
        reasons.append(f"{len(quarantined)} quarantined failure(s) reported, not blocking")
    return GateDecision(
        decision=decision, reasons=reasons, candidate=dict(meta.candidate),
        harness_git_revision=meta.git_revision or git_revision,
        inventory_sha256=meta.inventory_sha256 or inventory_sha256, run_id=meta.run_id,
        policy_file=str(policy.path) if policy.path else None, suites=suites, devices=devices,
        blocking_failures=blocking, quarantined_failures=quarantined, other_failures=other,
        latency=latency_rows, sources=results.sources, warnings=results.warnings,
        decided_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), ci_job_url=meta.ci_job_url)


def _judge(rec: TestRecord, cls: FailureClass, policy: GatePolicy, required: list[str],
           today: dt.date) -> tuple[Effect, str]:
    q = policy.quarantine_for(rec.nodeid)
    expired_note = ""
    if q is not None:
        if not q.expired(today):
            return Effect.NONE, f"quarantined until {q.expires.isoformat()}: {q.reason}"
        expired_note = f"; its quarantine expired on {q.expires.isoformat()} ({q.reason})"
    if not rec.suites.intersection(required):
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


def _judge_latency(fig: LatencyFigure, policy: GatePolicy) -> tuple[dict[str, Any], str | None]:
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


def _failure(rec: TestRecord, cls: FailureClass, effect: Effect, why: str, links: AllureLinks) -> GateFailure:
    return GateFailure(test=rec.nodeid, device=rec.device, model=rec.model, failure_class=str(cls),
                       message=rec.message[:2000], suites=sorted(rec.suites), effect=effect, why=why,
                       allure_uuid=rec.allure_uuid, allure_link=links.link(rec))


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:200]


class AllureLinks:
    """Link a record to its test case in a generated Allure report.

    Allure 2 gives each test case its own id when the report is built, so an exact
    ``#testresult/<uid>`` link exists only once a report has been generated from
    these results; before that the link is the report's categories page, where
    failures are grouped by class.
    """

    def __init__(self, report_dir: Path | None) -> None:
        self.report_dir = report_dir
        self._uids: dict[tuple[str, int], str] = {}
        cases = report_dir / "data" / "test-cases" if report_dir else None
        if cases and cases.is_dir():
            for path in cases.glob("*.json"):
                try:
                    doc = json.loads(path.read_text(encoding="utf-8"))
                    self._uids[(str(doc["name"]), int(doc["time"]["start"]))] = str(doc["uid"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue

    def link(self, rec: TestRecord) -> str | None:
        if self.report_dir is None:
            return None
        base = f"{self.report_dir}/index.html"
        if rec.allure_name and rec.start_ms is not None:
            uid = self._uids.get((rec.allure_name, rec.start_ms))
            if uid:
                return f"{base}#testresult/{uid}"
        return f"{base}#categories"


def write_gate_json(decision: GateDecision, path: Path) -> str:
    """Write gate.json (secrets redacted); return its sha256."""
    import hashlib

    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(decision.to_dict(), indent=2, sort_keys=False) + "\n").encode("utf-8")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def failures_of(decision: GateDecision) -> Iterable[GateFailure]:
    yield from decision.blocking_failures
    yield from decision.quarantined_failures
    yield from decision.other_failures
