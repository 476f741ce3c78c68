"""Every defect of the vulnerable profile (lab/DEFECTS.md, ids S1..C2) is observable by a
real client through the harness's probes, and absent on a hardened hub (the contrast that
shows each observation can come out the other way).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil.drivers.base import ConsoleState
from hil.drivers.console import SerialConsole
from hil.drivers.power import make_power
from hil.drivers.ssh import SshConnection
from hil.errors import DeviceUnreachable
from hil.inventory import Device, Inventory
from hil.lease import Lease
from hil.probes.host import find_secrets
from hil.probes.keys import private_keys
from hil.probes.mqtt import mtls_matrix_for, plaintext_connect
from hil.probes.ports import docker_api_exposure
from hil.probes.ssh import (
    pinned_transport,
    ssh_audit,
    ssh_auth_methods,
    sshd_effective_config,
    try_default_credentials,
)
from hil.probes.tls import tls_scan

pytestmark = [pytest.mark.lab]

VULN = "hub-vuln"
HARDENED = "hub-01"
FIRST_BOOT_LINE = "Booting Linux on physical CPU"
WIFI_SECRET = "Fl00r-WiFi-2024!"  # lab/DEFECTS.md C2: the planted defect


@pytest.fixture
def vuln(lab_inventory: Inventory) -> Device:
    return lab_inventory.devices[VULN]


@pytest.fixture
def hardened(lab_inventory: Inventory) -> Device:
    return lab_inventory.devices[HARDENED]


def _ssh(dev: Device, inv: Inventory) -> SshConnection:
    return SshConnection(dev.name, dev.ssh, inv.timeouts)


# -- SSH ---------------------------------------------------------------------------------------

def test_s1_default_credential_pi_raspberry_logs_in(vuln: Device, hardened: Device) -> None:
    ep = vuln.ssh
    transport = pinned_transport(ep.host, ep.port, ep.known_hosts, timeout=10)
    try:
        transport.auth_password("pi", "raspberry")
        assert transport.is_authenticated()
        chan = transport.open_session(timeout=10)
        chan.exec_command("id -un; id -Gn")
        out = chan.makefile("r").read().decode()
        assert chan.recv_exit_status() == 0
    finally:
        transport.close()
    user, groups = out.splitlines()[:2]
    assert user == "pi" and {"sudo", "docker"} <= set(groups.split())
    probe = try_default_credentials(ep.host, ep.port, ep.known_hosts, credentials=[("pi", "raspberry")])
    assert probe.accepted == ("pi/raspberry",)
    contrast = try_default_credentials(hardened.ssh.host, 22, hardened.ssh.known_hosts,
                                       credentials=[("pi", "raspberry")])
    assert contrast.accepted == () and contrast.attempts[0].outcome == "refused"


def test_s2_password_and_keyboard_interactive_offered(
        vuln: Device, hardened: Device, lab_inventory: Inventory) -> None:
    offered = ssh_auth_methods(vuln.ssh.host, 22, vuln.ssh.known_hosts, user="root")
    assert {"publickey", "password", "keyboard-interactive"} <= set(offered.methods)
    # keyboard-interactive really answers: a handler is asked for the password
    transport = pinned_transport(vuln.ssh.host, 22, vuln.ssh.known_hosts, timeout=10)
    prompts: list[str] = []

    def handler(_title: str, _instr: str, fields: list[tuple[str, bool]]) -> list[str]:
        prompts.extend(p for p, _echo in fields)
        return ["raspberry"] * len(fields)

    try:
        transport.auth_interactive("pi", handler)
        assert transport.is_authenticated() and prompts
    finally:
        transport.close()
    with _ssh(vuln, lab_inventory) as ssh:
        deviations = sshd_effective_config(ssh).deviations()
    assert deviations == {"passwordauthentication": "yes", "kbdinteractiveauthentication": "yes",
                          "permitrootlogin": "yes"}
    assert ssh_auth_methods(hardened.ssh.host, 22, hardened.ssh.known_hosts, user="root").publickey_only
    with _ssh(hardened, lab_inventory) as ssh:
        assert sshd_effective_config(ssh).deviations() == {}


def test_s3_ssh_audit_reports_failures(vuln: Device, hardened: Device) -> None:
    bad = ssh_audit(vuln.ssh.host)
    assert bad.exit_code == 3, bad.verdict
    failed = {f.algorithm for f in bad.failures}
    assert {"diffie-hellman-group1-sha1", "3des-cbc", "hmac-md5"} <= failed, failed
    good = ssh_audit(hardened.ssh.host)
    assert good.exit_code == 2 and good.failures == (), good.failures


# -- MQTT and TLS --------------------------------------------------------------------------------

def test_m1_plaintext_1883_accepts_anonymous(vuln: Device, hardened: Device) -> None:
    att = plaintext_connect(vuln.ssh.host, 1883, device=VULN)
    assert att.accepted and att.reason_code == 0, att
    refused = plaintext_connect(hardened.ssh.host, 1883, timeout=3, device=HARDENED)
    assert not refused.accepted and refused.reason_code is None


def test_m2_8883_accepts_a_client_without_certificate(vuln: Device) -> None:
    assert vuln.expect.broker is not None
    matrix = mtls_matrix_for(vuln.expect.broker, vuln.ssh.host, device=VULN)
    assert "none" in matrix.accepted_identities, matrix
    # (hardened hubs refuse "none": test_lab_hubs.test_broker_accepts_harness_cert_and_refuses_...)


def test_m3_8883_accepts_tls_1_1(vuln: Device, hardened: Device) -> None:
    assert vuln.expect.broker is not None and hardened.expect.broker is not None
    weak = tls_scan(vuln.ssh.host, 8883, ca_file=vuln.expect.broker.ca_file)
    assert "TLS 1.1" in weak.legacy_versions, weak.accepted_versions
    assert [c for c in weak.ciphers if c.version == "TLS 1.1"], weak.ciphers
    b = hardened.expect.broker
    strong = tls_scan(hardened.ssh.host, 8883, ca_file=b.ca_file, client_cert=b.cert_file,
                      client_key=b.key_file)
    assert strong.legacy_versions == () and "TLS 1.2" in strong.accepted_versions, strong
    assert strong.chain is not None and strong.chain.valid, strong.chain


# -- Docker API, keys, telnet --------------------------------------------------------------------

def test_d1_docker_api_answers_on_2375(vuln: Device, hardened: Device) -> None:
    exposure = docker_api_exposure(vuln.ssh.host)
    plain = {p.port: p for p in exposure.ports}[2375]
    assert plain.open and plain.api_version, plain
    assert not docker_api_exposure(hardened.ssh.host).exposed


def test_k1_k2_world_readable_and_stray_private_keys(
        vuln: Device, hardened: Device, lab_inventory: Inventory) -> None:
    with _ssh(vuln, lab_inventory) as ssh:
        mode = ssh.run(["stat", "-c", "%a", "/etc/hil/device/device.key"], sudo=True).check().stdout
        scan = private_keys(ssh, vuln.expect.private_key_allowlist)
    assert mode.strip() == "644"
    assert "/etc/hil/device/device.key" in scan.too_open
    assert "/home/pi/backup.pem" in scan.stray
    with _ssh(hardened, lab_inventory) as ssh:
        clean = private_keys(ssh, hardened.expect.private_key_allowlist)
    assert clean.keys and clean.stray == () and clean.too_open == (), clean


def _banner(host: str, port: int, want: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(0.5)
        buf = b""
        deadline = time.monotonic() + timeout
        while want not in buf and time.monotonic() < deadline:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            buf += chunk
        return buf


def test_t1_telnet_on_23_shows_a_login_prompt(vuln: Device, hardened: Device) -> None:
    seen = _banner(vuln.ssh.host, 23, b"login:")
    assert seen.startswith(b"\xff"), seen  # telnet option negotiation (IAC)
    assert b"hub-vuln login:" in seen, seen
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((hardened.ssh.host, 23), timeout=3).close()


# -- console -------------------------------------------------------------------------------------

def test_c1_console_newline_gives_a_root_shell_without_login(
        vuln: Device, lab_inventory: Inventory, hold_lease: Callable[[str], Lease]) -> None:
    hold_lease(VULN)
    assert vuln.console is not None
    with SerialConsole(VULN, vuln.console.model_copy(update={"login": None}),
                       lab_inventory.timeouts) as con:
        if con.state(lab_inventory.timeouts.console_login) is ConsoleState.SHELL:
            # maybe a session someone left: end it; a hardened getty would now ask for a login
            con.send("exit\r")
            time.sleep(1.0)
        assert con.state(lab_inventory.timeouts.console_login) is ConsoleState.SHELL
        res = con.run(["id", "-un"])
        assert (res.exit_status, res.stdout.strip()) == (0, "root")


@pytest.fixture
def vuln_powered(vuln: Device, lab_inventory: Inventory,
                 hold_lease: Callable[[str], Lease]) -> Iterator[Device]:
    hold_lease(VULN)
    yield vuln
    outlet = make_power(vuln, lab_inventory.timeouts)
    if not outlet.status():
        outlet.on()
    deadline = time.monotonic() + lab_inventory.timeouts.boot
    while True:
        try:
            with _ssh(vuln, lab_inventory) as ssh:
                ssh.run(["true"]).check()
            return
        except DeviceUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_c2_boot_log_on_the_console_carries_the_wifi_secret(
        vuln_powered: Device, lab_inventory: Inventory, tmp_path: Path) -> None:
    dev, inv = vuln_powered, lab_inventory
    assert dev.console is not None
    with SerialConsole(VULN, dev.console, inv.timeouts, capture=tmp_path / "console.log") as con:
        make_power(dev, inv.timeouts).cycle()
        con.expect(FIRST_BOOT_LINE, timeout=inv.timeouts.boot)
        con.expect(r"wpa_supplicant\[\d+\]:.*psk=", timeout=inv.timeouts.boot)
        boot_log = con.captured().rsplit(FIRST_BOOT_LINE, 1)[1]
    scan = find_secrets(boot_log, f"{VULN} boot log")
    assert [f.kind for f in scan.findings] == ["psk"], scan
    assert WIFI_SECRET not in scan.findings[0].excerpt  # the evidence masks it
    # a client connecting later (within the replay window) gets the boot log from its first
    # line, secret included; a plain TCP client, as `telnet`/`nc` to a ser2net port would be
    port = int(dev.console.url.rsplit(":", 1)[1])
    late = _banner("127.0.0.1", port, WIFI_SECRET.encode(), timeout=10)
    assert WIFI_SECRET.encode() in late, late[-300:]
    assert late.lstrip().startswith(b"[    0.000000] " + FIRST_BOOT_LINE.encode()), late[:200]

