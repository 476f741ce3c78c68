"""The gate's decision on RECORDED result sets: real pytest runs of tests/data/gate."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from gate_recording import Recorded, record

from hil.gate.decision import Decision, decide
from hil.gate.evaluate import run_gate
from hil.gate.ledger import read_ledger
from hil.gate.policy import load_policy
from hil.gate.readers import ResultFiles, locate, read_run

DEVICES = {"hub-01": "virtual-pi4", "hub-02": "virtual-pi4"}
TODAY = dt.date(2026, 1, 15)
CANDIDATE = {"components": {"com.example.Telemetry": "1.4.0"},
             "images": {"registry.lab/telemetry:1.4.0": "sha256:" + "ab" * 32}}
QUARANTINE = {"test": "suites/functional/test_flaky.py::test_reconnect_after_broker_restart*",
              "reason": "broker restart races the client's backoff", "expires": "2026-02-01"}

_cache: dict[str, Recorded] = {}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    def get(scenario: str) -> Recorded:
        if scenario not in _cache:
            _cache[scenario] = record(tmp_path_factory.mktemp(scenario), scenario)
        return _cache[scenario]
    return get


def write_policy(d: Path, **over: Any) -> Path:
    doc: dict[str, Any] = {"required_suites": ["smoke", "functional", "security", "latency"],
                           "min_devices_per_model": {"default": 1}, "min_healthy_devices": "all",
                           "infrastructure": "requeue", "harness": "requeue",
                           "latency_budgets": {"ssh_rtt": {"p95_ms": 50, "p99_ms": 100}},
                           "quarantine": [], "ledger": "ledger.jsonl"}
    doc.update(over)
    path = d / f"gate-{len(list(d.glob('gate-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def run_folder(rec: Recorded, name: str = "r1", **meta: Any) -> Path:
    """The harness's run metadata next to the recorded results."""
    run = rec.root / "reports" / "run" / name
    run.mkdir(parents=True, exist_ok=True)
    doc = {"run_id": name, "finished": True, "git_revision": "0" * 40, "inventory_sha256": "f" * 64,
           "devices": [{"name": n, "model": m} for n, m in DEVICES.items()], **meta}
    (run / "run.json").write_text(json.dumps(doc), encoding="utf-8")
    (run / "candidate.json").write_text(json.dumps(CANDIDATE), encoding="utf-8")
    return run


def judge(rec: Recorded, tmp_path: Path, **policy: Any) -> Any:
    run_folder(rec)
    policy_file = write_policy(tmp_path, **policy)
    return decide(read_run(locate(rec.root / "reports", run_id="r1")), load_policy(policy_file), today=TODAY)


def test_good_candidate_is_promoted(recorded: Any, tmp_path: Path) -> None:
    rec = recorded("good")
    assert rec.exit_code == 0
    d = judge(rec, tmp_path)
    assert d.decision is Decision.PROMOTE, d.reasons
    assert d.exit_code == 0
    assert d.candidate == CANDIDATE
    assert d.harness_git_revision == "0" * 40 and d.inventory_sha256 == "f" * 64
    assert {s: so.outcome for s, so in d.suites.items() if so.required} == dict.fromkeys(
        ["smoke", "functional", "security", "latency"], "passed")
    assert d.suites["smoke"].devices_passed == {"virtual-pi4": ["hub-01", "hub-02"]}
    assert all(o.healthy for o in d.devices.values()) and set(d.devices) == set(DEVICES)


def test_product_failure_rejects_and_names_the_component(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("bad"), tmp_path)
    assert d.decision is Decision.REJECT and d.exit_code == 1
    [f] = d.blocking_failures
    assert f.failure_class == "product"
    assert f.device == "hub-01"
    assert f.test == "suites/functional/test_component.py::test_component_running[hub-01]"
    assert "com.example.Telemetry 1.4.0 is BROKEN" in f.message
    assert f.allure_uuid
    assert d.suites["functional"].outcome == "failed"
    assert d.devices["hub-01"].outcome == "failed" and d.devices["hub-02"].outcome == "passed"


def test_lost_hub_is_inconclusive_under_requeue(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("infra"), tmp_path)
    assert d.decision is Decision.INCONCLUSIVE and d.exit_code == 2
    assert {f.failure_class for f in d.blocking_failures} == {"infrastructure"}
    assert {f.device for f in d.blocking_failures} == {"hub-02"}
    assert not d.devices["hub-02"].healthy and d.devices["hub-01"].healthy
    assert any("1 healthy device(s), the policy needs 2" in r for r in d.reasons)


def test_lost_hub_rejects_when_infrastructure_blocks(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("infra"), tmp_path, infrastructure="block")
    assert d.decision is Decision.REJECT


def test_lost_hub_tolerated_when_enough_devices_remain(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("infra"), tmp_path, infrastructure="tolerate", min_healthy_devices=1)
    assert d.decision is Decision.PROMOTE, d.reasons
    assert not d.blocking_failures and {f.device for f in d.other_failures} == {"hub-02"}
    # the same, but the policy wants two devices of the model to pass: not enough evidence
    d = judge(recorded("infra"), tmp_path, infrastructure="tolerate", min_healthy_devices=1,
              min_devices_per_model={"default": 2})
    assert d.decision is Decision.INCONCLUSIVE
    assert any("1 device(s) of model virtual-pi4 passed, the policy needs 2" in r for r in d.reasons)


def test_quarantined_failure_is_reported_not_blocking(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("flaky"), tmp_path, quarantine=[QUARANTINE])
    assert d.decision is Decision.PROMOTE, d.reasons
    [q] = d.quarantined_failures
    assert q.device == "hub-02" and "quarantined until 2026-02-01" in q.why
    assert any("1 quarantined failure(s)" in r for r in d.reasons)


def test_expired_quarantine_blocks_again(recorded: Any, tmp_path: Path) -> None:
    expired = {**QUARANTINE, "expires": "2026-01-10"}
    d = judge(recorded("flaky"), tmp_path, quarantine=[expired])
    assert d.decision is Decision.REJECT
    [f] = d.blocking_failures
    assert "quarantine expired on 2026-01-10" in f.why


def test_unquarantined_flaky_failure_rejects(recorded: Any, tmp_path: Path) -> None:
    assert judge(recorded("flaky"), tmp_path).decision is Decision.REJECT


def test_harness_failure_is_inconclusive_unless_policy_blocks(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("harness"), tmp_path)
    assert d.decision is Decision.INCONCLUSIVE, d.reasons
    assert {f.failure_class for f in d.blocking_failures} == {"harness"}
    assert judge(recorded("harness"), tmp_path, harness="block").decision is Decision.REJECT


def test_not_required_suite_does_not_block(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("bad"), tmp_path, required_suites=["smoke", "security", "latency"])
    assert d.decision is Decision.PROMOTE, d.reasons
    assert [f.why for f in d.other_failures] == ["not in a required suite"]


def test_partial_run_is_inconclusive(recorded: Any, tmp_path: Path) -> None:
    rec = recorded("good")
    run_folder(rec, "partial", finished=False)
    d = decide(read_run(locate(rec.root / "reports", run_id="partial")),
               load_policy(write_policy(tmp_path)), today=TODAY)
    assert d.decision is Decision.INCONCLUSIVE
    assert "the run did not finish (partial results)" in d.reasons


def test_no_results_is_inconclusive(tmp_path: Path) -> None:
    run = tmp_path / "reports" / "run" / "empty"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"finished": true}')
    d = decide(read_run(locate(tmp_path / "reports")), load_policy(write_policy(tmp_path)), today=TODAY)
    assert d.decision is Decision.INCONCLUSIVE
    assert "no test results were found" in d.reasons


def test_missing_device_counts_as_unhealthy(recorded: Any, tmp_path: Path) -> None:
    rec = recorded("good")
    run_folder(rec, "three", devices=[{"name": "hub-01"}, {"name": "hub-02"}, {"name": "hub-03"}])
    d = decide(read_run(locate(rec.root / "reports", run_id="three")),
               load_policy(write_policy(tmp_path)), today=TODAY)
    assert d.decision is Decision.INCONCLUSIVE
    assert d.devices["hub-03"].note == "no results from this device"


# -- each source alone ------------------------------------------------------------------------

def test_junit_alone_gives_the_same_decisions(recorded: Any, tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path))
    for scenario, want in (("good", Decision.PROMOTE), ("bad", Decision.REJECT),
                           ("infra", Decision.INCONCLUSIVE)):
        run = read_run(ResultFiles(None, None, [recorded(scenario).junit]), inventory_devices=DEVICES)
        assert {r.source for r in run.records} == {"junit"}
        d = decide(run, policy, today=TODAY, selected_devices=DEVICES)
        assert d.decision is want, (scenario, d.reasons)
    run = read_run(ResultFiles(None, None, [recorded("infra").junit]), inventory_devices=DEVICES)
    infra = [r for r in run.records if r.device == "hub-02" and r.failure_class]
    # a raised DeviceUnreachable and a "[infrastructure]" skip are both the lab's
    assert {str(r.failure_class) for r in infra} == {"infrastructure"} and len(infra) == 3


def test_allure_alone_gives_the_same_decisions(recorded: Any, tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path))
    for scenario, want in (("good", Decision.PROMOTE), ("bad", Decision.REJECT),
                           ("infra", Decision.INCONCLUSIVE), ("harness", Decision.INCONCLUSIVE)):
        run = read_run(ResultFiles(None, recorded(scenario).allure, []), inventory_devices=DEVICES)
        assert {r.source for r in run.records} == {"allure"}
        d = decide(run, policy, today=TODAY, selected_devices=DEVICES)
        assert d.decision is want, (scenario, d.reasons)
    run = read_run(ResultFiles(None, recorded("good").allure, []))
    assert {r.nodeid for r in run.records} >= {"suites/smoke/test_reach.py::test_ssh_answers[hub-01]"}
    assert {s for r in run.records for s in r.suites} == {"smoke", "functional", "security", "latency"}


def test_harness_jsonl_lines_are_read_and_merged_with_allure(recorded: Any, tmp_path: Path) -> None:
    """The plugin's results.jsonl (fixtures/hil_pytest/outcomes.py format) is the primary source."""
    rec = recorded("bad")
    run = run_folder(rec, "jsonl")
    allure = {r.nodeid: r for r in read_run(ResultFiles(None, rec.allure, [])).records}
    lines = []
    for nodeid, r in allure.items():
        lines.append({"run_id": "jsonl", "nodeid": nodeid, "when": "call", "outcome": str(r.outcome),
                      "device": r.device, "failure_class": "product" if r.outcome == "failed" else None,
                      "duration_s": 0.01, "message": "[product] " + r.message if r.message else ""})
    text = "\n".join(json.dumps(x) for x in lines) + '\n{"nodeid": "cut sho'  # a killed run's last line
    (run / "results.jsonl").write_text(text)
    res = read_run(locate(rec.root / "reports", run_id="jsonl"))
    assert {r.source for r in res.records} == {"jsonl"}
    assert any("not JSON" in w for w in res.warnings)
    bad = next(r for r in res.records if r.outcome == "failed")
    assert bad.allure_uuid and bad.device == "hub-01" and "functional" in bad.suites
    assert decide(res, load_policy(write_policy(tmp_path)), today=TODAY).decision is Decision.REJECT


def test_latency_over_budget_rejects(recorded: Any, tmp_path: Path) -> None:
    rec = recorded("good")
    run = run_folder(rec, "slow")
    (run / "latency.jsonl").write_text(
        json.dumps({"metric": "ssh_rtt", "device": "hub-01", "p95_ms": 63.2, "p99_ms": 80.0, "samples": 1000})
        + "\n" + json.dumps({"metric": "ssh_rtt", "device": "hub-02", "p95_ms": 3.0, "p99_ms": 4.0}) + "\n")
    d = decide(read_run(locate(rec.root / "reports", run_id="slow")), load_policy(write_policy(tmp_path)),
               today=TODAY)
    assert d.decision is Decision.REJECT
    [f] = d.blocking_failures
    assert f.device == "hub-01" and "p95 63.2 ms > 50 ms" in f.message
    assert [row["verdict"] for row in d.latency] == ["over budget: p95 63.2 ms > 50 ms", "within budget"]


# -- gate.json, ledger ----------------------------------------------------------------------

def test_ledger_appended_only_on_promote(recorded: Any, tmp_path: Path) -> None:
    policy = write_policy(tmp_path)
    ledger = tmp_path / "ledger.jsonl"
    for scenario in ("good", "bad", "infra", "good"):
        rec = recorded(scenario)
        run_folder(rec)
        out = tmp_path / f"gate-{scenario}.json"
        gr = run_gate(results=rec.root / "reports", run_id="r1", policy_file=policy, out=out,
                      report_dir=None, today=TODAY)
        assert json.loads(out.read_text())["exit_code"] == gr.decision.exit_code
    entries = read_ledger(ledger)
    assert len(entries) == 2
    good = (tmp_path / "gate-good.json").read_bytes()
    assert entries[-1]["gate_json_sha256"] == hashlib.sha256(good).hexdigest()
    assert entries[-1]["candidate"] == CANDIDATE and entries[-1]["decision"] == "promote"
    assert entries[-1]["harness_git_revision"] == "0" * 40


def test_gate_json_carries_no_secret(recorded: Any, tmp_path: Path) -> None:
    from hil.redact import register_secret

    register_secret("planted-console-pw-42")
    rec = recorded("secret")
    run_folder(rec)
    out = tmp_path / "gate.json"
    gr = run_gate(results=rec.root / "reports", run_id="r1", policy_file=write_policy(tmp_path), out=out,
                  report_dir=None)
    assert gr.decision.decision is Decision.REJECT
    text = out.read_text()
    assert "world-readable key /home/pi/id_ed25519" in text  # the failure is there ...
    for planted in ("planted-console-pw-42", "b3BlbnNzaC1rZXktdjEAAAAPLANTED"):
        assert planted not in text  # ... its secrets are not
    json.loads(text)


# -- coverage: a required check that did not run ------------------------------------------------

GAP_CHECK = "suites/security/test_tls.py::test_broker_refuses_foreign_client"
WAIVER = {"check": f"{GAP_CHECK}*", "model": "virtual-pi4",
          "reason": "gateways of this model run no broker (devices.yaml expect.services)",
          "expires": "2026-06-30"}


def test_required_check_skipped_without_a_waiver_is_not_promoted(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("gap"), tmp_path)
    assert d.decision is Decision.INCONCLUSIVE, d.reasons
    [reason] = [r for r in d.reasons if r.startswith("coverage:")]
    assert "on hub-02 (model virtual-pi4)" in reason and f"{GAP_CHECK}[hub-02]" in reason
    assert "devices.yaml has no expect.broker" in reason  # the skip's own reason, as recorded
    assert d.passes["coverage"].effect == "inconclusive" and d.passes["failures"].effect == "none"
    hub2 = d.devices["hub-02"]
    assert hub2.outcome == "incomplete" and hub2.healthy and hub2.skipped == 1
    [gap] = hub2.checks.skipped
    assert gap.check == f"{GAP_CHECK}[hub-02]" and gap.required and gap.waiver is None
    assert gap.effect == "inconclusive" and gap.disposition == "skipped"
    assert f"{GAP_CHECK}[hub-01]" in d.devices["hub-01"].checks.passed
    assert d.devices["hub-01"].outcome == "passed"


def test_a_valid_waiver_for_the_model_lets_it_promote(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("gap"), tmp_path, waivers=[WAIVER])
    assert d.decision is Decision.PROMOTE, d.reasons
    [gap] = d.devices["hub-02"].checks.skipped
    assert gap.effect == "none" and gap.waiver is not None and gap.waiver["model"] == "virtual-pi4"
    assert gap.why.startswith("waived until 2026-06-30")
    assert d.devices["hub-02"].outcome == "passed"


def test_a_waiver_for_another_model_does_not_apply(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("gap"), tmp_path, waivers=[{**WAIVER, "model": "rpi5-gateway"}])
    assert d.decision is Decision.INCONCLUSIVE, d.reasons


def test_an_expired_waiver_blocks_again_and_is_named(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("gap"), tmp_path, waivers=[{**WAIVER, "expires": "2026-01-14"}])
    assert d.decision is Decision.INCONCLUSIVE, d.reasons
    [reason] = [r for r in d.reasons if "expired" in r]
    assert f"the waiver of '{GAP_CHECK}*' for model virtual-pi4 expired on 2026-01-14" in reason
    assert f"{GAP_CHECK}[hub-02] did not run on hub-02" in reason
    [gap] = d.devices["hub-02"].checks.skipped
    assert gap.effect == "inconclusive" and gap.why == "its waiver expired on 2026-01-14"
    # a valid waiver next to the expired one wins
    d = judge(recorded("gap"), tmp_path, waivers=[{**WAIVER, "expires": "2026-01-14"}, WAIVER])
    assert d.decision is Decision.PROMOTE, d.reasons


def test_a_waiver_never_excuses_a_failure(recorded: Any, tmp_path: Path) -> None:
    waiver = {**WAIVER, "check": "suites/functional/test_component.py::*"}
    assert judge(recorded("bad"), tmp_path, waivers=[waiver]).decision is Decision.REJECT


def test_a_skip_outside_the_required_suites_does_not_count(recorded: Any, tmp_path: Path) -> None:
    d = judge(recorded("gap"), tmp_path, required_suites=["smoke", "functional", "latency"])
    assert d.decision is Decision.PROMOTE, d.reasons
    [gap] = d.devices["hub-02"].checks.skipped
    assert not gap.required and gap.why == "not in a required suite"


def _recorded_jsonl(rec: Recorded) -> list[dict[str, Any]]:
    path = rec.root / "reports" / "run" / "recorded" / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _jsonl_run(rec: Recorded, name: str, rows: list[dict[str, Any]]) -> Path:
    run = run_folder(rec, name)
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_not_applicable_checks_count_like_skips_and_are_listed_as_such(recorded: Any, tmp_path: Path) -> None:
    """results.jsonl's ``disposition`` (the device-profile contract): not_applicable on hub-02."""
    rec = recorded("gap")
    rows = _recorded_jsonl(rec)
    for row in rows:
        if row["nodeid"] == f"{GAP_CHECK}[hub-02]":
            row.update(disposition="not_applicable", failure_class=None,
                       message="hub-02 does not declare mqtt_broker (devices.yaml expect.services)")
    _jsonl_run(rec, "na", rows)
    policy = write_policy(tmp_path)
    d = decide(read_run(locate(rec.root / "reports", run_id="na")), load_policy(policy), today=TODAY)
    assert d.decision is Decision.INCONCLUSIVE, d.reasons
    hub2 = d.devices["hub-02"]
    assert hub2.not_applicable == 1 and hub2.skipped == 0 and not hub2.checks.skipped
    [gap] = hub2.checks.not_applicable
    assert gap.disposition == "not_applicable" and "does not declare mqtt_broker" in gap.reason
    assert d.suites["security"].not_applicable == 1
    assert any("not applicable: hub-02 does not declare mqtt_broker" in r for r in d.reasons), d.reasons
    d = decide(read_run(locate(rec.root / "reports", run_id="na")),
               load_policy(write_policy(tmp_path, waivers=[WAIVER])), today=TODAY)
    assert d.decision is Decision.PROMOTE, d.reasons


def test_failure_class_comes_from_the_record_not_the_message(recorded: Any, tmp_path: Path) -> None:
    rec = recorded("good")
    rows = _recorded_jsonl(rec)
    target = next(r for r in rows if r["nodeid"].endswith("test_ssh_answers[hub-01]"))
    # a product failure whose message merely looks like a lab problem stays the product's ...
    target.update(outcome="failed", disposition="failed", failure_class="product",
                  message="[infrastructure] DeviceUnreachable: hub-01 did not answer")
    _jsonl_run(rec, "typed", rows)
    d = decide(read_run(locate(rec.root / "reports", run_id="typed")),
               load_policy(write_policy(tmp_path)), today=TODAY)
    assert d.decision is Decision.REJECT and d.blocking_failures[0].failure_class == "product"
    # ... and a failure that carries no class is not blamed on the product
    target.update(failure_class=None, message="AssertionError: assert 1 == 2")
    _jsonl_run(rec, "untyped", rows)
    d = decide(read_run(locate(rec.root / "reports", run_id="untyped")),
               load_policy(write_policy(tmp_path)), today=TODAY)
    assert d.decision is Decision.INCONCLUSIVE and d.blocking_failures[0].failure_class == "harness"


def test_gate_json_lists_each_devices_checks(recorded: Any, tmp_path: Path) -> None:
    rec = recorded("gap")
    run_folder(rec)
    out = tmp_path / "gate.json"
    run_gate(results=rec.root / "reports", run_id="r1", policy_file=write_policy(tmp_path, waivers=[WAIVER]),
             out=out, report_dir=None, today=TODAY)
    doc = json.loads(out.read_text())
    assert doc["gate_json_version"] == 2 and doc["decision"] == "promote"
    checks = doc["devices"]["hub-02"]["checks"]
    assert set(checks) == {"passed", "failed", "skipped", "not_applicable"}
    assert "suites/smoke/test_reach.py::test_ssh_answers[hub-02]" in checks["passed"]
    [gap] = checks["skipped"]
    assert gap["check"] == f"{GAP_CHECK}[hub-02]" and gap["effect"] == "none"
    assert gap["waiver"] == {"check": WAIVER["check"], "model": "virtual-pi4", "reason": WAIVER["reason"],
                             "expires": "2026-06-30"}
    assert {p: v["effect"] for p, v in doc["passes"].items()} == {
        "failures": "none", "candidate": "none", "latency": "none", "ml": "none", "coverage": "none",
        "device_health": "none",
        "suites": "none", "completeness": "none"}


def test_sboms_of_the_run_are_kept_with_gate_json(recorded: Any, tmp_path: Path) -> None:
    from hil.software.sbom import OsRelease, Package, Subject, build_sbom, write_sbom

    rec = recorded("good")
    run = run_folder(rec, "sboms")
    os12 = OsRelease(id="debian", version_id="12")
    write_sbom(build_sbom(Subject("hub", "hub-01", "Debian 12"), [Package("bash", "5.2.15-2+b13")], os12),
               run / "sbom" / "hub-01.os.cdx.json")
    write_sbom(build_sbom(Subject("image", "registry.lab:5000/hil/db:1.0", "sha256:" + "cd" * 32), [], os12,
                          package_db=False), run / "sbom" / "image-db.cdx.json")
    out = tmp_path / "out" / "gate.json"
    run_gate(results=rec.root / "reports", run_id="sboms", policy_file=write_policy(tmp_path), out=out,
             report_dir=None, today=TODAY)
    doc = json.loads(out.read_text())
    sboms = {s["subject"]: s for s in doc["evidence"]["sboms"]}
    assert set(sboms) == {"hub-01", "registry.lab:5000/hil/db:1.0"}
    hub = sboms["hub-01"]
    assert hub["kind"] == "hub" and hub["components"] == 1 and hub["file"] == "gate.sbom/hub-01.os.cdx.json"
    kept = out.parent / hub["file"]
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == hub["sha256"]
    assert kept.read_bytes() == (run / "sbom" / "hub-01.os.cdx.json").read_bytes()
    assert sboms["registry.lab:5000/hil/db:1.0"]["version"] == "sha256:" + "cd" * 32
