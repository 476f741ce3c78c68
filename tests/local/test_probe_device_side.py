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
from hil.probes import host, latency, ports, ssh


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


def test_sshd_effective_config(shell: Shell) -> None:
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server not installed")
    cfg = ssh.sshd_effective_config(shell, connection={"user": "hil", "host": "h", "addr": "127.0.0.1"})
    assert cfg.get("permitemptypasswords") == "no"
    assert "passwordauthentication" in cfg.settings


def _pem_key() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_private_keys_stray_and_too_open(shell: Shell, tmp_path: Path) -> None:
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "home/pi/.ssh").mkdir(parents=True)
    allowed = tmp_path / "etc/ssh/ssh_host_ed25519_key"
    allowed.write_bytes(_pem_key())
    allowed.chmod(0o600)
    stray = tmp_path / "home/pi/.ssh/backup key.pem"  # a space: paths must survive parsing
    stray.write_bytes(b"some text\n" + _pem_key())
    stray.chmod(0o644)
    (tmp_path / "home/pi/cert.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/key").write_bytes(_pem_key())  # pruned

    scan = host.private_keys(shell, [str(tmp_path / "etc/ssh/ssh_host_*_key")],
                             roots=[str(tmp_path), str(tmp_path / "does-not-exist")],
                             prune=[str(tmp_path / "proc")])
    assert sorted(k.path for k in scan.keys) == sorted([str(allowed), str(stray)])
    assert scan.stray == (str(stray),)
    assert scan.too_open == (str(stray),)
    assert {k.path: k.mode_octal for k in scan.keys}[str(allowed)] == "0600"


def test_docker_socket_and_aslr_and_shadow(shell: Shell) -> None:
    sock = host.docker_socket(shell)
    if Path("/var/run/docker.sock").exists():
        assert sock.exists and sock.kind == "socket" and sock.mode is not None
    assert not host.docker_socket(shell, "/nonexistent/docker.sock").exists
    aslr = host.sysctl(shell)
    assert aslr.value in ("0", "1", "2")
    assert isinstance(host.empty_passwords(shell).users, tuple)


def test_ssh_command_sampler(shell: Shell) -> None:
    ev = latency.measure(latency.ssh_command_sampler(shell), metric="cmd", rate_hz=50, count=20, warmup=2)
    assert ev.n == 20 and ev.errors == 0 and ev.p50 > 0
    failing = latency.measure(latency.ssh_command_sampler(shell, ["false"]), metric="cmd", rate_hz=50,
                              count=5, warmup=0)
    assert failing.errors == 5 and failing.n == 0
