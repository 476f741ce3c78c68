"""The hub that the lab's own PDU and console tests power-cycle, held under its lease."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.inventory import load_inventory
from hil.lease import make_lease_store
from hil_lab.topology import LOOPBACK, PDU_PORT, HubSpec, hub_by_name, lab_inventory_path

PDU = f"http://{LOOPBACK}:{PDU_PORT}/cm"
ROOT = Path(__file__).resolve().parents[2]


def _test_hub() -> HubSpec:
    name = os.environ.get("HIL_LAB_TEST_HUB", "hub-03")
    hub = hub_by_name(name)
    if hub is None:
        raise ValueError(f"HIL_LAB_TEST_HUB={name!r} is not a lab hub name")
    return hub


HUB = _test_hub()


def hil_path() -> str:
    return shutil.which("hil") or str(Path(sys.executable).with_name("hil"))


def leased_running_hub() -> Iterator[None]:
    """Skip without a lab (or without HUB); else hold HUB's lease: these tests power-cycle it."""
    status = subprocess.run([hil_path(), "lab", "status"], capture_output=True, text=True, timeout=60,
                            check=False)
    if status.returncode != 0:
        pytest.skip(f"no virtual lab is up (`hil lab status`: {status.stdout.strip()[:120]})")
    if HUB.name not in status.stdout:
        pytest.skip(f"the running lab has no {HUB.name}")
    inventory = load_inventory(lab_inventory_path())
    lease = make_lease_store(inventory).acquire(HUB.name, timeout=inventory.timeouts.lease)
    try:
        yield
    finally:
        lease.release()
