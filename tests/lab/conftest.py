"""Shared helpers for tests against the running virtual lab (`hil lab up --with-vulnerable`).

- ``lab_inventory``: devices.yaml, loaded once; skips the test when no lab is up.
- ``hold_lease``: ``hold_lease("hub-02")`` takes the hub's lease (as the harness does) and
  releases it at teardown; tests that power-cycle, fault or deploy to a hub must hold it.
- ``hil_cli``: run the ``hil`` CLI as a subprocess (the user's path).
- ``lab_lifecycle`` marker: tests that take the lab down run after everything else, and
  only when ``HIL_LAB_LIFECYCLE=1`` (CI), never in a shared interactive run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from hil.inventory import Inventory, load_inventory
from hil.lease import Lease, make_lease_store
from hil_lab.rack import SLOT_SELECTOR
from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = lab_inventory_path()
STATE = ROOT / "lab" / ".state"
HIL = Path(sys.executable).with_name("hil")
LIFECYCLE_ENV = "HIL_LAB_LIFECYCLE"

HilCli = Callable[..., subprocess.CompletedProcess[str]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"lab_lifecycle: takes the whole lab down and up; runs last, only with {LIFECYCLE_ENV}=1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Lifecycle tests go last (stable order otherwise) and are skipped unless asked for."""
    last = [it for it in items if it.get_closest_marker("lab_lifecycle")]
    if not last:
        return
    items[:] = [it for it in items if not it.get_closest_marker("lab_lifecycle")] + last
    if os.environ.get(LIFECYCLE_ENV) != "1":
        skip = pytest.mark.skip(reason=f"takes the shared lab down: set {LIFECYCLE_ENV}=1 (CI does)")
        for it in last:
            it.add_marker(skip)


def _lab_hubs_running() -> str | None:
    """None when the lab's hubs run, else why not."""
    if not (STATE / "known_hosts").is_file():
        return "virtual lab not built (no lab/.state/known_hosts): run `hil lab up --with-vulnerable`"
    try:
        client = docker.from_env(timeout=10)
        hubs = client.containers.list(all=True, filters={"label": [*SLOT_SELECTOR, "hil-lab.role=hub"]})
    except docker.errors.DockerException as exc:
        return f"no Docker engine answers ({exc}): no virtual lab is up"
    if not hubs:
        return "no virtual lab is up (`hil lab up --with-vulnerable` starts one)"
    return None


@pytest.fixture(scope="session")
def lab_inventory() -> Inventory:
    why = _lab_hubs_running()
    if why:
        pytest.skip(why)
    return load_inventory(INVENTORY)


@pytest.fixture
def hold_lease(lab_inventory: Inventory) -> Iterator[Callable[[str], Lease]]:
    """Factory: take a hub's lease for the rest of the test (released at teardown, last)."""
    store = make_lease_store(lab_inventory)
    held: list[Lease] = []

    def take(name: str) -> Lease:
        lease = store.acquire(name, timeout=lab_inventory.timeouts.lease)
        held.append(lease)
        return lease

    yield take
    for lease in reversed(held):
        lease.release()


@pytest.fixture(scope="session")
def hil_cli() -> HilCli:
    def run(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(HIL), *args], capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"`hil {' '.join(args)}` exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    return run
