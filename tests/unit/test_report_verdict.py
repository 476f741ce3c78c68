"""The gate's decision in the Allure report: title, executor entry, environment, one result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hil.errors import UserError
from hil.gate.ci import ci_job
from hil.report.html import executor
from hil.report.verdict import HISTORY_ID, parse_verdict, write_verdict

GATE = {"decision": "reject", "exit_code": 1, "run_id": "r1", "decided_at": "2026-12-04T06:00:00+00:00",
        "reasons": ["product failure in a required suite: suites/smoke/test_smoke.py::test_clock[hub-01]"],
        "candidate": {"components": {"com.hbs.hub.Container": "1.0.0"}, "digest": "ab" * 32,
                      "description": "the example"}}


def _results(tmp_path: Path, run: str = "r1") -> Path:
    results = tmp_path / "allure-results"
    results.mkdir()
    (results / "environment.properties").write_text(f"lab=virtual-lab\nrun.id={run}\n")
    (results / "x-result.json").write_text('{"name": "t", "status": "passed"}')
    return results


def _gate(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(doc))
    return path


def _decisions(results: Path) -> list[dict[str, Any]]:
    docs = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    return [d for d in docs if d.get("historyId") == HISTORY_ID]


@pytest.mark.parametrize(("decision", "status"), [("promote", "passed"), ("reject", "failed"),
                                                  ("inconclusive", "broken")])
def test_one_result_states_the_decision(tmp_path: Path, decision: str, status: str) -> None:
    results = _results(tmp_path)
    verdict, note = write_verdict(results, _gate(tmp_path, {**GATE, "decision": decision}))
    assert verdict is not None and note == f"gate decision {decision.upper()}: com.hbs.hub.Container 1.0.0"
    [doc] = _decisions(results)
    assert doc["status"] == status and doc["name"].startswith(f"Gate decision: {decision.upper()}")
    assert doc["statusDetails"]["message"] == GATE["reasons"][0]
    assert "ab" * 32 in doc["descriptionHtml"] and "com.hbs.hub.Container 1.0.0" in doc["descriptionHtml"]
    attached = results / doc["attachments"][0]["source"]
    assert json.loads(attached.read_text())["decision"] == decision
    env = (results / "environment.properties").read_text()
    assert f"gate.decision={decision.upper()}" in env and "candidate.sha256=" + "ab" * 32 in env
    assert "run.id=r1" in env  # the harness's lines stay


def test_building_twice_keeps_one_decision(tmp_path: Path) -> None:
    results = _results(tmp_path)
    gate = _gate(tmp_path, GATE)
    write_verdict(results, gate)
    write_verdict(results, gate)
    assert len(_decisions(results)) == 1
    assert (results / "environment.properties").read_text().count("gate.decision=") == 1
    assert len(list(results.glob("*-attachment.json"))) == 1


def test_another_runs_decision_is_not_shown(tmp_path: Path) -> None:
    results = _results(tmp_path, run="r2")
    verdict, note = write_verdict(results, _gate(tmp_path, GATE))
    assert verdict is None and "run r1" in note and "run r2" in note
    assert _decisions(results) == []


def test_no_gate_json_is_fine(tmp_path: Path) -> None:
    verdict, note = write_verdict(_results(tmp_path), tmp_path / "gate.json")
    assert verdict is None and "without --gate" in note


@pytest.mark.parametrize("doc", [[], {"decision": "maybe"}, "promote", {"reasons": ["x"]}])
def test_a_file_that_is_no_decision_is_refused(doc: object) -> None:
    with pytest.raises(UserError, match="not a gate decision"):
        parse_verdict(doc, "gate.json")


def test_wrong_types_in_an_untrusted_file_are_dropped_not_trusted() -> None:
    v = parse_verdict({"decision": "promote", "reasons": "all fine", "exit_code": "0",
                       "candidate": {"components": {"a": 1, "b": "2"}, "digest": ["x"]}}, "gate.json")
    assert v.reasons == () and v.exit_code is None and v.components == {"b": "2"}
    assert v.candidate_sha256 is None


@pytest.mark.parametrize(("env", "url"), [
    ({"GITLAB_CI": "true", "CI_JOB_NAME": "hil-gate", "CI_JOB_URL": "https://gl/g/p/-/jobs/7",
      "CI_PIPELINE_ID": "42", "CI_PIPELINE_URL": "https://gl/g/p/-/pipelines/42"}, "https://gl/g/p/-/jobs/7"),
    ({"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r",
      "GITHUB_RUN_ID": "9", "GITHUB_JOB": "hil-gate"}, "https://github.com/o/r/actions/runs/9"),
    ({"BUILD_URL": "https://jenkins/job/hil/5/", "JOB_NAME": "hil", "BUILD_NUMBER": "5"},
     "https://jenkins/job/hil/5/"),
])
def test_the_executor_entry_links_to_the_ci_job_and_names_the_decision(env: dict[str, str], url: str) -> None:
    verdict = parse_verdict(GATE, "gate.json")
    doc = executor(ci_job(env), verdict=verdict)
    assert doc["buildUrl"] == url
    assert str(doc["buildName"]).endswith(": REJECT: com.hbs.hub.Container 1.0.0")
    assert doc["reportName"] == "HIL gate: REJECT: com.hbs.hub.Container 1.0.0"
