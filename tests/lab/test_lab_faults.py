"""`hil lab fault` (the user's path: the CLI as a subprocess) does to a hub what the harness's
reliability tests expect, seen through the harness's own drivers. Every test holds the hub's
lease and clears the fault in teardown.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hil.drivers.console import SerialConsole
from hil.drivers.ssh import SshConnection
from hil.errors import CommandTimeout, DeviceUnreachable
from hil.inventory import Device, Inventory
from hil.lease import Lease
from hil.timeouts import Timeouts

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HUB = os.environ.get("HIL_LAB_FAULT_HUB", "hub-02")
CONNECT = 3.0
"""Connect timeout for probes while a fault is active: long enough for a healthy hub (ms)."""


def quick(inv: Inventory) -> Timeouts:
    return inv.timeouts.model_copy(update={"ssh_connect": CONNECT})


def wait_ssh(dev: Device, inv: Inventory, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with SshConnection(dev.name, dev.ssh, quick(inv)) as ssh:
                ssh.run(["true"], timeout=10).check()
            return
        except DeviceUnreachable as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{dev.name}: SSH not back within {timeout:g}s: {exc}") from None
            time.sleep(0.3)


def banner_seconds(host: str) -> float:
    """A NEW TCP connection's round trip: connect until sshd's first banner bytes arrive."""
    t0 = time.perf_counter()
    with socket.create_connection((host, 22), timeout=10) as sock:
        sock.settimeout(10)
        assert sock.recv(64).startswith(b"SSH-")
    return time.perf_counter() - t0


def median_banner(host: str, n: int = 5) -> float:
    return statistics.median(banner_seconds(host) for _ in range(n))


@pytest.fixture
def faulty(lab_inventory: Inventory, hold_lease: Callable[[str], Lease],
           hil_cli: Callable[..., Any]) -> Iterator[Device]:
    """The hub under its lease; whatever a test did, `hil lab fault HUB clear` and SSH back."""
    hold_lease(HUB)
    dev = lab_inventory.devices[HUB]
    wait_ssh(dev, lab_inventory, lab_inventory.timeouts.boot)
    yield dev
    hil_cli("lab", "fault", HUB, "clear")
    wait_ssh(dev, lab_inventory, 60)


def test_cable_pull_makes_ssh_unreachable_and_plug_restores_same_address(
        faulty: Device, lab_inventory: Inventory, hil_cli: Callable[..., Any]) -> None:
    inv = lab_inventory
    hil_cli("lab", "fault", HUB, "cable-pull")
    t0 = time.monotonic()
    with pytest.raises(DeviceUnreachable):
        SshConnection(HUB, faulty.ssh, quick(inv)).connect()
    assert time.monotonic() - t0 < CONNECT + 2
    hil_cli("lab", "fault", HUB, "cable-plug")
    wait_ssh(faulty, inv, 30)
    # the same address, and the same host (the pinned host key was accepted)
    with SshConnection(HUB, faulty.ssh, inv.timeouts) as ssh:
        addrs = ssh.run(["ip", "-4", "-o", "addr", "show"]).check().stdout
    assert f" {faulty.ssh.host}/24 " in addrs, addrs


def test_hang_makes_ssh_time_out_and_clear_brings_it_back(
        faulty: Device, lab_inventory: Inventory, hil_cli: Callable[..., Any]) -> None:
    inv = lab_inventory
    with SshConnection(HUB, faulty.ssh, quick(inv)) as ssh:
        assert ssh.run(["true"]).ok
        hil_cli("lab", "fault", HUB, "hang")
        # the open connection: nothing answers; the driver waits out its timeout (then its
        # reconnect attempt times out too: DeviceUnreachable), it is never refused at once
        t0 = time.monotonic()
        with pytest.raises((CommandTimeout, DeviceUnreachable)):
            ssh.run(["true"], timeout=2)
        assert time.monotonic() - t0 >= 1.9
    # a new connection: the kernel still accepts TCP, the frozen sshd never says hello
    t0 = time.monotonic()
    with pytest.raises(DeviceUnreachable):
        SshConnection(HUB, faulty.ssh, quick(inv)).connect()
    assert time.monotonic() - t0 >= CONNECT * 0.9, "refused at once: that is not a hang"
    hil_cli("lab", "fault", HUB, "clear")
    wait_ssh(faulty, inv, 30)


def test_kill_sshd_refuses_ssh_while_the_console_still_works(
        faulty: Device, lab_inventory: Inventory, hil_cli: Callable[..., Any]) -> None:
    inv = lab_inventory
    hil_cli("lab", "fault", HUB, "kill-sshd")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((faulty.ssh.host, 22), timeout=CONNECT).close()
    with pytest.raises(DeviceUnreachable, match="refused"):
        SshConnection(HUB, faulty.ssh, quick(inv)).connect()
    assert faulty.console is not None
    with SerialConsole(HUB, faulty.console, inv.timeouts) as con:
        con.login()
        res = con.run(["pgrep", "-x", "sshd"])
        assert res.exit_status == 1  # the console shell sees what SSH cannot: no sshd
        assert con.run(["hostname"]).stdout.strip() == HUB
        con.send("exit\r")  # leave no session behind
    hil_cli("lab", "fault", HUB, "clear")
    wait_ssh(faulty, inv, 30)


def test_slow_network_delays_new_connections_and_clear_restores(
        faulty: Device, hil_cli: Callable[..., Any]) -> None:
    host = faulty.ssh.host
    before = median_banner(host)
    hil_cli("lab", "fault", HUB, "slow-network", "200")
    slowed = median_banner(host)
    assert slowed - before >= 0.150, f"{before * 1000:.0f} ms -> {slowed * 1000:.0f} ms"
    hil_cli("lab", "fault", HUB, "clear")
    after = median_banner(host)
    assert after < before + 0.050, f"not restored: {before * 1000:.0f} ms -> {after * 1000:.0f} ms"
