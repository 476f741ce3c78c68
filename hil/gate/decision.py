"""From a run's results and the gate policy to a decision CI can act on.

promote (exit 0): every required suite passed on enough healthy devices of each model,
  and every required check ran on every device (or is waived for its model).
reject (exit 1): the candidate is wrong (a product failure that is not quarantined),
  or the policy says infrastructure/harness failures block.
inconclusive (exit 2): the run proves nothing either way – too few healthy devices,
  infrastructure or harness failures under `requeue`, a required check that did not
  run without a waiver, a partial run, no results.

The judging is done by small passes (hil/gate/passes.py: failures, latency, coverage,
device health, suites, completeness); this module runs them and writes gate.json.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

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
from hil.gate.passes import DEFAULT_PASSES, GateContext, Pass
from hil.gate.policy import GatePolicy
from hil.gate.results import RunResults
from hil.redact import redact_tree

__all__ = ["CheckGap", "Decision", "DeviceChecks", "DeviceOutcome", "Effect", "Finding", "GateDecision",
           "GateFailure", "SuiteOutcome", "decide", "write_gate_json"]

GATE_JSON_VERSION = 2
"""2: per-device ``checks`` (passed, failed, skipped, not_applicable), ``passes``, ``evidence``."""


class Decision(StrEnum):
    PROMOTE = "promote"
    REJECT = "reject"
    INCONCLUSIVE = "inconclusive"

    @property
    def exit_code(self) -> int:
        from hil.exitcodes import GateExit

        return int(GateExit[self.name])


@dataclass
class PassOutcome:
    """What one pass concluded: the worst effect of its findings, and their reasons."""

    effect: Effect
    reasons: list[str]


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
    passes: dict[str, PassOutcome] = field(default_factory=dict)
    unassigned_checks: DeviceChecks = field(default_factory=DeviceChecks)
    """Checks whose results name no device."""
    evidence: dict[str, Any] = field(default_factory=dict)
    """Files kept with the decision (e.g. SBOMs: path, sha256, subject)."""
    ml: list[dict[str, Any]] = field(default_factory=list)
    """ML figures (kind, device, model, values, verdict): quality, agreement, drift, footprint, ..."""

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"gate_json_version": GATE_JSON_VERSION, **asdict(self)}
        doc["exit_code"] = self.exit_code
        # value by value: redacting the JSON text could break its quoting
        out: dict[str, Any] = redact_tree(json.loads(json.dumps(doc, default=str)))
        return out


# -- the decision ------------------------------------------------------------------------------

_RANK = {Effect.NONE: 0, Effect.INCONCLUSIVE: 1, Effect.REJECT: 2}


def decide(results: RunResults, policy: GatePolicy, *, today: dt.date | None = None,
           selected_devices: Mapping[str, str | None] | None = None,
           report_dir: Path | None = None, finished: bool | None = None,
           git_revision: str | None = None, inventory_sha256: str | None = None,
           passes: Sequence[tuple[str, Pass]] = DEFAULT_PASSES) -> GateDecision:
    """Judge one run. ``selected_devices`` (device -> model) stands in for the run
    metadata's device list when that is missing (for ``min_healthy_devices: all``)."""
    meta = results.metadata
    selected: dict[str, str | None] = dict(meta.devices) or dict(selected_devices or {})
    if not selected:
        selected = {r.device: r.model for r in results.records if r.device}
    ctx = GateContext(results=results, policy=policy, today=today or dt.date.today(), selected=selected,
                      links=AllureLinks(report_dir), finished=finished)
    outcomes: dict[str, PassOutcome] = {}
    found: list[Finding] = []
    for name, judge in passes:
        findings = judge(ctx)
        found.extend(findings)
        worst = max((f.effect for f in findings), key=_RANK.__getitem__, default=Effect.NONE)
        outcomes[name] = PassOutcome(worst, [f.reason for f in findings])
    reject = [f.reason for f in found if f.effect is Effect.REJECT]
    inconclusive = [f.reason for f in found if f.effect is Effect.INCONCLUSIVE]
    notes = [f.reason for f in found if f.effect is Effect.NONE]
    if reject:
        decision, reasons = Decision.REJECT, reject + [f"also: {r}" for r in inconclusive]
    elif inconclusive:
        decision, reasons = Decision.INCONCLUSIVE, inconclusive
    else:
        decision = Decision.PROMOTE
        healthy = sum(o.healthy for o in ctx.devices.values())
        reasons = [f"all required suites ({', '.join(ctx.required)}) passed on {healthy} healthy device(s)"]
    reasons += notes
    return GateDecision(
        decision=decision, reasons=reasons, candidate=dict(meta.candidate),
        harness_git_revision=meta.git_revision or git_revision,
        inventory_sha256=meta.inventory_sha256 or inventory_sha256, run_id=meta.run_id,
        policy_file=str(policy.path) if policy.path else None, suites=ctx.suites, devices=ctx.devices,
        blocking_failures=ctx.blocking, quarantined_failures=ctx.quarantined, other_failures=ctx.other,
        latency=ctx.latency, sources=results.sources, warnings=results.warnings,
        decided_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), ci_job_url=meta.ci_job_url,
        passes=outcomes, unassigned_checks=ctx.unassigned, ml=ctx.ml)


def write_gate_json(decision: GateDecision, path: Path) -> str:
    """Write gate.json (secrets redacted); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(decision.to_dict(), indent=2, sort_keys=False) + "\n").encode("utf-8")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


