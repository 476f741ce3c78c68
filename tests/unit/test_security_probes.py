"""Pure logic of the security probes that must not be fooled: scan coverage, per-account
sshd contexts, password states, DER key recognition, MQTT framing, suite flaws."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hil.errors import ParseError
from hil.probes import accounts, keys, ports
from hil.probes.mqtt_connect import connect_packet, parse_connack
from hil.probes.ssh_accounts import (
    SshdContext,
    Vantage,
    addresses_in_match_lines,
    connection_spec,
    credential_candidates,
    parse_sshd_t_batch,
)
from hil.probes.tls_policy import load_tls_policy, suite_flaws

DATA = Path(__file__).resolve().parents[1] / "data" / "probes"


def read(name: str) -> str:
    return (DATA / name).read_text()


# -- scan coverage ---------------------------------------------------------------------------

def _scan(text: str) -> ports.PortScan:
    run = ports.parse_nmap_run(text)
    return ports.PortScan(host="h", address="127.0.0.1", open_ports=run.open_ports, tool="nmap",
                          tool_version=run.version, ports_scanned=run.ports_scanned, duration=1.0,
                          complete=run.ports_scanned == 65535, answered_ports=run.answered_ports,
                          filtered_ports=run.filtered_ports)


def test_recorded_scan_that_saw_the_host_supports_a_verdict() -> None:
    scan = _scan(read("nmap_127.0.0.1.xml"))
    assert scan.answered_ports == 65535 and scan.filtered_ports == 0 and scan.host_seen
    assert scan.coverage_problems(must_be_open=[2024]) == ()


def test_scan_of_a_host_that_answers_nothing_cannot_pass() -> None:
    """nmap -Pn marks the host "up" by assumption; every port filtered means nothing was seen.
    Recorded from a lab hub whose firewall dropped the harness's SYNs (ports 1-1000 only:
    the full range takes nmap far longer than its deadline when nothing answers)."""
    scan = _scan(read("nmap_all_filtered.xml"))
    assert scan.open_ports == () and scan.answered_ports == 0 and scan.filtered_ports == 1000
    problems = scan.coverage_problems(must_be_open=[22])
    assert any("scanned 1000 of 65535" in p for p in problems)
    assert any("answered no probe" in p for p in problems)
    assert any("22 not seen open" in p for p in problems)


def test_scan_of_the_top_ports_only_is_incomplete() -> None:
    text = read("nmap_127.0.0.1.xml").replace('numservices="65535"', 'numservices="1000"')
    assert any("scanned 1000 of 65535" in p for p in _scan(text).coverage_problems())


def test_scan_missing_the_ssh_port_is_not_evidence() -> None:
    assert "2222" in " ".join(_scan(read("nmap_127.0.0.1.xml")).coverage_problems(must_be_open=[2222]))


def test_nmap_xml_with_two_hosts_is_refused() -> None:
    text = read("nmap_127.0.0.1.xml")
    host = text[text.index("<host "):text.index("</host>") + 7]
    with pytest.raises(ParseError, match="2 hosts"):
        ports.parse_nmap_run(text.replace(host, host + host))


# -- sshd per account and address --------------------------------------------------------------

def test_match_addresses_give_one_address_inside_each_pattern() -> None:
    lines = ("Match Address 10.20.0.0/16,!10.20.9.9\n"
             "  match user ops address 192.168.7.*\n"
             "Match Group admins\n"
             "Match Address 172.28.79.1\n")
    assert addresses_in_match_lines(lines) == ("10.20.0.1", "192.168.7.1", "172.28.79.1")


def test_connection_spec_carries_local_address_and_port() -> None:
    spec = connection_spec("ops", "10.0.0.7", Vantage("10.0.0.7", "10.0.0.2", 2222))
    assert spec == "user=ops,host=10.0.0.7,addr=10.0.0.7,laddr=10.0.0.2,lport=2222"


def test_sshd_batch_parses_each_context_and_judges_it() -> None:
    hardened, default = read("sshd_T_hardened.txt"), read("sshd_T_debian_default.txt")
    batch = parse_sshd_t_batch(f"### user=hil,addr=a\n{hardened}### user=ops,addr=a\n{default}")
    assert set(batch) == {"user=hil,addr=a", "user=ops,addr=a"}
    assert SshdContext("hil", "a", batch["user=hil,addr=a"]).deviations() == {}
    ops = SshdContext("ops", "a", batch["user=ops,addr=a"]).deviations()
    assert ops.get("kbdinteractiveauthentication") == "yes" or ops.get("passwordauthentication") == "yes", ops
    assert "permitrootlogin" not in ops, "PermitRootLogin only matters for root"


def test_sshd_batch_failure_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="failed"):
        parse_sshd_t_batch("### user=x,addr=a\nBad Match user\n### failed 255\n")


def test_password_settings_do_not_count_when_only_publickey_is_a_method() -> None:
    settings = {"passwordauthentication": ("yes",), "kbdinteractiveauthentication": ("yes",),
                "permitrootlogin": ("yes",), "permitemptypasswords": ("no",),
                "authenticationmethods": ("publickey",)}
    assert SshdContext("ops", "a", settings).deviations() == {}
    assert SshdContext("root", "a", settings).deviations() == {"permitrootlogin": "yes"}
    with_pw = {**settings, "authenticationmethods": ("publickey,password",)}
    assert "passwordauthentication" in SshdContext("ops", "a", with_pw).deviations()


def test_credential_candidates_cover_every_login_account() -> None:
    pairs = credential_candidates(["ops", "root"], fixed=[("pi", "raspberry"), ("root", "root")],
                                  passwords=["{user}", "changeme"])
    assert pairs == (("pi", "raspberry"), ("root", "root"), ("ops", "ops"), ("ops", "changeme"),
                     ("root", "changeme"))


# -- accounts and password states ------------------------------------------------------------------

SHELLS = accounts.parse_shells("# /etc/shells\n/bin/sh\n/bin/bash\n/usr/bin/bash\n")


def test_login_shells_from_etc_shells_not_from_uid() -> None:
    accts = accounts.parse_passwd_states(
        "root:0:/bin/bash:shadow\nsync:4:/bin/sync:shadow\nsshd:103:/usr/sbin/nologin:shadow\n"
        "svc:998:/bin/sh:shadow\nops:1001:/bin/bash:shadow\nodd:1002:/opt/shell:shadow\n", SHELLS)
    assert [a.name for a in accts if a.login_shell] == ["root", "svc", "ops"]
    assert not accounts.is_login_shell("/usr/sbin/nologin", frozenset())
    assert accounts.is_login_shell("/opt/shell", frozenset()), "no /etc/shells: only the nologin rule"


def test_password_states_agree_and_passwd_field_wins() -> None:
    accts = accounts.Accounts("d", accounts.parse_passwd_states(
        "root:0:/bin/bash:shadow\nguest:1002:/bin/bash:shadow\nold:1003:/bin/sh:empty\n", SHELLS), ())
    shadow = accounts.parse_shadow_states("root:locked\nguest:empty\nold:locked\n")
    status = accounts.parse_passwd_s("root L 2026-12-04 0 99999 7 -1\nguest NP 2026-12-04 0 99999 7 -1\n"
                                     "old L 2026-12-04 0 99999 7 -1\n")
    both = accounts.combine_password_states(accts, shadow, status)
    files_only = accounts.combine_password_states(accts, shadow, None)
    assert both.empty == files_only.empty == ("guest", "old")
    assert both.disagreements == ("old: files say empty, passwd -S says locked",)
    with pytest.raises(ParseError):
        accounts.parse_passwd_s("root ?? x\n")


# -- DER private keys ---------------------------------------------------------------------------

def _der(key: object, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())  # type: ignore[attr-defined]


@pytest.mark.parametrize("make", [
    lambda: _der(ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8),
    lambda: _der(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL),
    lambda: _der(ec.generate_private_key(ec.SECP384R1()), serialization.PrivateFormat.PKCS8),
    lambda: _der(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                 serialization.PrivateFormat.TraditionalOpenSSL),
], ids=["ed25519-pkcs8", "ec-sec1", "ec-pkcs8", "rsa-pkcs1"])
def test_der_private_keys_are_recognised(make: object) -> None:
    data = make()  # type: ignore[operator]
    assert keys.der_private_key(data[:16], len(data))
    assert not keys.der_private_key(data[:16], len(data) + 100), "the SEQUENCE must span the whole file"


def test_der_that_is_not_a_key() -> None:
    assert not keys.der_private_key(bytes.fromhex("308202f9308201e1a003020102020101"), 0x2f9 + 4)  # cert
    assert not keys.der_private_key(bytes.fromhex("3082045c020103308204220609"), 0x45c + 4)  # PKCS#12
    assert not keys.der_private_key(b"#!/bin/sh\necho hi\n", 18)


def test_der_heads_from_head_and_od() -> None:
    stream = b"==> /a b <==\n" + bytes(range(16)) + b"\n==> /c <==\n" + b"\n" * 16
    hexed = "\n".join(" " + " ".join(f"{b:02x}" for b in stream[i:i + 16]) for i in range(0, len(stream), 16))
    parsed = keys.parse_der_heads("48 /a b\n1200 /c\n" + hexed + "\n")
    assert parsed == {"/a b": (48, bytes(range(16))), "/c": (1200, b"\n" * 16)}
    with pytest.raises(ParseError):
        keys.parse_der_heads("48 /a\n zz\n")


# -- MQTT framing and TLS suite flaws ----------------------------------------------------------------

def test_connect_packet_and_connack() -> None:
    pkt = connect_packet("c1", keepalive=30)
    assert pkt[0] == 0x10 and pkt[1] == len(pkt) - 2 and pkt[2:8] == b"\x00\x04MQTT"
    assert parse_connack(b"\x20\x02\x00\x00") == 0 and parse_connack(b"\x20\x02\x00\x05") == 5
    assert parse_connack(b"") is None and parse_connack(b"\x30\x02\x00\x00") is None
    long_id = connect_packet("x" * 200)
    assert long_id[1] & 0x80 and long_id[2] == 1, "remaining length takes two bytes past 127"


def test_suite_flaws_and_policy_file() -> None:
    assert suite_flaws("TLS_RSA_WITH_AES_128_CBC_SHA") == (
        "CBC mode", "SHA-1 MAC", "RSA key exchange (no forward secrecy)")
    assert suite_flaws("TLS_DH_anon_WITH_AES_128_GCM_SHA256") == ("anonymous key exchange",)
    assert suite_flaws("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") == ()
    policy = load_tls_policy()
    assert policy.protocols == ("TLS 1.2", "TLS 1.3") and policy.version
    assert all(not suite_flaws(s) for suites in policy.cipher_suites.values() for s in suites)


# -- policy files ---------------------------------------------------------------------------------

def test_every_shipped_policy_loads() -> None:
    from hil.probes.containers import load_container_policy
    from hil.probes.files import load_setuid_policy

    assert "NET_BIND_SERVICE" in load_container_policy().capability_allowlist
    assert "/usr/bin/sudo" in load_setuid_policy().allowed


@pytest.mark.parametrize(("text", "field"), [
    ("name: x\nversion: '1'\nprotocols: [TLS 1.2]\n", "cipher_suites"),
    ("name: x\nversion: '1'\nprotocols: [TLS 1.2]\ncipher_suites: {TLS 1.3: [a]}\n", "cipher_suites"),
    ("name: x\nversion: '1'\nprotocols: TLS 1.2\ncipher_suites: {}\n", "protocols"),
    ("[not, a, mapping]\n", None),
    ("name: [unclosed\n", None),
])
def test_a_bad_policy_file_is_one_clear_error(tmp_path: Path, text: str, field: str | None) -> None:
    from hil.errors import UserError

    bad = tmp_path / "tls.yaml"
    bad.write_text(text)
    with pytest.raises(UserError) as err:
        load_tls_policy(bad)
    assert err.value.file == str(bad) and err.value.field == field
