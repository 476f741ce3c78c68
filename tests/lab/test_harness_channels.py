"""Against the virtual lab: commands over SSH and console, pinned keys, reconnects, leases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.drivers.console import SerialConsole
from hil.drivers.ssh import SshConnection
from hil.errors import HostKeyMismatch
from hil.factory import build_hub
from hil.hub import HubState
from hil.inventory import load_inventory
from hil.lease import make_lease_store
from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = lab_inventory_path()
KNOWN_HOSTS = ROOT / "lab" / ".state" / "known_hosts"

if not KNOWN_HOSTS.is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)


pytestmark = pytest.mark.lab
INV = load_inventory(INVENTORY)
DEV = INV.devices["hub-03"]


@pytest.fixture(autouse=True, scope="module")
def _leased() -> Iterator[None]:
    """Other harness tests share the lab: hold hub-03's lease while touching it."""
    lease = make_lease_store(INV).acquire(DEV.name, timeout=INV.timeouts.lease)
    try:
        yield
    finally:
        lease.release()


def test_0_hub_ensure_ready_reaches_healthy() -> None:
    hub = build_hub(DEV, INV.timeouts)
    try:
        hub.ensure_ready()
        assert hub.state is HubState.HEALTHY
        health = hub.last_health
        assert health is not None and set(health.services) == set(DEV.services)
        assert all(c.answers for c in health.services.values()), health.summary()
    finally:
        hub.close()


def test_command_over_ssh() -> None:
    with SshConnection(DEV.name, DEV.ssh, INV.timeouts) as ssh:
        res = ssh.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (res.exit_status, res.stdout, res.stderr, res.channel) == (3, "out\n", "err\n", "ssh")


def test_command_over_the_console() -> None:
    assert DEV.console is not None
    con = SerialConsole(DEV.name, DEV.console, INV.timeouts, None)
    con.open()
    try:
        if str(con.state(INV.timeouts.console_login)) != "shell":
            con.login()
        res = con.run(["sh", "-c", "echo hello-console; exit 4"])
    finally:
        con.close()
    assert res.exit_status == 4 and "hello-console" in res.stdout and res.channel == "console"


def test_changed_host_key_is_refused(tmp_path: Path) -> None:
    other = INV.devices["hub-01"]
    # hub-01's keys filed under hub-03's address: hub-03 now presents an "unknown/changed" key
    swap = {other.ssh.host: DEV.ssh.host, DEV.ssh.host: other.ssh.host}
    lines = [" ".join([",".join(swap.get(h, h) for h in ln.split(" ", 1)[0].split(",")), ln.split(" ", 1)[1]])
             for ln in KNOWN_HOSTS.read_text().splitlines() if " " in ln]
    kh = tmp_path / "known_hosts"
    kh.write_text("\n".join(lines) + "\n")
    ssh = SshConnection(DEV.name, DEV.ssh.model_copy(update={"known_hosts": kh}), INV.timeouts)
    with pytest.raises(HostKeyMismatch):
        ssh.connect()


def test_dropped_ssh_is_reestablished_transparently() -> None:
    with SshConnection(DEV.name, DEV.ssh, INV.timeouts) as ssh:
        assert ssh.run(["true"]).ok
        ssh.transport.sock.close()  # the network drops the TCP connection under us
        time.sleep(0.2)
        assert ssh.run(["echo", "back"]).stdout == "back\n"
        assert ssh.connects == 2


def test_sigkilled_holder_frees_its_lease_at_once() -> None:
    code = ("import time; from hil.inventory import load_inventory; from hil.lease import make_lease_store;"
            f"l = make_lease_store(load_inventory({str(INVENTORY)!r})).acquire('hub-vuln', timeout=30);"
            "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        store = make_lease_store(INV)
        assert store.try_acquire("hub-vuln") is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        t0 = time.monotonic()
        lease = store.acquire("hub-vuln", timeout=5)
        assert time.monotonic() - t0 < 0.5
        lease.release()
    finally:
        if proc.poll() is None:
            proc.kill()
