"""The promotion gate end to end: real `pytest ... --gate` sessions against the virtual lab.

Each session is a child pytest run from the checkout (tests/lab/gate_e2e_runs.py), with
its own reports folder, allure-results, JUnit XML and gate policy (tests/data/gate_e2e/);
the child holds the hubs' leases through the harness plugin. Checked each time: the
child's exit status and gate.json.

- good candidate (smoke, functional, latency on hub-01 + hub-02, -n 2) -> promote, exit 0,
  ledger appended; its one quarantined failing check is reported, not blocking (and the
  same results re-gated without the quarantine, or with it expired, are a reject);
- bad candidate (com.hbs.hub.Broken) -> reject, exit 1, the component named, class product;
- one hub powered off behind a dead PDU, policy requiring all hubs -> inconclusive, exit 2,
  class infrastructure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from gate_e2e_runs import (
    GOOD_HUBS,
    INVENTORY,
    QUARANTINED_CHECK,
    ROOT,
    GatedSession,
    gated_session,
    good_candidate_run,
)

from hil.drivers.power import make_power
from hil.factory import build_hub
from hil.inventory import load_inventory
from hil.lease import make_lease_store
from hil_lab.topology import PDU_PORT

if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HIL = Path(sys.executable).with_name("hil")
DEAD_PDU_URL = "http://127.0.0.1:9"  # discard port: nothing answers, power cannot be switched on
DEAD_HUB = "hub-03"
LIVE_HUB = "hub-02"
BAD_COMPONENT = "com.hbs.hub.Broken"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> GatedSession:
    return good_candidate_run(tmp_path_factory.getbasetemp() / "gate-good")


# -- a. good candidate ------------------------------------------------------------------------------

def test_good_candidate_is_promoted_exit_0_and_recorded_in_the_ledger(good: GatedSession) -> None:
    gate = good.gate
    assert good.proc.returncode == 0, good.output_tail()
    assert gate["decision"] == "promote" and gate["exit_code"] == 0, gate["reasons"]
    assert gate["blocking_failures"] == [], gate["blocking_failures"]
    # the candidate's identity, the harness revision and the inventory it ran against
    assert gate["candidate"]["components"] == {"com.hbs.hub.Container": "1.0.0"}, gate["candidate"]
    assert all(str(d).startswith("sha256:") for d in gate["candidate"]["images"].values()), gate["candidate"]
    assert gate["harness_git_revision"] and gate["run_id"] == "good"
    assert gate["inventory_sha256"] == hashlib.sha256(INVENTORY.read_bytes()).hexdigest()
    for suite in ("smoke", "functional", "latency"):
        outcome = gate["suites"][suite]
        assert outcome["required"] and outcome["outcome"] == "passed", (suite, outcome)
        passed_on = sorted(d for devs in outcome["devices_passed"].values() for d in devs)
        assert passed_on == GOOD_HUBS, (suite, outcome)
    assert {d for d, o in gate["devices"].items() if o["healthy"]} == set(GOOD_HUBS), gate["devices"]
    # per-device coverage: what ran on each hub; nothing required was left unrun
    for hub in GOOD_HUBS:
        checks = gate["devices"][hub]["checks"]
        assert any(c.startswith("suites/smoke/") and c.endswith(f"[{hub}]") for c in checks["passed"]), checks
        assert not [g for g in checks["skipped"] + checks["not_applicable"] if g["effect"] != "none"], checks
    assert gate["passes"]["coverage"]["effect"] == "none", gate["passes"]
    assert {r["metric"] for r in gate["latency"]} >= {"ssh_rtt", "mqtt_rtt", "http_rtt", "deployment_time"}
    assert all(r["verdict"] in ("within budget", "no budget") for r in gate["latency"]), gate["latency"]
    # the ledger: one line for this promotion, pointing at this very gate.json
    entries = [json.loads(x) for x in good.ledger.read_text().splitlines()]
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry["decision"] == "promote" and entry["run_id"] == "good"
    assert entry["gate_json_sha256"] == hashlib.sha256(good.gate_json.read_bytes()).hexdigest()
    assert entry["candidate"] == gate["candidate"]
    out = " ".join(good.proc.stdout.split())  # the terminal summary wraps long paths
    assert "gate decision written to" in out and "promotion recorded in" in out, good.output_tail(1500)
    print(f"good candidate session: {good.seconds:.0f} s")


def test_quarantined_failure_is_reported_but_does_not_block(good: GatedSession) -> None:
    gate = good.gate
    failed = [r for r in good.rows() if r["nodeid"].startswith(QUARANTINED_CHECK)]
    assert {r["outcome"] for r in failed} == {"failed"} and len(failed) == len(GOOD_HUBS), failed
    quarantined = gate["quarantined_failures"]
    assert {q["device"] for q in quarantined} == set(GOOD_HUBS), quarantined
    for q in quarantined:
        assert q["test"].startswith(QUARANTINED_CHECK) and q["failure_class"] == "product", q
        assert q["effect"] == "none" and q["why"].startswith("quarantined until 2099-12-31"), q
    assert any("quarantined failure(s) reported, not blocking" in r for r in gate["reasons"]), gate["reasons"]
    assert gate["decision"] == "promote"


def _regate(good: GatedSession, tmp_path: Path, quarantine: list[dict[str, object]]
            ) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    """`hil gate` on the good run's files with a changed quarantine list."""
    doc = yaml.safe_load(good.policy.read_text())
    doc["quarantine"] = quarantine
    tmp_path.mkdir(parents=True, exist_ok=True)
    policy = tmp_path / "gate.yaml"
    policy.write_text(yaml.safe_dump(doc))
    out = tmp_path / "gate.json"
    proc = subprocess.run([str(HIL), "gate", "--results", str(good.reports), "--run-id", "good",
                           "--policy", str(policy), "--out", str(out), "--devices", str(INVENTORY)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    gate: dict[str, object] = json.loads(out.read_text()) if out.is_file() else {}
    return proc, gate


def test_the_quarantined_check_blocks_without_its_quarantine_or_once_it_expired(
        good: GatedSession, tmp_path: Path) -> None:
    """The quarantine is what keeps the good run promotable: seen to fail without it."""
    proc, gate = _regate(good, tmp_path / "none", [])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert gate["decision"] == "reject"
    blocking = gate["blocking_failures"]
    assert isinstance(blocking, list) and {b["test"].split("[")[0] for b in blocking} == {
        f"{QUARANTINED_CHECK}::test_known_flaky_uptime_below_one_second"}, blocking
    expired = dt.date.today() - dt.timedelta(days=1)
    proc, gate = _regate(good, tmp_path / "expired", [
        {"test": f"{QUARANTINED_CHECK}::*", "reason": "was flaky", "expires": expired}])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    blocking = gate["blocking_failures"]
    assert isinstance(blocking, list) and blocking
    assert all("quarantine expired" in b["why"] for b in blocking), blocking
    assert not (tmp_path / "none" / "reports" / "ledger.jsonl").exists()


# -- b. bad candidate -------------------------------------------------------------------------------

def test_bad_candidate_is_rejected_exit_1_naming_the_component_as_product(tmp_path: Path) -> None:
    bad = gated_session(tmp_path / "bad", policy="policy_functional.yaml", run_id="bad", hubs=["hub-01"],
                        selection=["suites/functional"], extra=["--candidate", "candidates/bad"])
    gate = bad.gate
    assert bad.proc.returncode == 1, bad.output_tail()
    assert gate["decision"] == "reject" and gate["exit_code"] == 1, gate["reasons"]
    assert gate["candidate"]["components"] == {BAD_COMPONENT: "1.0.0"}, gate["candidate"]
    blocking = gate["blocking_failures"]
    assert blocking, gate
    for failure in blocking:
        assert failure["failure_class"] == "product" and failure["effect"] == "reject", failure
        assert failure["device"] == "hub-01" and failure["suites"] == ["functional"], failure
        assert f"{BAD_COMPONENT} BROKEN" in failure["message"], failure["message"]
    assert gate["suites"]["functional"]["outcome"] == "failed"
    assert gate["devices"]["hub-01"]["healthy"] is True  # the hub is fine: the candidate is not
    assert any(BAD_COMPONENT in r for r in gate["reasons"]), gate["reasons"]
    assert not bad.ledger.exists(), "a rejected candidate must not be recorded as promoted"
    print(f"bad candidate session: {bad.seconds:.0f} s")


# -- c. one hub dead and not recoverable ------------------------------------------------------------

def _power_under_lease(hub: str, on: bool) -> None:
    """Switch the hub's real outlet while holding its lease only for that long."""
    inv = load_inventory(INVENTORY)
    lease = make_lease_store(inv).acquire(hub, timeout=inv.timeouts.lease)
    try:
        device = inv.devices[hub]
        if not on:
            make_power(device, inv.timeouts).off()
            return
        make_power(device, inv.timeouts).on()
        live = build_hub(device, inv.timeouts)
        try:
            live.ensure_ready()  # back to healthy before anyone else gets the lease
        finally:
            live.close()
    finally:
        lease.release()


@pytest.fixture
def dead_hub_inventory() -> Iterator[Path]:
    """devices.yaml with DEAD_HUB's PDU pointing at nothing, and DEAD_HUB powered off.

    The copy sits beside devices.yaml so that its relative key/known_hosts paths work.
    Teardown powers the hub on through the real PDU (under its lease) and waits until healthy.
    """
    doc = yaml.safe_load(INVENTORY.read_text())  # the checked-in file or a slot's generated one
    power = doc["devices"][DEAD_HUB]["power"]
    assert power["url"] == f"http://127.0.0.1:{PDU_PORT}", f"{INVENTORY}: {DEAD_HUB} is not on the lab PDU"
    power["url"] = DEAD_PDU_URL
    dead = ROOT / f".gate-e2e-dead-pdu-{DEAD_HUB}.yaml"
    dead.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        _power_under_lease(DEAD_HUB, on=False)
        yield dead
    finally:
        dead.unlink(missing_ok=True)
        _power_under_lease(DEAD_HUB, on=True)


def test_dead_hub_with_all_hubs_required_is_inconclusive_exit_2_infrastructure(
        tmp_path: Path, dead_hub_inventory: Path) -> None:
    run = gated_session(tmp_path / "dead", policy="policy_all_hubs.yaml", run_id="dead",
                        hubs=[LIVE_HUB, DEAD_HUB], selection=["suites/smoke"], extra=["-n", "2"],
                        inventory=dead_hub_inventory)
    gate = run.gate
    assert run.proc.returncode == 2, run.output_tail()
    assert gate["decision"] == "inconclusive" and gate["exit_code"] == 2, gate["reasons"]
    meta = json.loads((run.run / "run.json").read_text())
    assert meta["broken_devices"] == [DEAD_HUB], (
        f"{DEAD_HUB} was not found broken (did someone power it back on meanwhile?): {meta}")
    blocking = gate["blocking_failures"]
    assert blocking, gate
    for failure in blocking:
        assert failure["failure_class"] == "infrastructure" and failure["effect"] == "inconclusive", failure
        assert failure["device"] == DEAD_HUB, failure
    assert gate["devices"][DEAD_HUB]["healthy"] is False, gate["devices"]
    live = gate["devices"][LIVE_HUB]
    assert live["healthy"] and live["outcome"] == "passed" and live["failed"] == 0, gate["devices"]
    assert any("min_healthy_devices: all" in r for r in gate["reasons"]), gate["reasons"]
    assert not any("product" in f["failure_class"] for f in blocking)
    assert not run.ledger.exists()
    print(f"dead hub session: {run.seconds:.0f} s")
