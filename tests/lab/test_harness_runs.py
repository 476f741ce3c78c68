"""Whole pytest runs against the virtual lab: recovery, broken hubs, concurrent runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil.drivers.power import make_power
from hil.exitcodes import RunExit
from hil.inventory import load_inventory
from hil_lab.topology import PDU_PORT, lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = lab_inventory_path()
KNOWN_HOSTS = ROOT / "lab" / ".state" / "known_hosts"

if not KNOWN_HOSTS.is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)


pytestmark = [pytest.mark.lab, pytest.mark.slow]
INV = load_inventory(INVENTORY)


def _run(tmp: Path, tests: str, *args: str, inventory: Path = INVENTORY,
         env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    (tmp / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (tmp / "test_dut.py").write_text(textwrap.dedent(tests))
    run_env = {**os.environ, "HIL_REPORTS_DIR": str(tmp / "reports"), "HIL_RUN_ID": "lab", **(env or {})}
    # -p no:randomly: the child's tests are steps of one scenario, in file order
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-rs",
                           "--rootdir", str(tmp), "--devices", str(inventory), *args,
                           str(tmp / "test_dut.py")],
                          capture_output=True, text=True, cwd=tmp, env=run_env, timeout=900)
    results = tmp / "reports" / "run" / "lab" / "results.jsonl"
    rows = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    return proc, rows


def test_hub_powered_off_mid_run_is_recovered_and_later_tests_pass(tmp_path: Path) -> None:
    proc, rows = _run(tmp_path, """
        def test_1_power_goes_away(hub, power):
            power.off()
            hub.ssh.run(["true"])  # DeviceUnreachable: the hub is gone

        def test_2_after_recovery(hub):
            assert hub.ssh.run(["echo", "alive"]).stdout == "alive\\n"

        def test_3_still_fine(hub):
            assert hub.channels.shell().run(["true"]).ok
        """, "--device", "hub-03")
    by = {r["nodeid"].split("::")[1]: r for r in rows}
    assert by["test_1_power_goes_away[hub-03]"]["failure_class"] == "infrastructure", proc.stdout
    assert by["test_2_after_recovery[hub-03]"]["outcome"] == "passed", proc.stdout
    assert by["test_3_still_fine[hub-03]"]["outcome"] == "passed", proc.stdout


def test_unrecoverable_hub_is_skipped_as_infrastructure_others_pass(tmp_path: Path) -> None:
    victim = INV.devices["hub-02"]
    real_power = make_power(victim, INV.timeouts)
    doc = yaml.safe_load(INVENTORY.read_text())  # the checked-in file or a slot's generated one
    assert doc["devices"]["hub-02"]["power"]["url"] == f"http://127.0.0.1:{PDU_PORT}"
    doc["devices"]["hub-02"]["power"]["url"] = "http://127.0.0.1:9"  # a dead PDU
    text = yaml.safe_dump(doc, sort_keys=False)
    bad = ROOT / ".dead-pdu-devices.yaml"  # beside the original: relative paths keep working
    bad.write_text(text)
    real_power.off()  # left off, and the harness cannot switch it on
    try:
        proc, rows = _run(tmp_path, """
            def test_a(hub):
                assert hub.channels.shell().run(["true"]).ok

            def test_b(hub):
                assert hub.channels.shell().run(["true"]).ok
            """, "--device", "hub-01", "--device", "hub-02", inventory=bad)
    finally:
        bad.unlink()
        real_power.on()
    outcome = {(r["device"], r["nodeid"].split("::")[1].split("[")[0]): (r["outcome"], r["failure_class"])
               for r in rows}
    assert outcome[("hub-01", "test_a")] == ("passed", None), proc.stdout
    assert outcome[("hub-01", "test_b")] == ("passed", None), proc.stdout
    assert outcome[("hub-02", "test_a")] == ("skipped", "infrastructure"), proc.stdout
    assert outcome[("hub-02", "test_b")] == ("skipped", "infrastructure"), proc.stdout
    # never green on a dead rack: without --gate the run still does not exit 0
    assert proc.returncode == RunExit.DEVICES_UNAVAILABLE, proc.stdout
    assert "devices not available (infrastructure)" in proc.stdout and "hub-02: " in proc.stdout


def test_two_concurrent_runs_never_hold_the_same_hub(tmp_path: Path) -> None:
    tests = """
        import os, time

        def test_hold(hub):
            with open(os.environ["SPANS"], "a") as f:
                t0 = time.time(); time.sleep(1.0)
                f.write(f"{hub.name} {os.getpid()} {t0} {time.time()}\\n")
        """
    spans = tmp_path / "spans.txt"
    procs = []
    for i in range(2):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "conftest.py").write_text((ROOT / "conftest.py").read_text())
        (d / "test_dut.py").write_text(textwrap.dedent(tests))
        env = {**os.environ, "SPANS": str(spans), "HIL_REPORTS_DIR": str(d / "reports")}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(d), "--devices",
             str(INVENTORY), "--device", "hub-01", "--device", "hub-03", str(d / "test_dut.py")],
            cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
    rows = [ln.split() for ln in spans.read_text().splitlines()]
    assert len(rows) == 4
    for dev in ("hub-01", "hub-03"):
        (a_pid, a0, a1), (b_pid, b0, b1) = [(r[1], float(r[2]), float(r[3])) for r in rows if r[0] == dev]
        assert a_pid != b_pid
        assert a1 <= b0 or b1 <= a0, f"{dev} held by two runs at once"
