"""The promotion ledger: one JSON line per promoted candidate, tracing a release to its evidence."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
from pathlib import Path
from typing import Any

from hil.gate.decision import Decision, GateDecision
from hil.redact import redact_tree


def ledger_entry(decision: GateDecision, *, gate_json_sha256: str, gate_json_path: str,
                 ci_job_url: str | None) -> dict[str, Any]:
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "decision": str(decision.decision),
        "candidate": decision.candidate,
        "run_id": decision.run_id,
        "harness_git_revision": decision.harness_git_revision,
        "inventory_sha256": decision.inventory_sha256,
        "gate_json": gate_json_path,
        "gate_json_sha256": gate_json_sha256,
        "ci_job_url": ci_job_url or decision.ci_job_url,
    }


def record_promotion(ledger: Path, decision: GateDecision, *, gate_json_sha256: str,
                     gate_json_path: str, ci_job_url: str | None = None) -> dict[str, Any] | None:
    """Append a line for a promotion; anything else is not recorded (returns None)."""
    if decision.decision is not Decision.PROMOTE:
        return None
    entry = ledger_entry(decision, gate_json_sha256=gate_json_sha256, gate_json_path=gate_json_path,
                         ci_job_url=ci_job_url)
    # value by value: a short secret masked inside the JSON text could break its syntax
    line = json.dumps(redact_tree(json.loads(json.dumps(entry, default=str))), sort_keys=True) + "\n"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with ledger.open("a", encoding="utf-8") as fh:
        # two CI jobs on one runner may promote at once: one whole line each
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.write(line)
            fh.flush()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return entry


def read_ledger(ledger: Path) -> list[dict[str, Any]]:
    if not ledger.is_file():
        return []
    out = []
    for line in ledger.read_text(encoding="utf-8").splitlines():
        if line.strip():
            doc = json.loads(line)
            if isinstance(doc, dict):
                out.append(doc)
    return out
