"""The gate's decision where a release manager looks first in the Allure report.

From reports/gate.json (written by `pytest --gate` / `hil gate`), `hil report` adds:

- the report's title (executor.json ``reportName``, shown at the top of the Overview)
  and the executor entry's build name: ``PROMOTE``/``REJECT``/``INCONCLUSIVE`` and the
  candidate, the entry linking to the CI job that ran the gate;
- ``gate.*`` and ``candidate.*`` lines in the Environment widget;
- one test result "Gate decision: ..." (suite "promotion gate"): passed on promote,
  failed on reject, broken on inconclusive; its message is the reasons, its description
  the candidate's identity, gate.json attached.

gate.json is read as untrusted input (it may come from another job's artifacts): only
the fields below are taken, each type-checked, and a decision of another run than the
results' is left out rather than shown next to them.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.errors import UserError

STATUS = {"promote": "passed", "reject": "failed", "inconclusive": "broken"}
HISTORY_ID = "hil-gate-decision"


@dataclass(frozen=True)
class GateVerdict:
    decision: str
    exit_code: int | None = None
    reasons: tuple[str, ...] = ()
    components: dict[str, str] = field(default_factory=dict)
    candidate_sha256: str | None = None
    candidate_description: str | None = None
    run_id: str | None = None
    decided_at: str | None = None

    @property
    def candidate(self) -> str:
        return ", ".join(f"{name} {version}" for name, version in sorted(self.components.items())) or "-"

    @property
    def headline(self) -> str:
        return f"{self.decision.upper()}: {self.candidate}"


def _str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) else None


def parse_verdict(doc: object, source: str) -> GateVerdict:
    if not isinstance(doc, dict) or doc.get("decision") not in STATUS:
        raise UserError("not a gate decision (no decision promote/reject/inconclusive)", file=source)
    cand = doc.get("candidate") if isinstance(doc.get("candidate"), dict) else {}
    assert isinstance(cand, dict)
    comps = cand.get("components") if isinstance(cand.get("components"), dict) else {}
    assert isinstance(comps, dict)
    reasons = doc.get("reasons") if isinstance(doc.get("reasons"), list) else []
    assert isinstance(reasons, list)
    code = doc.get("exit_code")
    return GateVerdict(
        decision=str(doc["decision"]),
        exit_code=code if isinstance(code, int) else None,
        reasons=tuple(str(r) for r in reasons if isinstance(r, str)),
        components={str(k): str(v) for k, v in comps.items() if isinstance(v, str)},
        candidate_sha256=_str(cand, "digest"),
        candidate_description=_str(cand, "description"),
        run_id=_str(doc, "run_id"),
        decided_at=_str(doc, "decided_at"),
    )


def read_verdict(path: Path) -> GateVerdict | None:
    """The decision in ``path``; None when there is none (a run without --gate)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"cannot read the gate decision: {exc.strerror}", file=str(path)) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"the gate decision is not JSON: {exc.msg}", file=str(path),
                        line=exc.lineno) from None
    return parse_verdict(doc, str(path))


def results_run_id(results: Path) -> str | None:
    """The run id the harness wrote into the results' environment.properties."""
    try:
        lines = (results / "environment.properties").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "run.id":
            return value.strip()
    return None


def environment_entries(v: GateVerdict) -> dict[str, str]:
    out = {"gate.decision": v.decision.upper(), "gate.reasons": "; ".join(v.reasons) or "-",
           "candidate": v.candidate}
    if v.candidate_sha256:
        out["candidate.sha256"] = v.candidate_sha256
    return out


def _millis(iso: str | None) -> int:
    if iso:
        try:
            from datetime import datetime

            return int(datetime.fromisoformat(iso).timestamp() * 1000)
        except ValueError:
            pass
    return int(time.time() * 1000)


def allure_result(v: GateVerdict) -> tuple[dict[str, Any], str]:
    """(result document, name of the gate.json attachment file to write beside it)."""
    attachment = f"{uuid.uuid4()}-attachment.json"
    esc = html.escape
    items = "".join(f"<li>{esc(r)}</li>" for r in v.reasons)
    comps = "".join(f"<li>{esc(n)} {esc(ver)}</li>" for n, ver in sorted(v.components.items()))
    description = (f"<p><b>{esc(v.decision.upper())}</b> (exit {v.exit_code})</p>"
                   f"<p>Reasons:</p><ul>{items}</ul><p>Candidate: "
                   f"{esc(v.candidate_description or '')}</p><ul>{comps}</ul>"
                   f"<p>sha256 {esc(v.candidate_sha256 or '-')}; run {esc(v.run_id or '-')}</p>")
    at = _millis(v.decided_at)
    doc: dict[str, Any] = {
        "uuid": str(uuid.uuid4()), "historyId": HISTORY_ID, "testCaseId": HISTORY_ID,
        "name": f"Gate decision: {v.headline}", "fullName": "hil.gate#decision",
        "status": STATUS[v.decision], "stage": "finished", "start": at, "stop": at,
        "statusDetails": {"message": "\n".join(v.reasons)},
        "descriptionHtml": description,
        "labels": [{"name": "parentSuite", "value": "promotion gate"},
                   {"name": "suite", "value": "promotion gate"},
                   {"name": "feature", "value": "gate"}, {"name": "severity", "value": "blocker"},
                   {"name": "tag", "value": f"gate:{v.decision}"}],
        "parameters": [{"name": "candidate", "value": v.candidate},
                       {"name": "decision", "value": v.decision}],
        "attachments": [{"name": "gate.json", "source": attachment, "type": "application/json"}],
        "steps": [],
    }
    return doc, attachment


def _remove_earlier(results: Path) -> None:
    """`hil report` twice on the same results: one decision, not two."""
    for path in results.glob("*-result.json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("historyId") == HISTORY_ID:
            for att in doc.get("attachments") or []:
                if isinstance(att, dict) and isinstance(att.get("source"), str):
                    (results / Path(att["source"]).name).unlink(missing_ok=True)
            path.unlink()


def write_verdict(results: Path, gate_json: Path) -> tuple[GateVerdict | None, str]:
    """Add the decision of ``gate_json`` to ``results``: (the decision or None, what was done)."""
    v = read_verdict(gate_json)
    if v is None:
        return None, f"no gate decision at {gate_json} (a run without --gate)"
    run = results_run_id(results)
    if run is not None and v.run_id is not None and run != v.run_id:
        return None, (f"{gate_json} is the decision of run {v.run_id}, the results are of run {run}: "
                      "not shown")
    _remove_earlier(results)
    doc, attachment = allure_result(v)
    (results / attachment).write_bytes(gate_json.read_bytes())
    (results / f"{doc['uuid']}-result.json").write_text(json.dumps(doc), encoding="utf-8")
    from hil.report.environment import add_environment

    add_environment(results, environment_entries(v))
    return v, f"gate decision {v.headline}"
