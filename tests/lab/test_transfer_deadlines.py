"""A hub that drops off the network mid-upload: the transfer fails within its bound.

`hil lab fault HUB cable-pull` disconnects the hub container from the lab network while a
large upload runs (as root into the staging root, the deployment's own path). The kernel keeps
the socket open and retransmits into the void; without TCP_USER_TIMEOUT and the per-byte bound
the worker would hang for the kernel's ~15 minutes of retransmissions. With them it gives up
within ``ssh_dead_peer`` (+ slack), long before the transfer's size-based deadline.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hil.deploy.snapshot import prepare_staging, staging_path
from hil.drivers.ssh import SshConnection
from hil.errors import DeviceUnreachable
from hil.inventory import Inventory
from hil.lease import Lease

ROOT = Path(__file__).resolve().parents[2]
HIL = str(Path(sys.executable).with_name("hil"))
pytestmark = [pytest.mark.lab]
HUB = "hub-03"
SLACK_S = 3.0


def _fault(*what: str) -> None:
    subprocess.run([HIL, "lab", "fault", HUB, *what], cwd=ROOT, check=True, capture_output=True, timeout=120)


def test_cable_pulled_mid_upload_fails_the_transfer_within_its_bound(
        lab_inventory: Inventory, hold_lease: Callable[[str], Lease], tmp_path: Path) -> None:
    hold_lease(HUB)
    timeouts = lab_inventory.timeouts
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(4 << 30)  # sparse: 4 GiB on the wire, nothing on this disk
    remote = staging_path("/var/lib/hil/staging", "cable-pull-test.bin")
    ssh = SshConnection(HUB, lab_inventory.devices[HUB].ssh, timeouts)
    ssh.connect()
    prepare_staging(ssh)
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            ssh.put(big, remote, sudo=True)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=upload, daemon=True)
    try:
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive(), f"the upload ended before the cable was pulled: {errors}"
        _fault("cable-pull")
        pulled = time.monotonic()
        worker.join(timeout=timeouts.ssh_dead_peer + 60)
        gave_up = time.monotonic() - pulled
        assert not worker.is_alive(), f"the upload still hangs {gave_up:.0f}s after the cable pull"
    finally:
        _fault("cable-plug")
    [err] = errors
    assert isinstance(err, DeviceUnreachable), repr(err)
    print(f"\ncable pulled mid-upload: the worker gave up after {gave_up:.1f}s (ssh_dead_peer "
          f"{timeouts.ssh_dead_peer:g}s; size-based deadline {timeouts.transfer(4 << 30):.0f}s): {err}")
    assert gave_up <= timeouts.ssh_dead_peer + SLACK_S
    # the hub is back: the same connection object reconnects and cleans up
    deadline = time.monotonic() + 60
    while True:
        try:
            ssh.run(["rm", "-f", "--", remote], sudo=True).check()
            break
        except DeviceUnreachable:
            assert time.monotonic() < deadline, "the hub did not come back after cable-plug"
            time.sleep(1)
    ssh.close()
