"""Issue 2 "Done when", proven with the harness's own drivers against the running lab:
SSH key login and refused passwords, per-hub host keys pinned in known_hosts, the console
through a power cycle, the PDU, each hub's own engine pulling from the lab registry, and
the broker's mutual-TLS matrix (CONNACK checked).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
import requests
import yaml

from hil.drivers.base import ConsoleState
from hil.drivers.console import SerialConsole
from hil.drivers.power import make_power
from hil.drivers.ssh import SshConnection
from hil.errors import DeviceUnreachable, HostKeyMismatch
from hil.inventory import Device, Inventory
from hil.lease import Lease
from hil.probes.host import find_secrets
from hil.probes.mqtt import mtls_matrix_for, plaintext_connect
from hil.probes.ssh import pinned_transport, ssh_auth_methods
from hil.timeouts import Timeouts
from hil_lab.topology import lab_inventory_path

pytestmark = [pytest.mark.lab]

ROOT = Path(__file__).resolve().parents[2]
_TAGS = {name: set(d.get("tags", [])) for name, d in
         yaml.safe_load((lab_inventory_path()).read_text())["devices"].items()}
EVERY_HUB = sorted(_TAGS)
ALL_HUBS = sorted(n for n, t in _TAGS.items() if "plain" not in t)
"""The hubs the lab's hub image makes (console, engine, user hil). The plain hub is another
kind (tests/lab/test_security_plain_hub.py); it only shares the host-key checks below."""
HARDENED = sorted(n for n, t in _TAGS.items() if "hardened" in t)
POWER_HUB = "hub-02"  # F's and B's power tests use hub-03: spread the boots
FIRST_BOOT_LINE = "Booting Linux on physical CPU"
WEB_IMAGE = "registry.lab:5000/hil/web:1.0"
WEB_PORT = 8080


def quick(inv: Inventory) -> Timeouts:
    """Short connect timeouts: an unreachable hub must be seen as such within seconds."""
    return inv.timeouts.model_copy(update={"ssh_connect": 3.0})


def ssh_ok(dev: Device, inv: Inventory) -> bool:
    try:
        with SshConnection(dev.name, dev.ssh, quick(inv)) as ssh:
            return ssh.run(["true"], timeout=10).ok
    except DeviceUnreachable:
        return False


def wait_ssh(dev: Device, inv: Inventory) -> float:
    """Seconds until SSH key login works again (deadline: the inventory's boot timeout)."""
    t0 = time.monotonic()
    deadline = t0 + inv.timeouts.boot
    while not ssh_ok(dev, inv):
        if time.monotonic() > deadline:
            raise AssertionError(f"{dev.name}: SSH did not come back within {inv.timeouts.boot:g}s")
        time.sleep(0.5)
    return time.monotonic() - t0


def log_out(con: SerialConsole) -> None:
    """Leave no console session behind (the driver has no logout: the shell's own `exit`)."""
    con.send("exit\r")
    con.expect(r"login: *$|login: ", timeout=10)


@pytest.fixture
def powered_hub(lab_inventory: Inventory, hold_lease: Callable[[str], Lease]) -> Iterator[Device]:
    """POWER_HUB under its lease; switched back on with SSH answering before the lease goes."""
    hold_lease(POWER_HUB)
    dev = lab_inventory.devices[POWER_HUB]
    yield dev
    outlet = make_power(dev, lab_inventory.timeouts)
    if not outlet.status():
        outlet.on()
    wait_ssh(dev, lab_inventory)


# -- SSH -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_HUBS)
def test_key_login_and_passwordless_sudo(lab_inventory: Inventory, name: str) -> None:
    dev = lab_inventory.devices[name]
    with SshConnection(name, dev.ssh, lab_inventory.timeouts) as ssh:
        assert ssh.run(["id", "-un"]).stdout == "hil\n"
        assert ssh.run(["hostname"]).stdout == f"{name}\n"
        assert ssh.run(["id", "-u"], sudo=True).stdout == "0\n"


@pytest.mark.parametrize("name", HARDENED)
def test_password_login_is_refused_on_hardened_hubs(lab_inventory: Inventory, name: str) -> None:
    dev = lab_inventory.devices[name]
    assert dev.console is not None and dev.console.login is not None
    assert dev.console.login.password is not None
    real_password = dev.console.login.password.resolve()  # valid on the console, not over SSH
    offered = ssh_auth_methods(dev.ssh.host, dev.ssh.port, dev.ssh.known_hosts, user=dev.ssh.user)
    assert offered.methods == ("publickey",)
    transport = pinned_transport(dev.ssh.host, dev.ssh.port, dev.ssh.known_hosts, timeout=10)
    try:
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password(dev.ssh.user, real_password, fallback=True)
        assert list(refused.value.allowed_types) == ["publickey"]
        assert not transport.is_authenticated()
    finally:
        transport.close()


def test_host_keys_differ_between_hubs_and_match_known_hosts(lab_inventory: Inventory) -> None:
    seen: dict[str, str] = {}
    for name in EVERY_HUB:
        ep = lab_inventory.devices[name].ssh
        pinned = paramiko.HostKeys(str(ep.known_hosts)).lookup(ep.known_hosts_name)
        assert pinned, f"{name}: no entry for {ep.known_hosts_name} in {ep.known_hosts}"
        transport = pinned_transport(ep.host, ep.port, ep.known_hosts, timeout=10)
        try:
            key = transport.get_remote_server_key()
        finally:
            transport.close()
        assert pinned[key.get_name()] == key, f"{name}: offered key differs from known_hosts"
        seen[name] = key.get_base64()
    assert len(set(seen.values())) == len(seen), f"hubs share a host key: {seen}"


def test_changed_known_hosts_entry_is_refused(lab_inventory: Inventory, tmp_path: Path) -> None:
    """A known_hosts entry with another key for the hub's address (a re-imaged hub or a
    man in the middle): the driver refuses before authenticating."""
    ep = lab_inventory.devices["hub-01"].ssh
    keygen = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keygen)], check=True)
    algo, blob = (keygen.with_suffix(".pub")).read_text().split()[:2]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{ep.host} {algo} {blob}\n")
    with pytest.raises(HostKeyMismatch, match="CHANGED"):
        SshConnection("hub-01", ep.model_copy(update={"known_hosts": kh}), lab_inventory.timeouts).connect()
    # the genuine file still works: the refusal was the key, not the hub
    with SshConnection("hub-01", ep, lab_inventory.timeouts) as ssh:
        assert ssh.run(["true"]).ok


# -- console and power -------------------------------------------------------------------------

def test_console_login_shell_survives_power_cycle_with_boot_log(
        lab_inventory: Inventory, powered_hub: Device) -> None:
    dev, inv = powered_hub, lab_inventory
    assert dev.console is not None
    con = SerialConsole(dev.name, dev.console, inv.timeouts)
    with con:
        state = con.state(inv.timeouts.console_login)
        if state is ConsoleState.SHELL:  # a session left by someone: log it out, as on a real rack
            log_out(con)
            state = con.state(inv.timeouts.console_login)
        assert state is ConsoleState.LOGIN_PROMPT
        con.login()
        res = con.run(["hostname"])
        assert (res.exit_status, res.stdout.strip()) == (0, dev.name)
        log_out(con)

        make_power(dev, inv.timeouts).cycle()
        # the same console connection stays open through the cycle and shows the new boot
        con.expect(rf"\[\s*0\.0+\] {FIRST_BOOT_LINE}", timeout=inv.timeouts.boot)
        con.expect(r"login: *$|login: ", timeout=inv.timeouts.boot)
        boot_log = con.captured().rsplit(FIRST_BOOT_LINE, 1)[1]
        assert "Started" in boot_log  # the systemd-like part came through as well
        # a hardened hub's boot log carries no secret (hub-vuln's does: test_lab_vulnerable C2)
        assert find_secrets(boot_log, f"{dev.name} boot log").findings == ()
        con.login()
        assert con.run(["cat", "/proc/1/comm"]).exit_status == 0
        log_out(con)
    wait_ssh(dev, inv)


def test_pdu_switches_hub_off_and_on_and_ssh_comes_back(
        lab_inventory: Inventory, powered_hub: Device) -> None:
    dev, inv = powered_hub, lab_inventory
    outlet = make_power(dev, inv.timeouts)
    assert outlet.status() is True
    assert ssh_ok(dev, inv)
    outlet.off()
    assert outlet.status() is False
    with pytest.raises(DeviceUnreachable):
        SshConnection(dev.name, dev.ssh, quick(inv)).connect()
    outlet.on()
    assert outlet.status() is True
    took = wait_ssh(dev, inv)
    assert took < inv.timeouts.boot


# -- the hub's own engine and the lab registry -------------------------------------------------

@pytest.mark.parametrize("name", ALL_HUBS)
def test_hub_engine_runs_a_container_pulled_from_the_lab_registry(
        lab_inventory: Inventory, hold_lease: Callable[[str], Lease], name: str) -> None:
    hold_lease(name)
    dev = lab_inventory.devices[name]
    with SshConnection(name, dev.ssh, lab_inventory.timeouts) as ssh:
        had_image = ssh.run(["docker", "image", "inspect", WEB_IMAGE], sudo=True).ok
        cid = ""
        try:
            # pull always asks the registry (TLS, lab CA in /etc/docker/certs.d), even when cached
            ssh.run(["docker", "pull", WEB_IMAGE], sudo=True, timeout=180).check()
            cid = ssh.run(["docker", "run", "-d", "-p", f"{WEB_PORT}:80", WEB_IMAGE],
                          sudo=True, timeout=120).check().stdout.strip()
            url = f"http://{dev.ssh.host}:{WEB_PORT}/"
            deadline = time.monotonic() + 30
            while True:
                try:
                    resp = requests.get(url, timeout=3)
                    break
                except requests.RequestException as exc:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{name}: {url} did not answer within 30 s: {exc}") from None
                    time.sleep(0.3)
            assert resp.status_code == 200
            assert resp.text
        finally:
            if cid:
                ssh.run(["docker", "rm", "-f", cid], sudo=True, timeout=60).check()
            if not had_image:
                ssh.run(["docker", "image", "rm", WEB_IMAGE], sudo=True, timeout=60)
        assert WEB_PORT not in _published_ports(ssh)


def _published_ports(ssh: SshConnection) -> set[int]:
    out = ssh.run(["docker", "ps", "--format", "{{.Ports}}"], sudo=True).check().stdout
    return {int(p.split(":")[-1].split("->")[0]) for p in out.replace(",", " ").split() if "->" in p}


# -- broker --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", HARDENED)
def test_broker_accepts_harness_cert_and_refuses_none_expired_foreign(
        lab_inventory: Inventory, name: str) -> None:
    dev = lab_inventory.devices[name]
    broker = dev.expect.broker
    assert broker is not None and broker.expired_cert_file and broker.foreign_cert_file
    matrix = mtls_matrix_for(broker, dev.ssh.host, device=name)
    by = {a.identity: a for a in matrix.attempts}
    assert set(by) == {"valid", "none", "expired", "foreign"}
    assert by["valid"].accepted and by["valid"].reason_code == 0, by["valid"]
    for refused in ("none", "expired", "foreign"):
        assert not by[refused].accepted, by[refused]
        assert by[refused].error, f"{refused}: refused without a reason: {by[refused]}"
    # and no plaintext listener to fall back to
    assert not plaintext_connect(dev.ssh.host, 1883, timeout=3, device=name).accepted
