"""The latency suite against the lab: within budget on a healthy hub, over it with a slow network.

The fault (`hil lab fault HUB slow-network 200`) is injected from inside the inner pytest
session by a small plugin, so that the hub's lease - held by that session's ``hub``
machinery - covers the fault for its whole life; the outer test clears it again under
the lease afterwards, whatever happened. The delay applies to NEW connections only:
the MQTT and HTTP probes open theirs inside the test, the SSH probe rides the
harness's connection that predates the fault (it was nevertheless seen over budget
on the lab: not asserted either way).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hil.inventory import load_inventory
from hil.lease import make_lease_store
from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]
HUB = "hub-02"
HIL = str(Path(sys.executable).with_name("hil"))

FAULT_PLUGIN = """
import subprocess
import pytest

@pytest.fixture(scope="module", autouse=True)
def _slow_network(_hil_device):
    # _hil_device: the inner session holds the hub's lease while the fault is on
    name = _hil_device.name
    _hil_device.ensure_ready()  # the harness's SSH connection predates the fault
    subprocess.run([{hil!r}, "lab", "fault", name, "slow-network", "200"], check=True, cwd={root!r})
    yield
    subprocess.run([{hil!r}, "lab", "fault", name, "clear"], check=True, cwd={root!r})
"""


Rows = list[dict[str, Any]]


def run_suite(tmp: Path, *extra: str,
              fault: bool = False) -> tuple[subprocess.CompletedProcess[str], Rows, Rows]:
    env = {**os.environ, "HIL_REPORTS_DIR": str(tmp / "reports"), "HIL_RUN_ID": "lat"}
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs",
            "suites/latency", "-m", "latency and not slow", "--devices", str(lab_inventory_path()),
            "--device", HUB,
            "--candidate", "candidates/good", "--latency-samples", "100", "--latency-rate", "20", *extra]
    if fault:
        (tmp / "fault_plugin.py").write_text(textwrap.dedent(FAULT_PLUGIN).format(hil=HIL, root=str(ROOT)))
        env["PYTHONPATH"] = f"{tmp}{os.pathsep}{env.get('PYTHONPATH', '')}"
        args += ["-p", "fault_plugin"]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    run = tmp / "reports" / "run" / "lat"
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()] \
        if (run / "results.jsonl").exists() else []
    lat = [json.loads(x) for x in (run / "latency.jsonl").read_text().splitlines()] \
        if (run / "latency.jsonl").exists() else []
    return proc, rows, lat


def test_latency_suite_passes_on_a_healthy_hub(tmp_path: Path) -> None:
    proc, _rows, lat = run_suite(tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    metrics = {r["metric"] for r in lat if r["scope"] == "device"}
    assert metrics == {"ssh_rtt", "mqtt_rtt", "http_rtt", "deployment_time"}
    assert {r["metric"] for r in lat if r["scope"] == "rack"} == metrics
    assert all(r["within_budget"] for r in lat)
    assert (tmp_path / "reports" / "run" / "lat" / "latency" / "rack-mqtt_rtt.png").stat().st_size > 1000
    for r in lat:
        print(f"{r['scope']:6} {r['metric']:16} n={r['samples']} p50={r['p50_ms']} p95={r['p95_ms']} "
              f"p99={r['p99_ms']} ms")


def test_latency_suite_fails_its_budget_with_a_slow_network(tmp_path: Path) -> None:
    try:
        proc, rows, lat = run_suite(tmp_path, fault=True)
    finally:
        inv = load_inventory(lab_inventory_path())
        lease = make_lease_store(inv).acquire(HUB, timeout=600)
        try:
            subprocess.run([HIL, "lab", "fault", HUB, "clear"], cwd=ROOT, check=True, capture_output=True)
        finally:
            lease.release()
    assert proc.returncode == 1, proc.stdout[-4000:]
    by = {r["nodeid"].split("::")[1].split("[")[0]: r for r in rows}
    for name in ("test_mqtt_publish_receive_round_trip", "test_http_get_web_round_trip"):
        assert by[name]["outcome"] == "failed", by[name]
        assert by[name]["failure_class"] == "product"
        assert "budget" in by[name]["message"]
    # not asserted: ssh_rtt rides a connection opened before the fault, yet was seen over budget
    # too on the lab (open question, see the report)
    print("ssh_rtt under the fault:", by["test_ssh_command_round_trip"]["outcome"])
    slow = {r["metric"]: r for r in lat if r["scope"] == "device"}
    assert slow["mqtt_rtt"]["p50_ms"] >= 400 and not slow["mqtt_rtt"]["within_budget"]
    for r in lat:
        print(f"{r['scope']:6} {r['metric']:16} n={r['samples']} p50={r['p50_ms']} p95={r['p95_ms']} "
              f"p99={r['p99_ms']} ms")
