"""Probe parsers and pure logic, on outputs recorded from real tools on a Debian 12 machine
(tests/data/probes: nmap 7.93, ss, OpenSSH 9.2 sshd -T, ssh-audit 3.x, docker inspect)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil.errors import ParseError, UserError
from hil.probes import host, ports, ssh, tls
from hil.probes.evidence import to_json

DATA = Path(__file__).resolve().parents[1] / "data" / "probes"


def read(name: str) -> str:
    return (DATA / name).read_text()


# -- ports ------------------------------------------------------------------------------------

def test_nmap_xml_open_ports() -> None:
    opened, version, scanned = ports.parse_nmap_xml(read("nmap_127.0.0.1.xml"))
    assert opened == (2024, 47622, 47623, 47883)
    assert version == "7.93" and scanned == 65535


@pytest.mark.parametrize("text", ["", "<html/>", "<nmaprun><scaninfo numservices='1'/></nmaprun>"])
def test_nmap_xml_garbage_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        ports.parse_nmap_xml(text)


def test_compare_ports_against_allowlist() -> None:
    scan = ports.PortScan(host="h", address="10.0.0.1", open_ports=(22, 1883, 2375, 8883), tool="nmap",
                          tool_version="7.93", ports_scanned=65535, duration=0.7, complete=True)
    cmp = ports.compare_ports(scan, [22, 8883, 443])
    assert cmp.unexpected == (1883, 2375) and cmp.forbidden == (1883, 2375) and cmp.missing == (443,)
    assert ports.compare_ports(scan, [22, 1883, 2375, 8883]).unexpected == ()
    assert '"unexpected": []' not in to_json(cmp)


@pytest.mark.parametrize("target", ["172.28.77.0/24", "172.28.77.1-20", "10.0.0.1,10.0.0.2", "-iL",
                                    "10.0.0.*", "a b", ""])
def test_scan_refuses_anything_but_one_host(target: str) -> None:
    with pytest.raises(UserError):
        ports.resolve_one_address(target)


def test_scan_target_resolves_to_one_address() -> None:
    assert ports.resolve_one_address("127.0.0.1") == "127.0.0.1"
    assert ports.resolve_one_address("localhost") in ("127.0.0.1", "::1")
    assert ports.nmap_argv("127.0.0.1") == ["nmap", "-sT", "-p-", "-T4", "-n", "-Pn", "-oX", "-",
                                            "127.0.0.1"]


def test_ss_parses_tcp_udp_loopback_and_processes() -> None:
    socks = ports.parse_ss(read("ss_ltnup.txt"))
    ev = ports.ListeningSockets(device="d", sockets=socks)
    assert ev.udp_ports == (47998, 47999)
    assert ev.tcp_ports == (2024, 47622, 47623, 47883, 47997)
    by_port = {s.port: s for s in socks}
    assert by_port[47998].address == "::1" and by_port[47998].loopback_only
    assert by_port[47997].address == "*" and not by_port[47997].loopback_only
    assert by_port[47883].processes == ("mosquitto",)
    assert by_port[2024].processes == ()
    unexpected = ev.unexpected("tcp", [47622, 47623, 2024], include_loopback=False)
    assert [s.port for s in unexpected] == [47997]
    assert [s.port for s in ev.unexpected("udp", [])] == [47999, 47998]


def test_ss_interface_suffix_and_garbage() -> None:
    (s,) = ports.parse_ss('udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=1,fd=3))')
    assert (s.address, s.port, s.processes) == ("127.0.0.53%lo", 53, ("systemd-resolve",))
    assert s.loopback_only
    with pytest.raises(ParseError):
        ports.parse_ss("State Recv-Q Send-Q Local Address:Port Peer Address:Port")


# -- ssh -----------------------------------------------------------------------------------------

def test_sshd_t_debian_default_deviates() -> None:
    cfg = ssh.SshdConfig("d", ssh.parse_sshd_t(read("sshd_T_debian_default.txt")))
    assert cfg.get("PasswordAuthentication") == "yes"
    assert cfg.settings["listenaddress"] == ("[::]:22", "0.0.0.0:22")
    assert cfg.deviations() == {"passwordauthentication": "yes"}


def test_sshd_t_hardened_has_no_deviation() -> None:
    cfg = ssh.SshdConfig("d", ssh.parse_sshd_t(read("sshd_T_hardened.txt")))
    assert cfg.deviations() == {}
    assert cfg.get("kexalgorithms", ).startswith("sntrup761x25519-sha512@openssh.com")  # type: ignore[union-attr]


def test_sshd_t_garbage() -> None:
    with pytest.raises(ParseError):
        ssh.parse_sshd_t("")
    with pytest.raises(ParseError):
        ssh.parse_sshd_t("sshd: no hostkeys available -- exiting.")


def test_ssh_audit_debian_default_fails() -> None:
    ev = ssh.parse_ssh_audit(json.loads(read("ssh_audit_debian_default.json")), host="127.0.0.1",
                             port=47622, exit_code=3)
    assert ev.verdict == "failure"
    failed = {(f.category, f.algorithm) for f in ev.failures}
    assert ("kex", "ecdh-sha2-nistp256") in failed and ("mac", "hmac-sha1") in failed
    assert ev.banner and "OpenSSH_9.2p1" in ev.banner


def test_ssh_audit_hardened_has_no_failure() -> None:
    ev = ssh.parse_ssh_audit(json.loads(read("ssh_audit_hardened.json")), host="127.0.0.1",
                             port=47623, exit_code=2)
    assert ev.failures == () and ev.verdict == "warning"
    assert ev.warnings  # post-quantum notes on curve25519: a warning, not a failure


def test_ssh_audit_runner_exit_codes(tmp_path: Path) -> None:
    import subprocess

    def fake(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert "--skip-rate-test" in argv and argv[-1] == "10.0.0.9"
        return subprocess.CompletedProcess(argv, 1, stdout="cannot connect", stderr="")

    from hil.errors import DeviceUnreachable
    with pytest.raises(DeviceUnreachable):
        ssh.ssh_audit("10.0.0.9", 22, runner=fake)


# -- tls -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "bits", "anon", "weak"), [
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 128, False, False),
    ("TLS_AES_256_GCM_SHA384", 256, False, False),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", 168, False, True),
    ("TLS_RSA_WITH_RC4_128_MD5", 128, False, True),
    ("TLS_RSA_WITH_NULL_SHA256", 0, False, True),
    ("TLS_DH_anon_WITH_AES_128_CBC_SHA", 128, True, True),
    ("TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", 40, False, True),
])
def test_cipher_weakness(name: str, bits: int, anon: bool, weak: bool) -> None:
    assert (tls.cipher_weakness(name, bits, anon) is not None) is weak


# -- host ----------------------------------------------------------------------------------------

def test_docker_inspect_recorded() -> None:
    from hil.probes.containers import judge_container, load_container_policy, parse_docker_inspect

    policy = load_container_policy()
    resolved = {"/var/run/docker.sock": "/run/docker.sock", "/var/run": "/run"}
    found = {c.name: judge_container(c, policy, resolved)
             for c in parse_docker_inspect(read("docker_inspect.json"))}
    bad = found["g-probe-bad"].problems
    assert bad[:3] == ("privileged", "host network", "host pid namespace")
    assert "SELinux labels disabled" in bad
    assert any("/var/run/docker.sock (= /run/docker.sock) mounted at /var/run/docker.sock" in p for p in bad)
    assert found["g-probe-good"].problems == ()


def test_stat_and_allowlist() -> None:
    from hil.probes import keys

    rows = keys.parse_stat("600 root root /etc/ssh/ssh_host_ed25519_key\n644 hil hil /home/hil/a b.key\n")
    assert rows == [("/etc/ssh/ssh_host_ed25519_key", 0o600, "root", "root"),
                    ("/home/hil/a b.key", 0o644, "hil", "hil")]
    allow = ["/etc/ssh/ssh_host_*_key", "/greengrass/v2/**"]
    assert keys.path_allowed("/greengrass/v2/config/priv.key", allow)
    assert not keys.path_allowed("/home/hil/a b.key", allow)
    assert not keys.path_allowed("/etc/ssh/ssh_host_ed25519_key.bak", allow)
    assert not keys.path_allowed("/etc/ssh/sub/ssh_host_x_key", allow), "* must not cross folders"
    with pytest.raises(ParseError):
        keys.parse_stat("rw-r--r-- root root /x")


def test_find_argv_prunes_and_greps_every_size_and_binaries() -> None:
    from hil.probes import keys

    argv = keys.find_argv(["/etc"], ["/proc", "/sys"])
    assert argv[:4] == ["find", "/etc", "(", "-path"] and "-prune" in argv
    assert keys.PEM_PRIVATE_KEY_RE in argv and "-a" in argv
    assert not any(a.startswith("-") and a.endswith("k") and a[1:-1].isdigit() for a in argv), argv
    assert "-size" not in argv, "large files must be searched too"


def test_secrets_found_and_masked() -> None:
    text = "\n".join([
        "[  OK  ] Started Mosquitto",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "wifi: psk=SuperSecret123",
        "db password=hunter2hunter2",
        "AWS key AKIAIOSFODNN7EXAMPLE used",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "hub-01 login: ",
        "Password: ",
        "PasswordAuthentication no",
        "password=***REDACTED***",
    ])
    scan = host.find_secrets(text, "boot log")
    kinds = sorted({f.kind for f in scan.findings})
    assert kinds == ["aws-access-key-id", "aws-secret-access-key", "bearer", "password",
                     "pem-private-key", "psk"]
    assert {f.line for f in scan.findings} == {2, 3, 4, 5, 6, 7}
    dumped = to_json(scan)
    for secret in ("SuperSecret123", "hunter2hunter2", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "eyJhbGci"):
        assert secret not in dumped


def test_clean_boot_log_has_no_findings() -> None:
    assert host.find_secrets("[    0.000000] Linux version 6.1\nhub-01 login: \n", "boot").findings == ()
