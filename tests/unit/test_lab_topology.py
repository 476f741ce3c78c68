from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from hil.inventory import load_inventory
from hil_lab.inventory_writer import CHECKED_IN, device_entry, write_inventory
from hil_lab.plain_hub import plain_device_entry
from hil_lab.topology import DEFAULT_HUBS, PLAIN_NAME, SLOT, SLOT_ENV, hub_by_name, rack

# The lab's names and numbers depend on the slot ($HIL_LAB_SLOT, read at import): the
# expectations below follow it, so the tests hold in whichever slot they run.
OCTET = 77 + SLOT
SHIFT = 1000 * SLOT
SUFFIX = "" if SLOT == 0 else f"-s{SLOT}"


def _rerun_in_slot_0(test: str) -> None:
    env = {**os.environ, SLOT_ENV: "0"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          f"{__file__}::{test}"], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stdout[-3000:]


def test_checked_in_inventory_matches_default_rack() -> None:
    if SLOT != 0:  # the checked-in devices.yaml describes slot 0
        _rerun_in_slot_0("test_checked_in_inventory_matches_default_rack")
        return
    devices = yaml.safe_load(CHECKED_IN.read_text())["devices"]
    expected = {h.name: device_entry(h) for h in rack(DEFAULT_HUBS, with_vulnerable=True)}
    expected[PLAIN_NAME] = plain_device_entry()  # listed, started with --with-plain
    assert devices == expected


def test_generated_inventory_loads_and_keeps_defaults(tmp_path: Path) -> None:
    target = write_inventory(rack(5, with_vulnerable=False), tmp_path / "devices.lab-5.yaml")
    written = yaml.safe_load(target.read_text())
    original = yaml.safe_load(CHECKED_IN.read_text())
    assert written["defaults"] == original["defaults"]
    assert list(written["devices"]) == ["hub-01", "hub-02", "hub-03", "hub-04", "hub-05"]
    assert written["devices"]["hub-05"]["ssh"]["host"] == f"172.28.{OCTET}.15"
    inventory = load_inventory(target)
    assert len(list(inventory.devices)) == 5


def test_names_outlets_and_ports() -> None:
    vuln = hub_by_name("hub-vuln")
    assert vuln is not None
    assert (vuln.address, vuln.outlet, vuln.console_port) == (f"172.28.{OCTET}.90", 90, 47190 + SHIFT)
    hub = hub_by_name("hub-02")
    assert hub is not None and (hub.name, hub.container, hub.console_url) == (
        "hub-02", f"hil-lab{SUFFIX}-hub-02", f"socket://127.0.0.1:{47102 + SHIFT}")
    assert hub_by_name("hub-2") is None and hub_by_name("router") is None


def test_another_slot_shifts_every_name_and_number() -> None:
    env = {**os.environ, SLOT_ENV: "3"}
    code = ("from hil_lab.topology import hub_by_name, NETWORK, PDU_PORT\n"
            "h = hub_by_name('hub-01')\n"
            "print(h.address, h.container, h.console_port, NETWORK, PDU_PORT)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["172.28.80.11", "hil-lab-s3-hub-01", "50101", "hil-lab-s3", "50080"]


def test_generated_inventory_with_the_plain_hub(tmp_path: Path) -> None:
    target = write_inventory(rack(1, with_vulnerable=False), tmp_path / "devices.x.yaml", plain=True)
    inventory = load_inventory(target)
    plain = inventory.devices[PLAIN_NAME]
    assert (plain.ssh.port, plain.ssh.user, plain.console, plain.power) == (2222, "qa", None, None)
    assert sorted(plain.services) == ["mqtt_broker", "ssh"]
    assert plain.expect.broker is not None and plain.expect.broker.port == 8884
    assert plain.expect.broker.foreign_cert_file is None and plain.expect.broker.expired_cert_file
    assert [d.name for d in inventory.select()] == ["hub-01"], "plain is excluded unless asked for"
