"""`hil lab down` leaves no container, network or volume behind; `hil lab up` brings it back.

Takes the SHARED lab down: marked ``lab_lifecycle`` (tests/lab/conftest.py runs it after
everything else) and skipped unless HIL_LAB_LIFECYCLE=1 (CI sets it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import docker
import pytest

from hil.drivers.ssh import SshConnection
from hil.errors import DeviceUnreachable
from hil.inventory import Inventory
from hil_lab.rack import SLOT_SELECTOR
from hil_lab.topology import NETWORK

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.lab_lifecycle]


def leftovers(client: docker.DockerClient) -> dict[str, list[str]]:
    selector = {"label": SLOT_SELECTOR}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=selector)],
        "networks": [n.name for n in client.networks.list(filters=selector)]
        + [n.name for n in client.networks.list(names=[NETWORK]) if n.name == NETWORK],
        "volumes": [v.name for v in client.volumes.list(filters=selector)],
    }


def test_down_removes_everything_and_up_brings_the_lab_back(
        lab_inventory: Inventory, hil_cli: Callable[..., Any]) -> None:
    client = docker.from_env()
    before = leftovers(client)
    assert before["containers"] and before["networks"] and before["volumes"], before
    unrelated = {c.id for c in client.containers.list(all=True)} - {
        c.id for c in client.containers.list(all=True, filters={"label": SLOT_SELECTOR})}

    t0 = time.monotonic()
    hil_cli("lab", "down", timeout=120)
    took_down = time.monotonic() - t0
    assert leftovers(client) == {"containers": [], "networks": [], "volumes": []}
    # "and nothing else": containers that are not the lab's are untouched
    assert unrelated <= {c.id for c in client.containers.list(all=True)}

    t0 = time.monotonic()
    # the rack the inventory describes (what `./hilw test` started): hardened, vulnerable and plain hubs
    hil_cli("lab", "up", "--with-vulnerable", "--with-plain", timeout=600)
    took_up = time.monotonic() - t0
    for name, dev in lab_inventory.devices.items():
        try:
            with SshConnection(name, dev.ssh, lab_inventory.timeouts) as ssh:
                assert ssh.run(["hostname"]).stdout.strip() == name
        except DeviceUnreachable as exc:
            raise AssertionError(f"{name} did not come back after `hil lab up`: {exc}") from None
    # figures, not a timed test (budgets: down < 15 s, warm up < 45 s; bench/lab_times.sh)
    print(f"hil lab down {took_down:.1f}s, warm hil lab up --with-vulnerable --with-plain {took_up:.1f}s")
