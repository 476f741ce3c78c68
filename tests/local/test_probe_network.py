"""Network probes against real servers on 127.0.0.1: nmap vs the Python fallback, sshd
(Debian defaults vs hardened) for auth methods / default credentials / ssh-audit / host-key
pinning, and the HTTP latency sampler against a server with an injected delay."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.errors import HostKeyMismatch
from hil.probes import latency, ports, ssh
from hil.probes.evidence import to_json

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


# -- port scan -----------------------------------------------------------------------------------

@pytest.fixture
def listeners() -> Iterator[list[int]]:
    socks = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        socks.append(s)
    yield [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("nmap"), reason="nmap not installed (apt-get install nmap)")
def test_nmap_and_python_fallback_agree(listeners: list[int]) -> None:
    by_nmap = ports.scan_tcp("127.0.0.1")
    by_python = ports.scan_tcp_python("127.0.0.1")
    print(f"\nfull TCP scan of 127.0.0.1: nmap {by_nmap.duration:.2f} s, "
          f"python fallback {by_python.duration:.2f} s")
    assert by_nmap.tool == "nmap" and by_nmap.complete and by_nmap.ports_scanned == 65535
    assert by_python.tool == "python-connect" and by_python.complete and by_python.ports_scanned == 65535
    assert set(listeners) <= set(by_nmap.open_ports)
    # other processes may open/close ports between the scans; ours are stable
    assert set(listeners) <= set(by_python.open_ports)
    cmp = ports.compare_ports(by_nmap, [listeners[0]])
    assert set(listeners[1:]) <= set(cmp.unexpected)
    for scan in (by_nmap, by_python):  # both saw the host answer: a verdict may rest on them
        assert scan.host_seen and scan.answered_ports == 65535
        assert scan.coverage_problems(must_be_open=listeners) == ()


def test_scan_tcp_uses_fallback_without_nmap(listeners: list[int]) -> None:
    scan = ports.scan_tcp_python("127.0.0.1", ports=range(min(listeners) - 50, max(listeners) + 50))
    assert set(listeners) <= set(scan.open_ports) and scan.tool == "python-connect"


def test_python_scan_deadline_reports_incomplete() -> None:
    scan = ports.scan_tcp_python("127.0.0.1", concurrency=1, deadline=0.05)
    assert not scan.complete and scan.ports_scanned < 65535
    assert any("scanned" in p for p in scan.coverage_problems())


def test_docker_api_detection(tmp_path: Path) -> None:
    class FakeEngine(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"ApiVersion": "1.41", "Version": "20.10.24"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeEngine)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = int(srv.server_address[1])
        ev = ports.docker_api_exposure("127.0.0.1", ports=[port, _free_port()])
        assert ev.exposed and ev.ports[0].api_version == "1.41" and not ev.ports[1].open
        assert not ports.docker_api_exposure("127.0.0.1", ports=[_free_port()]).exposed
    finally:
        srv.shutdown()


# -- sshd ----------------------------------------------------------------------------------------

HARDENED = """\
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,\
diffie-hellman-group16-sha512,diffie-hellman-group18-sha512
Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,\
aes192-ctr,aes128-ctr
MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com
HostKeyAlgorithms ssh-ed25519,rsa-sha2-512,rsa-sha2-256
"""
# Debian's packaged sshd_config only sets KbdInteractiveAuthentication no and UsePAM yes
DEBIAN_DEFAULT = "KbdInteractiveAuthentication no\n"
# the keyboard-interactive trap: password off, kbd-interactive left on
KBD_TRAP = "PasswordAuthentication no\nKbdInteractiveAuthentication yes\n"


class Sshd:
    def __init__(self, folder: Path, name: str, body: str, host_keys: list[Path]) -> None:
        self.port = _free_port()
        conf = folder / f"{name}.conf"
        keys = "".join(f"HostKey {k}\n" for k in host_keys)
        conf.write_text(f"Port {self.port}\nListenAddress 127.0.0.1\n{keys}UsePAM yes\n"
                        f"PidFile {folder / name}.pid\n{body}")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sshds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Sshd], Path]]:
    if not Path(SSHD).exists():
        pytest.skip("openssh-server not installed")
    d = tmp_path_factory.mktemp("sshd")
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory sshd insists on
    keys = []
    for kind in ("ed25519", "ecdsa", "rsa"):
        k = d / f"hk_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(k)], check=True)
        keys.append(k)
    servers = {"default": Sshd(d, "default", DEBIAN_DEFAULT, keys),
               "hardened": Sshd(d, "hardened", HARDENED, [keys[0], keys[2]]),
               "kbd": Sshd(d, "kbd", KBD_TRAP, keys)}
    known_hosts = d / "known_hosts"
    # pin the ed25519 key: the file we write ourselves from the key we generated
    pub = (d / "hk_ed25519.pub").read_text().split()
    known_hosts.write_text("".join(f"[127.0.0.1]:{s.port} {pub[0]} {pub[1]}\n" for s in servers.values()))
    yield servers, known_hosts
    for s in servers.values():
        s.stop()


def test_auth_methods(sshds: tuple[dict[str, Sshd], Path]) -> None:
    servers, kh = sshds
    default = ssh.ssh_auth_methods("127.0.0.1", servers["default"].port, kh)
    hardened = ssh.ssh_auth_methods("127.0.0.1", servers["hardened"].port, kh)
    trap = ssh.ssh_auth_methods("127.0.0.1", servers["kbd"].port, kh)
    assert "password" in default.methods and not default.publickey_only
    assert hardened.methods == ("publickey",) and hardened.publickey_only
    assert "keyboard-interactive" in trap.methods and not trap.publickey_only


def test_host_key_mismatch_refuses_before_auth(sshds: tuple[dict[str, Sshd], Path],
                                               tmp_path: Path) -> None:
    servers, _ = sshds
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, blob = (tmp_path / "other.pub").read_text().split()[:2]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{servers['default'].port} {kind} {blob}\n")
    with pytest.raises(HostKeyMismatch):
        ssh.ssh_auth_methods("127.0.0.1", servers["default"].port, kh)
    kh.write_text("")
    with pytest.raises(HostKeyMismatch):
        ssh.try_default_credentials("127.0.0.1", servers["default"].port, kh, credentials=[("pi", "x")])


def test_default_credentials_refused(sshds: tuple[dict[str, Sshd], Path]) -> None:
    servers, kh = sshds
    ev = ssh.try_default_credentials("127.0.0.1", servers["hardened"].port, kh)
    assert ev.accepted == () and all(a.outcome == "refused" for a in ev.attempts)
    assert "password not offered" in ev.attempts[0].detail
    ev = ssh.try_default_credentials("127.0.0.1", servers["default"].port, kh,
                                     credentials=[("nosuchuser", "raspberry")])
    assert ev.attempts[0].outcome == "refused" and "Authentication" in ev.attempts[0].detail


def test_ssh_audit_default_fails_hardened_passes(sshds: tuple[dict[str, Sshd], Path]) -> None:
    servers, _ = sshds
    default = ssh.ssh_audit("127.0.0.1", servers["default"].port)
    hardened = ssh.ssh_audit("127.0.0.1", servers["hardened"].port)
    print(to_json({"default": [f.algorithm for f in default.failures],
                   "hardened": [f.algorithm for f in hardened.failures]}))
    assert default.exit_code == 3 and default.failures
    assert hardened.exit_code in (0, 2) and hardened.failures == ()


# -- HTTP latency ------------------------------------------------------------------------------

def test_http_sampler_shows_injected_delay() -> None:
    delay = {"s": 0.0}

    class Slow(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sampler expects
        disable_nagle_algorithm = True  # headers and body go out as two writes

        def do_GET(self) -> None:
            time.sleep(delay["s"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    rt = latency.HttpRoundTrip("127.0.0.1", int(srv.server_address[1]))
    budget = latency.Budget("http", p95_ms=10, p99_ms=20)
    try:
        fast = latency.measure(rt, metric="http", rate_hz=200, count=100, warmup=5)
        delay["s"] = 0.025
        slow = latency.measure(rt, metric="http", rate_hz=20, count=40, warmup=2)
    finally:
        rt.close()
        srv.shutdown()
    print(f"\nhttp p50 {fast.p50} ms without delay, {slow.p50} ms with 25 ms delay")
    assert fast.errors == 0 and slow.errors == 0
    assert fast.p50 < 10
    assert 25 <= slow.p50 < 60
    assert latency.judge(fast, budget).passed
    assert not latency.judge(slow, budget).passed
