"""The checked-in devices.yaml is exactly the default `hil lab up --with-vulnerable` rack."""

from __future__ import annotations

from pathlib import Path

import yaml

from hil.inventory import load_inventory
from hil_lab.inventory_writer import CHECKED_IN, device_entry, write_inventory
from hil_lab.topology import DEFAULT_HUBS, hub_by_name, hub_by_outlet, rack


def test_checked_in_inventory_matches_default_rack() -> None:
    devices = yaml.safe_load(CHECKED_IN.read_text())["devices"]
    expected = {h.name: device_entry(h) for h in rack(DEFAULT_HUBS, with_vulnerable=True)}
    assert devices == expected


def test_generated_inventory_loads_and_keeps_defaults(tmp_path: Path) -> None:
    target = write_inventory(rack(5, with_vulnerable=False), tmp_path / "devices.lab-5.yaml")
    written = yaml.safe_load(target.read_text())
    original = yaml.safe_load(CHECKED_IN.read_text())
    assert written["defaults"] == original["defaults"]
    assert list(written["devices"]) == ["hub-01", "hub-02", "hub-03", "hub-04", "hub-05"]
    assert written["devices"]["hub-05"]["ssh"]["host"] == "172.28.77.15"
    inventory = load_inventory(target)
    assert len(list(inventory.devices)) == 5


def test_names_outlets_and_ports() -> None:
    vuln = hub_by_name("hub-vuln")
    assert vuln is not None and (vuln.address, vuln.outlet, vuln.console_port) == ("172.28.77.90", 90, 47190)
    hub = hub_by_outlet(2)
    assert hub is not None and (hub.name, hub.container, hub.console_url) == (
        "hub-02", "hil-lab-hub-02", "socket://127.0.0.1:47102")
    assert hub_by_name("hub-2") is None and hub_by_name("router") is None and hub_by_outlet(91) is None
