"""I3/I7: the MQTT broker's mutual TLS (CONNACK 0 only for a valid client certificate),
TLS versions and cipher suites (sslyze, judged against a policy file), and the server
chain to the lab/fleet CA.

A refusal counts only with positive evidence (a TLS alert about the certificate, or a
non-zero CONNACK) while the valid identity is accepted by the same endpoint in the same
test; anything else (timeout, refused connect, the harness rejecting the server) is
inconclusive and errors as such. Without a foreign certificate in the inventory the
harness presents one from a CA it made itself for this run.
"""

from __future__ import annotations

import pytest

from hil.errors import InconclusiveEvidence
from hil.hub import Hub
from hil.inventory import BrokerExpectation, Service
from hil.probes.mqtt import ClientIdentity, broker_identities, mtls_matrix, mtls_refusal
from hil.probes.tls import TlsEvidence
from hil.probes.tls_policy import judge_tls, load_tls_policy
from hil_pytest.allure_labels import BLOCKER
from hil_pytest.verdicts import not_applicable
from suites.evidence import attach_evidence
from suites.security.owasp import owasp

# every check here is about the hub's MQTT broker
pytestmark = [pytest.mark.needs_service("mqtt_broker")]

MIN_DAYS_VALID = 30
"""The server certificate must not expire within this many days (renewal window)."""


def _broker(hub: Hub) -> BrokerExpectation:
    broker = hub.device.expect.broker
    if broker is None:
        raise not_applicable(hub.name, [Service.MQTT_BROKER])
    return broker


def _identity(broker: BrokerExpectation, name: str, foreign: ClientIdentity) -> ClientIdentity:
    ident = next((i for i in broker_identities(broker, foreign=foreign) if i.name == name), None)
    if ident is None:
        pytest.skip(f"devices.yaml expect.broker has no {name} certificate")
    return ident


@owasp("I3", isvs="V4", severity=BLOCKER)
def test_broker_accepts_valid_client_certificate(hub: Hub, foreign_identity: ClientIdentity) -> None:
    broker = _broker(hub)
    m = mtls_matrix(broker.host or hub.device.ssh.host, broker.port, broker.ca_file,
                    (_identity(broker, "valid", foreign_identity),), device=hub.name)
    attach_evidence("mTLS: valid certificate", m)
    att = m.attempts[0]
    if att.outcome == "inconclusive":
        raise InconclusiveEvidence(f"{hub.name}: no answer to the valid identity: {att.error}")
    assert att.accepted, f"{hub.name}: valid client certificate refused ({att.error})"


@owasp("I3", isvs="V4", severity=BLOCKER)
@pytest.mark.parametrize("identity", ["none", "expired", "foreign"])
def test_broker_refuses_client(hub: Hub, identity: str, foreign_identity: ClientIdentity) -> None:
    broker = _broker(hub)
    valid, probe = (_identity(broker, name, foreign_identity) for name in ("valid", identity))
    ev = mtls_refusal(broker.host or hub.device.ssh.host, broker.port, broker.ca_file, valid, probe,
                      device=hub.name)
    attach_evidence(f"mTLS: {identity} certificate next to the valid one", ev)
    assert ev.verdict != "accepted", \
        f"{hub.name}: broker gave CONNACK 0 to a client with {identity} certificate ({ev.identity_origin})"
    if ev.verdict != "refused":
        raise InconclusiveEvidence(f"{hub.name}: no proof the {identity} certificate is refused: {ev.why}")


@owasp("I7", isvs="V4", severity=BLOCKER)
def test_broker_tls_1_2_or_newer_only(hub: Hub, broker_tls: TlsEvidence) -> None:
    """Every protocol version the broker accepts must be in the TLS policy (TLS 1.2, 1.3)."""
    verdict = judge_tls(broker_tls, load_tls_policy())
    attach_evidence("sslyze: versions", {"scan": broker_tls, "policy": verdict.policy})
    if broker_tls.scan_errors:
        raise InconclusiveEvidence(f"{hub.name}: sslyze could not test: {broker_tls.scan_errors}")
    assert not verdict.protocols_outside, \
        f"{hub.name}: broker accepts {', '.join(verdict.protocols_outside)} (outside {verdict.policy})"


@owasp("I7", isvs="V4")
def test_broker_cipher_suites_within_policy(hub: Hub, broker_tls: TlsEvidence) -> None:
    """Every accepted protocol and suite must be in the TLS policy file (hil/policies)."""
    policy = load_tls_policy()
    verdict = judge_tls(broker_tls, policy)
    attach_evidence(f"sslyze vs TLS policy {verdict.policy}", verdict)
    if not broker_tls.ciphers:
        raise InconclusiveEvidence(f"{hub.name}: sslyze saw no accepted cipher suite at all "
                                   f"({broker_tls.scan_errors or 'no errors reported'})")
    bad = [v.describe() for v in verdict.suites_outside]
    assert not bad, f"{hub.name}: cipher suites outside {verdict.policy}: {'; '.join(bad)}"


@owasp("I7", isvs="V4")
def test_broker_chain_valid_and_not_expiring(hub: Hub, broker_tls: TlsEvidence) -> None:
    chain = broker_tls.chain
    attach_evidence("server chain", chain)
    if chain is None:
        raise InconclusiveEvidence(f"{hub.name}: sslyze got no certificate: {broker_tls.scan_errors}")
    assert chain.valid, f"{hub.name}: chain invalid for {chain.server_name}: {chain.error}"
    assert chain.days_until_expiry is not None and chain.days_until_expiry >= MIN_DAYS_VALID, \
        f"{hub.name}: server certificate expires in {chain.days_until_expiry} days (< {MIN_DAYS_VALID})"
