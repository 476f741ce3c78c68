"""I3/I7: the MQTT broker's mutual TLS (CONNACK 0 only for a valid client certificate),
TLS versions and cipher suites (sslyze), and the server chain to the lab/fleet CA."""

from __future__ import annotations

import pytest

from hil.hub import Hub
from hil.inventory import BrokerExpectation, Service
from hil.probes.mqtt import ClientIdentity, broker_identities, mtls_matrix
from hil.probes.tls import TlsEvidence
from hil_pytest.verdicts import not_applicable
from suites.evidence import attach_evidence
from suites.labels import BLOCKER
from suites.security.owasp import owasp

MIN_DAYS_VALID = 30
"""The server certificate must not expire within this many days (renewal window)."""


# every check here is about the hub's MQTT broker
pytestmark = [pytest.mark.needs_service("mqtt_broker")]


def _broker(hub: Hub) -> BrokerExpectation:
    broker = hub.device.expect.broker
    if broker is None:
        raise not_applicable(hub.name, [Service.MQTT_BROKER])
    return broker


def _identity(broker: BrokerExpectation, name: str) -> ClientIdentity:
    ident = next((i for i in broker_identities(broker) if i.name == name), None)
    if ident is None:
        pytest.skip(f"devices.yaml expect.broker has no {name} certificate")
    return ident


@owasp("I3", isvs="V4", severity=BLOCKER)
def test_broker_accepts_valid_client_certificate(hub: Hub) -> None:
    broker = _broker(hub)
    m = mtls_matrix(broker.host or hub.device.ssh.host, broker.port, broker.ca_file,
                    (_identity(broker, "valid"),), device=hub.name)
    attach_evidence("mTLS: valid certificate", m)
    att = m.attempts[0]
    assert att.accepted, f"{hub.name}: valid client certificate not accepted ({att.error})"


@owasp("I3", isvs="V4", severity=BLOCKER)
@pytest.mark.parametrize("identity", ["none", "expired", "foreign"])
def test_broker_refuses_client(hub: Hub, identity: str) -> None:
    broker = _broker(hub)
    m = mtls_matrix(broker.host or hub.device.ssh.host, broker.port, broker.ca_file,
                    (_identity(broker, identity),), device=hub.name)
    attach_evidence(f"mTLS: {identity} certificate", m)
    att = m.attempts[0]
    assert not att.accepted, f"{hub.name}: broker gave CONNACK 0 to a client with {identity} certificate"


@owasp("I7", isvs="V4", severity=BLOCKER)
def test_broker_tls_1_2_or_newer_only(hub: Hub, broker_tls: TlsEvidence) -> None:
    attach_evidence("sslyze: versions", broker_tls)
    assert not broker_tls.scan_errors, f"{hub.name}: sslyze could not test: {broker_tls.scan_errors}"
    assert not broker_tls.legacy_versions, \
        f"{hub.name}: broker accepts {', '.join(broker_tls.legacy_versions)}"


@owasp("I7", isvs="V4")
def test_broker_no_weak_cipher_suites(hub: Hub, broker_tls: TlsEvidence) -> None:
    weak = [f"{c.version} {c.name} ({c.weakness})" for c in broker_tls.weak_ciphers]
    attach_evidence("sslyze: weak suites", {"weak": weak, "accepted": broker_tls.ciphers})
    assert broker_tls.ciphers, f"{hub.name}: sslyze saw no accepted cipher suite at all"
    assert not weak, f"{hub.name}: weak cipher suites accepted: {'; '.join(weak)}"


@owasp("I7", isvs="V4")
def test_broker_chain_valid_and_not_expiring(hub: Hub, broker_tls: TlsEvidence) -> None:
    chain = broker_tls.chain
    attach_evidence("server chain", chain)
    assert chain is not None, f"{hub.name}: sslyze got no certificate: {broker_tls.scan_errors}"
    assert chain.valid, f"{hub.name}: chain invalid for {chain.server_name}: {chain.error}"
    assert chain.days_until_expiry is not None and chain.days_until_expiry >= MIN_DAYS_VALID, \
        f"{hub.name}: server certificate expires in {chain.days_until_expiry} days (< {MIN_DAYS_VALID})"
