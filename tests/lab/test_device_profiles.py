"""The suites judge each hub by what its inventory entry declares (issue: device profiles).

Two real child runs of every suite (smoke, functional, latency, security; not the slow
power-cycling boot test) against lab hubs described by inventories that declare fewer
services than the hubs run: hub-01 declares only ``ssh``, hub-02 ``ssh`` and
``mqtt_broker`` (both without their console). Every check about an undeclared service
must be skipped as not applicable, by name; every other check must be judged (here: pass,
the hubs are hardened); nothing may be blamed on the product, the lab or the harness.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = lab_inventory_path()
if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PROFILES: dict[str, list[str]] = {"hub-01": ["ssh"], "hub-02": ["ssh", "mqtt_broker"]}

# A sample of checks per service, by name: each must be not applicable where its service is
# not declared (and judged where it is). Every other check is covered by the rules below:
# not applicable only for a service the hub does not declare, judged (and passed) otherwise.
CONSOLE = {
    "test_smoke.py::test_reachable_over_console",
    "test_i10_i6_secrets.py::test_console_asks_for_login",
    "test_i10_i6_secrets.py::test_no_secrets_in_boot_log",
}
GREENGRASS = {
    "test_smoke.py::test_nucleus_healthy",
    "test_i10_i6_secrets.py::test_no_secrets_in_greengrass_logs",
    "test_latency.py::test_deployment_time",
    "test_candidate.py::test_components_running_and_stay_running",
    "test_candidate.py::test_web_answers_http_200",
}
DOCKER = {
    "test_smoke.py::test_docker_engine_healthy",
    "test_i2_network.py::test_no_docker_api_on_tcp",
}
BROKER = {
    "test_i2_network.py::test_no_plaintext_mqtt",
    "test_latency.py::test_mqtt_publish_receive_round_trip",
    "test_i3_i7_broker.py::test_broker_accepts_valid_client_certificate",
}
SERVICES = ("ssh", "console", "greengrass", "docker", "mqtt_broker")


def _profile_inventory(target: Path) -> Path:
    """The lab's inventory with hub-01/hub-02 declaring fewer services (next to it: relative paths)."""
    doc: dict[str, Any] = yaml.safe_load(INVENTORY.read_text())
    devices = {}
    for name, services in PROFILES.items():
        entry = doc["devices"][name]
        entry["console"] = None
        entry["expect"] = {"services": services}
        if "mqtt_broker" not in services:
            entry["expect"]["broker"] = None
        devices[name] = entry
    doc["devices"] = devices
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


@pytest.fixture(scope="module")
def profile_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("profiles")
    inventory = _profile_inventory(INVENTORY.with_name(f"devices.profiles-{os.getpid()}.yaml"))
    env = {**os.environ, "HIL_REPORTS_DIR": str(tmp / "reports"), "HIL_RUN_ID": "profiles"}
    env.pop("HIL_CANDIDATE", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "suites", "-m", "not slow", "--devices", str(inventory),
             *[a for name in PROFILES for a in ("--device", name)], "-n", "2", "-q", "-rs"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    finally:
        inventory.unlink()
    rows = [json.loads(x) for x in (tmp / "reports" / "run" / "profiles" / "results.jsonl").read_text()
            .splitlines()]
    by_device: dict[str, dict[str, Any]] = {name: {} for name in PROFILES}
    for r in rows:
        dev = r["device"]
        test = r["nodeid"].split("/")[-1].replace(f"[{dev}]", "").replace(f"[{dev}-", "[")
        by_device[r["device"]][test] = r
    yield {"proc": {"out": proc.stdout[-4000:]}, **by_device}


@pytest.mark.parametrize("hub", list(PROFILES))
def test_undeclared_services_are_not_applicable_by_name(profile_run: dict[str, dict[str, Any]],
                                                       hub: str) -> None:
    rows = profile_run[hub]
    declared = set(PROFILES[hub])
    sample = CONSOLE | GREENGRASS | DOCKER | (set() if "mqtt_broker" in declared else BROKER)
    not_applicable = {t for t, r in rows.items() if r["disposition"] == "not_applicable"}
    assert sample <= not_applicable, (sample - not_applicable, profile_run["proc"]["out"])
    for test in not_applicable:
        msg = rows[test]["message"]
        assert msg.startswith(f"not applicable: {hub} does not declare service"), msg
        assert "(expect.services)" in msg, msg
        named = {s for s in SERVICES if f"'{s}'" in msg}
        assert named and not named & declared, msg  # names what is missing, never what is declared


@pytest.mark.parametrize("hub", list(PROFILES))
def test_every_applicable_check_is_judged_and_nothing_is_blamed(profile_run: dict[str, dict[str, Any]],
                                                                hub: str) -> None:
    rows = profile_run[hub]
    judged = {t: r["disposition"] for t, r in rows.items() if r["disposition"] != "not_applicable"}
    bad = {t: rows[t]["message"][:300] for t, d in judged.items() if d != "passed"}
    assert judged and not bad, bad
    assert not [r for r in rows.values() if r["failure_class"]], profile_run["proc"]["out"]
    if hub == "hub-02":  # the broker it declares is judged, not skipped
        assert set(judged) >= BROKER
