"""Device profiles: expect.services, its default, and its agreement with the blocks it names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hil.errors import InventoryError
from hil.inventory import GREENGRASS_ROOT, Service, load_inventory
from hil_lab.inventory_writer import CHECKED_IN

BROKER = ("broker: {ca_file: ca.pem, cert_file: h.pem, key_file: h.key}")
CONSOLE = 'console: {url: "socket://127.0.0.1:47101"}'


def _rack(tmp_path: Path, device: str) -> Path:
    p = tmp_path / "rack.yaml"
    p.write_text(textwrap.dedent("""\
        defaults:
          ssh: {user: hil, key_file: id, known_hosts: known_hosts}
        devices:
          hub-07:
        """) + textwrap.indent(textwrap.dedent(device), "    "))
    return p


def _services(tmp_path: Path, device: str) -> frozenset[Service]:
    return load_inventory(_rack(tmp_path, device)).devices["hub-07"].services


def test_omitted_services_are_derived_from_what_the_entry_describes(tmp_path: Path) -> None:
    assert _services(tmp_path, "ssh: {host: 192.0.2.7}\n") == {Service.SSH}
    assert _services(tmp_path, f"ssh: {{host: 192.0.2.7}}\n{CONSOLE}\nexpect: {{{BROKER}}}\n") == {
        Service.SSH, Service.CONSOLE, Service.MQTT_BROKER}  # never greengrass or docker unasked


def test_declared_services_are_taken_as_declared(tmp_path: Path) -> None:
    dev = load_inventory(_rack(tmp_path, "ssh: {host: 192.0.2.7}\nexpect: {services: [ssh, docker]}\n")
                         ).devices["hub-07"]
    assert dev.services == {Service.SSH, Service.DOCKER}
    assert dev.declares(Service.DOCKER) and not dev.declares(Service.GREENGRASS)
    assert dev.expect.greengrass_root == GREENGRASS_ROOT


@pytest.mark.parametrize(("device", "words"), [
    ("expect: {services: [docker]}", "must include 'ssh'"),
    ("expect: {services: [ssh, console]}", "declares 'console' but console is not set"),
    (f"{CONSOLE}\nexpect: {{services: [ssh]}}",
     "console is set but 'console' is not declared"),
    ("expect: {services: [ssh, mqtt_broker]}", "declares 'mqtt_broker' but expect.broker is not set"),
    (f"expect: {{services: [ssh], {BROKER}}}", "expect.broker is set but 'mqtt_broker' is not declared"),
    ("expect: {services: [ssh, nucleus]}", "Input should be 'ssh', 'console', 'greengrass', 'docker'"),
    ("expect: {greengrass_root: greengrass/v2}", "greengrass_root must be an absolute path"),
    ("recovery: [ssh, console]", "step 'console' needs a console block"),
    ("recovery: [power]", "step 'power' needs a power block"),
    ("recovery: [ssh, ssh]", "names a step twice"),
    ("recovery: []", "must name at least one step"),
    ("recovery: [reboot]", "Input should be 'ssh', 'console' or 'power'"),
])
def test_services_that_contradict_the_entry_name_device_and_field(tmp_path: Path, device: str,
                                                                  words: str) -> None:
    with pytest.raises(InventoryError) as exc:
        load_inventory(_rack(tmp_path, "ssh: {host: 192.0.2.7}\n" + device + "\n"))
    assert exc.value.device == "hub-07"
    assert exc.value.field is not None and exc.value.field.startswith(("expect.", "recovery"))
    assert words in str(exc.value)


def test_the_lab_inventory_declares_everything_its_hubs_run() -> None:
    inv = load_inventory(CHECKED_IN)
    declared = {d.name: d.services for d in inv.devices.values()}
    # the plain hub (lab/hil_lab/images/plain-hub) runs sshd and a broker only
    assert declared.pop("hub-plain") == {Service.SSH, Service.MQTT_BROKER}
    assert declared == {name: frozenset(Service) for name in declared}
