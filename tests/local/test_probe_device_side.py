"""Device-side probes through the Shell protocol, served here by this machine itself
(a minimal local Shell: same argv/sudo/timeout contract as the SSH and console drivers)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from hil.drivers.base import CommandResult, Shell
from hil.probes import accounts, files, keys, latency, ports, ssh


class LocalShell:
    device = "localhost"

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None) -> CommandResult:
        full = list(argv) if os.geteuid() == 0 or not sudo else ["sudo", "-n", *argv]
        t0 = time.perf_counter()
        p = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        return CommandResult(tuple(argv), p.returncode, p.stdout, p.stderr, time.perf_counter() - t0,
                             channel="local")


@pytest.fixture
def shell() -> Shell:
    sh = LocalShell()
    assert isinstance(sh, Shell)
    return sh


def test_listening_sockets_include_udp_and_loopback(shell: Shell) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", 0))
        t.bind(("127.0.0.1", 0))
        t.listen()
        ev = ports.listening_sockets(shell)
        uport, tport = u.getsockname()[1], t.getsockname()[1]
    assert uport in ev.udp_ports and tport in ev.tcp_ports
    mine = [s for s in ev.sockets if s.port == tport]
    assert mine and mine[0].loopback_only and mine[0].processes


SSHD = Path("/usr/sbin/sshd")


@pytest.fixture
def own_sshd(tmp_path: Path) -> Path:
    """``sshd`` reading a config and host key of this test's own, not whatever the machine has.

    sshd -T also insists on its privilege separation directory (compiled in: /run/sshd),
    which Debian's ssh service creates at start; on a machine where that service never
    ran it is missing, so the test creates it, as the service would (and leaves it: other
    sshd processes on this machine may be using it).
    """
    if not SSHD.exists():
        pytest.skip("openssh-server not installed")
    privsep = Path("/run/sshd")
    if not privsep.is_dir():
        if os.geteuid() != 0:
            pytest.skip("/run/sshd is missing and only root can create it")
        privsep.mkdir(mode=0o755, exist_ok=True)
    key = tmp_path / "ssh_host_ed25519_key"
    key.write_bytes(_key("openssh"))
    key.chmod(0o600)
    config = tmp_path / "sshd_config"
    config.write_text(f"HostKey {key}\nPidFile {tmp_path / 'sshd.pid'}\nPermitEmptyPasswords no\n"
                      "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\n"
                      "Match User hil Address 127.0.0.1\n    PasswordAuthentication yes\n")
    wrapper = tmp_path / "sshd"
    wrapper.write_text(f"#!/bin/sh\nexec {SSHD} -f {config} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def test_sshd_effective_config(shell: Shell, own_sshd: Path) -> None:
    cfg = ssh.sshd_effective_config(shell, sshd=str(own_sshd),
                                    connection={"user": "hil", "host": "h", "addr": "127.0.0.1"})
    assert cfg.get("permitemptypasswords") == "no"
    assert cfg.get("passwordauthentication") == "yes"  # the Match block for this connection applies
    other = ssh.sshd_effective_config(shell, sshd=str(own_sshd),
                                      connection={"user": "root", "host": "h", "addr": "10.0.0.9"})
    assert other.get("passwordauthentication") == "no"


def _key(fmt: str) -> bytes:
    key = ed25519.Ed25519PrivateKey.generate()
    if fmt == "openssh":
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
    if fmt == "der":
        return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _rsa_der(fmt: serialization.PrivateFormat) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.DER, fmt, serialization.NoEncryption())


def _ec_sec1_der() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())


def _cert_der() -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, None))  # Ed25519 signs without a separate hash
    return cert.public_bytes(serialization.Encoding.DER)


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_private_keys_in_every_format_and_size(shell: Shell, tmp_path: Path) -> None:
    allowed = _write(tmp_path / "etc/ssh/ssh_host_ed25519_key", _key("openssh"), 0o600)
    stray = _write(tmp_path / "home/pi/.ssh/backup key.pem", b"some text\n" + _key("pem"))  # a space
    # a key inside a 600 KB binary archive: no size limit, binary files searched too
    noise = os.urandom(300_000)
    big = _write(tmp_path / "var/backups/hub.tar", noise + b"\0" + _key("pem") + noise)
    der8 = _write(tmp_path / "opt/vendor/identity.der", _key("der"), 0o600)
    der_rsa = _write(tmp_path / "opt/vendor/rsa1.key",
                     _rsa_der(serialization.PrivateFormat.TraditionalOpenSSL))
    der_ec = _write(tmp_path / "opt/vendor/ec.key", _ec_sec1_der())
    _write(tmp_path / "opt/vendor/cert.der", _cert_der())  # a certificate, not a key
    _write(tmp_path / "home/pi/cert.pem", b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    _write(tmp_path / "proc/key", _key("pem"))  # pruned
    gg = tmp_path / "greengrass/v2"
    gg_config_key = _write(gg / "config/device.key", _key("pem"), 0o600)

    scan = keys.private_keys(shell, [str(tmp_path / "etc/ssh/ssh_host_*_key"), str(gg) + "/**"],
                             roots=[str(tmp_path), str(tmp_path / "does-not-exist")],
                             prune=[str(tmp_path / "proc")])
    found = {k.path: k for k in scan.keys}
    assert sorted(found) == sorted(map(str, [allowed, stray, big, der8, der_rsa, der_ec, gg_config_key]))
    assert {found[str(p)].format for p in (der8, der_rsa, der_ec)} == {"der"}
    assert sorted(scan.stray) == sorted(map(str, [stray, big, der8, der_rsa, der_ec]))
    assert str(big) in scan.too_open and str(der8) not in scan.too_open
    assert found[str(allowed)].mode_octal == "0600"


def test_key_allowlist_never_exempts_artifact_folders_wholesale() -> None:
    allow = ["/greengrass/v2/**", "/greengrass/v2/packages/artifacts/com.example.Web/1.0.0/tls.key"]
    assert keys.path_allowed("/greengrass/v2/config/device.key", allow)
    leaky = "/greengrass/v2/packages/artifacts/com.example.Leaky/1.0.0/client.key"
    assert not keys.path_allowed(leaky, allow)
    assert not keys.path_allowed("/greengrass/v2/work/com.example.Leaky/id.key", allow)
    assert keys.path_allowed("/greengrass/v2/packages/artifacts/com.example.Web/1.0.0/tls.key", allow)


def test_file_permissions_and_setuid(shell: Shell, tmp_path: Path) -> None:
    sudoers = tmp_path / "etc/sudoers.d"
    _write(sudoers / "hil", b"hil ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    ww = _write(sudoers / "90-ops", b"ops ALL=(ALL) ALL\n", 0o666)
    gw = _write(tmp_path / "etc/cron.d/backup", b"* * * * * root true\n", 0o664)
    fine = _write(tmp_path / "etc/ssh/sshd_config", b"PasswordAuthentication no\n", 0o644)
    keydir = tmp_path / "etc/mosquitto/certs"
    _write(keydir / "server.key", _key("pem"), 0o600)
    audit = files.file_permissions(shell, login_accounts=["pi"], key_folders=[str(tmp_path / "home")],
                                   config_paths=[str(sudoers), str(gw.parent), str(fine)],
                                   key_roots=[str(keydir), str(tmp_path / "nothing-here")])
    by_path = {f.path: f.problem for f in audit.findings}
    assert by_path == {str(ww): "world-writable", str(gw): "writable by group " + gw.group()}, by_path
    assert audit.audited >= 6

    suid = _write(tmp_path / "usr/local/bin/netdiag", b"#!/bin/sh\n", 0o755)
    os.chmod(suid, 0o4755)  # noqa: S103 - the defect under test, in tmp_path
    scan = files.setuid_files(shell, roots=[str(tmp_path)], prune=[str(tmp_path / "proc")])
    assert [e.path for e in scan.found] == [str(suid)]
    assert scan.unexpected == (f"{suid} 4755 {suid.owner()}:{suid.group()}",)


def test_accounts_and_password_states(shell: Shell) -> None:
    accts = accounts.accounts(shell)
    root = accts.get("root")
    assert root is not None and root.uid == 0
    assert all(accts.get(n) is not None and accts.get(n).login_shell for n in accts.login_names)  # type: ignore[union-attr]
    states = accounts.password_states(shell, known=accts)
    assert states.passwd_s_available
    assert not states.disagreements, states.disagreements


def test_ssh_command_sampler(shell: Shell) -> None:
    ev = latency.measure(latency.ssh_command_sampler(shell), metric="cmd", rate_hz=50, count=20, warmup=2)
    assert ev.n == 20 and ev.errors == 0 and ev.p50 > 0
    failing = latency.measure(latency.ssh_command_sampler(shell, ["false"]), metric="cmd", rate_hz=50,
                              count=5, warmup=0)
    assert failing.errors == 5 and failing.n == 0
