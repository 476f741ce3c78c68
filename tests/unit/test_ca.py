"""The lab CA issues chains that a strict verifier (cryptography's, as sslyze uses) accepts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from hil_lab.ca import HubIdentity, LabCertificates, ensure_lab_certificates, load_cert

HUBS = [HubIdentity("hub-01", "172.28.77.11"), HubIdentity("hub-vuln", "172.28.77.90")]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LabCertificates:
    return ensure_lab_certificates(tmp_path_factory.mktemp("ca"), HUBS, registry_address="172.28.77.5")


def _store(path: Path) -> Store:
    return Store([load_cert(path)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_hub_server_cert_verifies_for_its_name_and_address(certs: LabCertificates) -> None:
    leaf = load_cert(certs.hub_server["hub-01"].cert)
    builder = PolicyBuilder().store(_store(certs.ca)).time(_now())
    builder.build_server_verifier(x509.DNSName("hub-01")).verify(leaf, [])
    builder.build_server_verifier(x509.IPAddress(ipaddress.ip_address("172.28.77.11"))).verify(leaf, [])
    with pytest.raises(VerificationError):
        builder.build_server_verifier(x509.DNSName("hub-02")).verify(leaf, [])


def test_registry_cert_verifies_by_ip_and_dns(certs: LabCertificates) -> None:
    leaf = load_cert(certs.registry.cert)
    builder = PolicyBuilder().store(_store(certs.ca)).time(_now())
    builder.build_server_verifier(x509.IPAddress(ipaddress.ip_address("172.28.77.5"))).verify(leaf, [])
    builder.build_server_verifier(x509.DNSName("registry.lab")).verify(leaf, [])


@pytest.mark.parametrize("which", ["harness", "device"])
def test_client_certs_verify(certs: LabCertificates, which: str) -> None:
    issued = certs.harness if which == "harness" else certs.hub_device["hub-vuln"]
    verifier = PolicyBuilder().store(_store(certs.ca)).time(_now()).build_client_verifier()
    verified = verifier.verify(load_cert(issued.cert), [])
    assert verified.chain[-1] == load_cert(certs.ca)


def test_server_cert_is_not_a_client_cert(certs: LabCertificates) -> None:
    verifier = PolicyBuilder().store(_store(certs.ca)).time(_now()).build_client_verifier()
    with pytest.raises(VerificationError):
        verifier.verify(load_cert(certs.hub_server["hub-01"].cert), [])


def test_expired_cert_is_expired_and_refused(certs: LabCertificates) -> None:
    leaf = load_cert(certs.expired.cert)
    assert leaf.not_valid_after_utc < _now()
    verifier = PolicyBuilder().store(_store(certs.ca)).time(_now()).build_client_verifier()
    with pytest.raises(VerificationError):
        verifier.verify(leaf, [])
    # the same certificate is fine inside its validity window: only the date is wrong
    inside = leaf.not_valid_before_utc + dt.timedelta(hours=1)
    PolicyBuilder().store(_store(certs.ca)).time(inside).build_client_verifier().verify(leaf, [])


def test_foreign_cert_does_not_verify_against_lab_ca(certs: LabCertificates) -> None:
    leaf = load_cert(certs.foreign.cert)
    with pytest.raises(VerificationError):
        PolicyBuilder().store(_store(certs.ca)).time(_now()).build_client_verifier().verify(leaf, [])
    PolicyBuilder().store(_store(certs.foreign_ca)).time(_now()).build_client_verifier().verify(leaf, [])


def test_ca_has_ca_extensions(certs: LabCertificates) -> None:
    ca = load_cert(certs.ca)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign


def test_private_keys_are_0600(certs: LabCertificates) -> None:
    keys = [certs.harness.key, certs.expired.key, certs.foreign.key, certs.registry.key,
            certs.hub_server["hub-01"].key, certs.hub_device["hub-01"].key, certs.ca.with_suffix(".key")]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_second_run_keeps_material(certs: LabCertificates) -> None:
    before = {p: p.read_bytes() for p in (certs.ca, certs.harness.cert, certs.expired.cert,
                                           certs.hub_server["hub-01"].cert)}
    ensure_lab_certificates(certs.ca.parent, HUBS, registry_address="172.28.77.5")
    assert {p: p.read_bytes() for p in before} == before


def test_new_address_reissues_only_that_hub(tmp_path: Path) -> None:
    first = ensure_lab_certificates(tmp_path, HUBS[:1], registry_address="172.28.77.5")
    old = first.hub_server["hub-01"].cert.read_bytes()
    harness = first.harness.cert.read_bytes()
    second = ensure_lab_certificates(tmp_path, [HubIdentity("hub-01", "172.28.77.21")],
                                     registry_address="172.28.77.5")
    assert second.hub_server["hub-01"].cert.read_bytes() != old
    assert second.harness.cert.read_bytes() == harness
