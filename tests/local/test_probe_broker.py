"""The MQTT and TLS probes against real mosquitto brokers on 127.0.0.1.

Each broker runs with certificates made here (a CA like a real one: basicConstraints
and keyUsage; leaves with keyUsage/EKU/SAN). A defective broker is started too, so
every check is seen to fail: one accepting clients without a certificate, one
serving TLS 1.0 with SECLEVEL=0 ciphers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hil.probes.evidence import to_json
from hil.probes.mqtt import (
    ClientIdentity,
    MqttRoundTrip,
    mtls_matrix,
    mtls_refusal,
    plaintext_connect,
)
from hil.probes.throwaway_pki import foreign_client_identity
from hil.probes.tls import tls_scan, validate_chain
from hil.probes.tls_policy import judge_tls, load_tls_policy

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(),
                                reason="mosquitto not installed (apt-get install mosquitto)")

NOW = dt.datetime.now(dt.UTC)


# -- a small PKI ---------------------------------------------------------------------------

@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path
    key_file: Path


def _write(folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    cf, kf = folder / f"{name}.pem", folder / f"{name}.key"
    cf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kf.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    kf.chmod(0o600)
    return Issued(cert, key, cf, kf)


def make_ca(folder: Path, name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _write(folder, name, cert, key)


def issue(folder: Path, name: str, ca: Issued, *, server: bool, not_before: dt.datetime | None = None,
          not_after: dt.datetime | None = None) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca.cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - dt.timedelta(days=1))
               .not_valid_after(not_after or NOW + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=True, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return _write(folder, name, builder.sign(ca.key, hashes.SHA256()), key)


@dataclass
class Pki:
    ca: Issued
    server: Issued
    good: Issued
    expired: Issued
    foreign: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, other_ca = make_ca(d, "lab-ca"), make_ca(d, "foreign-ca")
    return Pki(
        ca=ca,
        server=issue(d, "server", ca, server=True),
        good=issue(d, "harness", ca, server=False),
        expired=issue(d, "expired", ca, server=False, not_before=NOW - dt.timedelta(days=60),
                      not_after=NOW - dt.timedelta(days=30)),
        foreign=issue(d, "foreign", other_ca, server=False),
    )


# -- brokers -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout} s: {log.read_text()}")


@pytest.fixture(scope="module")
def broker_factory(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []
    d = tmp_path_factory.mktemp("brokers")

    def start(name: str, *tls_lines: str, tls: bool = True) -> int:
        port = _free_port()
        lines = ["per_listener_settings true", "user root", f"listener {port} 127.0.0.1"]
        if tls:
            lines += [f"cafile {pki.ca.cert_file}", f"certfile {pki.server.cert_file}",
                      f"keyfile {pki.server.key_file}"]
        lines += list(tls_lines)
        conf, log = d / f"{name}.conf", d / f"{name}.log"
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log.open("wb"),
                                stderr=subprocess.STDOUT)
        procs.append(proc)
        _wait_listening(port, proc, log)
        return port

    yield start
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=10)


HARDENED = ("require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2",
            "allow_anonymous false",
            "ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
            "ECDHE-ECDSA-CHACHA20-POLY1305")


@pytest.fixture(scope="module")
def hardened_port(broker_factory) -> int:  # type: ignore[no-untyped-def]
    return int(broker_factory("hardened", *HARDENED))


def _identities(pki: Pki) -> tuple[ClientIdentity, ...]:
    return (ClientIdentity("valid", pki.good.cert_file, pki.good.key_file), ClientIdentity("none"),
            ClientIdentity("expired", pki.expired.cert_file, pki.expired.key_file),
            ClientIdentity("foreign", pki.foreign.cert_file, pki.foreign.key_file))


# -- the mutual-TLS matrix ------------------------------------------------------------------

def test_matrix_on_hardened_broker_accepts_only_the_valid_cert(pki: Pki, hardened_port: int) -> None:
    m = mtls_matrix("127.0.0.1", hardened_port, pki.ca.cert_file, _identities(pki), timeout=3.0)
    print(to_json(m))
    assert m.accepted_identities == ("valid",)
    valid = m.attempt("valid")
    assert valid is not None and valid.reason_code == 0 and valid.error is None
    for name in ("none", "expired", "foreign"):
        att = m.attempt(name)
        # TLS 1.3: the alert comes on the first read - or is lost when the broker closes
        # before our CONNECT arrives; never a CONNACK, never "accepted"
        assert att is not None and att.outcome in ("refused", "inconclusive") and att.reason_code is None
        assert att.error


@pytest.mark.parametrize(("name", "alert"), [
    ("none", "CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE"), ("expired", "CERTIFICATE_EXPIRED"),
    ("foreign", "UNKNOWN_CA")])
def test_refusal_needs_an_alert_next_to_a_valid_success(pki: Pki, hardened_port: int, name: str,
                                                        alert: str) -> None:
    ident = {i.name: i for i in _identities(pki)}
    ev = mtls_refusal("127.0.0.1", hardened_port, pki.ca.cert_file, ident["valid"], ident[name], timeout=3.0)
    print(to_json(ev))
    assert ev.verdict == "refused", ev.why
    assert ev.baselines[-1].accepted and re.search(alert, ev.why)
    # a TLS 1.3 session closed without an alert is not taken as a refusal: the pair is then
    # tried again capped at TLS 1.2, where the alert comes during the handshake
    if ev.attempts[0].outcome == "inconclusive":
        assert [a.outcome for a in ev.attempts] == ["inconclusive", "refused"]
        assert ev.attempts[1].max_tls_version == "TLSv1_2"


def test_throwaway_foreign_identity_is_refused_by_unknown_ca(pki: Pki, hardened_port: int,
                                                              tmp_path: Path) -> None:
    foreign = foreign_client_identity(tmp_path / "pki")
    assert foreign.origin == "throwaway" and (tmp_path / "pki/foreign-client.key").stat().st_mode & 0o077 == 0
    assert foreign_client_identity(tmp_path / "pki") == foreign  # made once per folder
    valid = ClientIdentity("valid", pki.good.cert_file, pki.good.key_file)
    ev = mtls_refusal("127.0.0.1", hardened_port, pki.ca.cert_file, valid, foreign, timeout=3.0)
    assert ev.verdict == "refused" and "UNKNOWN_CA" in ev.why


def test_refusal_without_positive_evidence_is_inconclusive(pki: Pki, hardened_port: int,
                                                           tmp_path: Path) -> None:
    valid = ClientIdentity("valid", pki.good.cert_file, pki.good.key_file)
    none = ClientIdentity("none")
    # nothing listens: a refused TCP connect proves nothing about certificates
    closed = mtls_refusal("127.0.0.1", _free_port(), pki.ca.cert_file, valid, none, timeout=2.0)
    assert closed.verdict == "inconclusive" and "TCP connect" in closed.why and not closed.attempts
    # something listens and never answers: a timeout proves nothing either
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        hung = mtls_refusal("127.0.0.1", silent.getsockname()[1], pki.ca.cert_file, valid, none, timeout=1.0)
    assert hung.verdict == "inconclusive" and not hung.attempts
    # the harness rejects the server (wrong CA configured): nothing learnt about the client
    other = make_ca(tmp_path, "not-the-lab-ca")
    wrong = mtls_refusal("127.0.0.1", hardened_port, other.cert_file, valid, none, timeout=2.0)
    assert wrong.verdict == "inconclusive" and "harness rejected the broker's certificate" in wrong.why


def test_matrix_on_broker_without_required_cert_reports_none_accepted(pki: Pki, broker_factory) -> None:  # type: ignore[no-untyped-def]
    port = broker_factory("lax", "require_certificate false", "tls_version tlsv1.2", "allow_anonymous true")
    m = mtls_matrix("127.0.0.1", port, pki.ca.cert_file, _identities(pki), timeout=3.0)
    print(to_json(m))
    none = m.attempt("none")
    assert none is not None and none.accepted and none.reason_code == 0
    assert "none" in m.accepted_identities
    ident = {i.name: i for i in _identities(pki)}
    lax = mtls_refusal("127.0.0.1", port, pki.ca.cert_file, ident["valid"], ident["none"])
    assert lax.verdict == "accepted"


def test_connack_refusal_is_positive_evidence(pki: Pki, broker_factory) -> None:  # type: ignore[no-untyped-def]
    """A broker that takes the TLS session but refuses the client in MQTT (CONNACK 5)."""
    port = broker_factory("acl", "require_certificate false", "tls_version tlsv1.2", "allow_anonymous false")
    ident = {i.name: i for i in _identities(pki)}
    m = mtls_matrix("127.0.0.1", port, pki.ca.cert_file, (ident["none"],), timeout=3.0)
    att = m.attempts[0]
    assert att.outcome == "refused" and att.reason_code == 5 and "not authorised" in (att.error or "")


def test_matrix_wrong_server_ca_is_refused_by_the_client(pki: Pki, hardened_port: int,
                                                         tmp_path: Path) -> None:
    other = make_ca(tmp_path, "not-the-lab-ca")
    m = mtls_matrix("127.0.0.1", hardened_port, other.cert_file,
                    (ClientIdentity("valid", pki.good.cert_file, pki.good.key_file),), timeout=3.0)
    att = m.attempts[0]
    assert att.outcome == "inconclusive"
    assert att.error and "harness rejected the broker's certificate" in att.error


def test_plaintext_probe(broker_factory, hardened_port: int) -> None:  # type: ignore[no-untyped-def]
    open_port = broker_factory("plain", "allow_anonymous true", tls=False)
    assert plaintext_connect("127.0.0.1", open_port, timeout=3.0).accepted
    # a TLS-only listener does not answer a plaintext CONNECT
    assert not plaintext_connect("127.0.0.1", hardened_port, timeout=2.0).accepted
    closed = plaintext_connect("127.0.0.1", _free_port(), timeout=2.0)
    assert not closed.accepted and closed.error and "refused" in closed.error.lower()


def test_round_trip_with_harness_identity(pki: Pki, hardened_port: int) -> None:
    with MqttRoundTrip("127.0.0.1", hardened_port, ca_file=pki.ca.cert_file, cert_file=pki.good.cert_file,
                       key_file=pki.good.key_file, timeout=3.0) as rt:
        samples = [rt.round_trip() for _ in range(20)]
    assert all(0 < s < 1.0 for s in samples)


# -- sslyze and the chain ---------------------------------------------------------------------

def test_sslyze_on_hardened_broker(pki: Pki, hardened_port: int) -> None:
    ev = tls_scan("127.0.0.1", hardened_port, ca_file=pki.ca.cert_file, client_cert=pki.good.cert_file,
                  client_key=pki.good.key_file)
    print(to_json(ev))
    assert not ev.scan_errors
    assert ev.legacy_versions == ()
    assert "TLS 1.2" in ev.accepted_versions and "TLS 1.3" in ev.accepted_versions
    assert ev.weak_ciphers == ()
    assert judge_tls(ev, load_tls_policy()).compliant
    assert ev.chain is not None and ev.chain.valid, ev.chain
    assert ev.chain.days_until_expiry is not None and 360 < ev.chain.days_until_expiry < 366


def test_sslyze_sees_tls11_on_legacy_broker(pki: Pki, broker_factory) -> None:  # type: ignore[no-untyped-def]
    port = broker_factory("legacy", "require_certificate true", "use_identity_as_username true",
                          # mosquitto 2.0.11 rejects "tlsv1": 1.1 is the oldest minimum it takes
                          "tls_version tlsv1.1", "ciphers DEFAULT:@SECLEVEL=0", "allow_anonymous false")
    ev = tls_scan("127.0.0.1", port, ca_file=pki.ca.cert_file, client_cert=pki.good.cert_file,
                  client_key=pki.good.key_file)
    print(to_json(ev))
    assert "TLS 1.1" in ev.legacy_versions


def test_cipher_policy_fails_on_a_real_broker_serving_cbc(pki: Pki, broker_factory) -> None:  # type: ignore[no-untyped-def]
    """TLS 1.2 only, with one CBC suite next to an AEAD one: the old deny-list passed it."""
    port = broker_factory("cbc", *HARDENED[:3], "allow_anonymous false",
                          "ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA256")
    ev = tls_scan("127.0.0.1", port, ca_file=pki.ca.cert_file, client_cert=pki.good.cert_file,
                  client_key=pki.good.key_file)
    verdict = judge_tls(ev, load_tls_policy())
    print(to_json(verdict))
    assert ev.weak_ciphers == (), "the old marker list does not see CBC"
    assert [v.suite for v in verdict.suites_outside] == ["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"]
    assert "CBC mode" in verdict.suites_outside[0].flaws and not verdict.protocols_outside


def test_chain_validation_fails_for_wrong_name_and_foreign_ca(pki: Pki) -> None:
    chain = [pki.server.cert]
    ca_pem = pki.ca.cert_file.read_bytes()
    assert validate_chain(chain, ca_pem, "127.0.0.1").valid
    wrong_name = validate_chain(chain, ca_pem, "127.0.0.2")
    assert not wrong_name.valid and wrong_name.error
    foreign = validate_chain(chain, pki.foreign.cert_file.read_bytes(), "127.0.0.1")
    assert not foreign.valid
    later = validate_chain(chain, ca_pem, "127.0.0.1", now=NOW + dt.timedelta(days=400))
    assert not later.valid and later.days_until_expiry is not None and later.days_until_expiry < 0
