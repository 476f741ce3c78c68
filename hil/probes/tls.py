"""TLS of the MQTT broker (OWASP IoT I7): versions, weak cipher suites, the server chain.

Versions and cipher suites come from sslyze 6 (a hand-written ``ssl`` probe fails on
its own side under OpenSSL 3 and then reports "refused" for a server that accepts old
TLS). The chain is validated to the lab/fleet CA with cryptography's X.509 verifier,
for the hub's address from the inventory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from hil.errors import DeviceUnreachable, ParseError
from hil.steps import step

TLS_VERSIONS: tuple[tuple[str, str], ...] = (
    ("SSL 2.0", "ssl_2_0_cipher_suites"),
    ("SSL 3.0", "ssl_3_0_cipher_suites"),
    ("TLS 1.0", "tls_1_0_cipher_suites"),
    ("TLS 1.1", "tls_1_1_cipher_suites"),
    ("TLS 1.2", "tls_1_2_cipher_suites"),
    ("TLS 1.3", "tls_1_3_cipher_suites"),
)
LEGACY_VERSIONS = ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1")

_WEAK_MARKERS = ("NULL", "EXPORT", "anon", "RC4", "_DES_", "DES_CBC", "3DES", "MD5", "RC2", "IDEA")


def cipher_weakness(name: str, key_size: int, anonymous: bool) -> str | None:
    """Why a cipher suite is weak (None if it is not): no auth, no/short encryption, broken primitives."""
    if anonymous:
        return "anonymous key exchange"
    if key_size < 128:
        return f"{key_size}-bit encryption"
    for marker in _WEAK_MARKERS:
        if marker in name:
            return f"{marker.strip('_')} in suite name"
    return None


@dataclass(frozen=True)
class AcceptedCipher:
    version: str
    name: str
    key_size: int
    weakness: str | None


@dataclass(frozen=True)
class ChainValidation:
    """The server chain checked against our CA for the name we connect to."""

    server_name: str
    valid: bool
    error: str | None
    subjects: tuple[str, ...]
    leaf_not_after: str | None
    days_until_expiry: float | None


@dataclass(frozen=True)
class TlsEvidence:
    host: str
    port: int
    accepted_versions: tuple[str, ...]
    ciphers: tuple[AcceptedCipher, ...]
    chain: ChainValidation | None
    scan_errors: tuple[str, ...]
    """Scan commands sslyze could not complete: their versions are unknown, not refused."""

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("legacy_versions", "weak_ciphers")

    @property
    def legacy_versions(self) -> tuple[str, ...]:
        return tuple(v for v in self.accepted_versions if v in LEGACY_VERSIONS)

    @property
    def weak_ciphers(self) -> tuple[AcceptedCipher, ...]:
        return tuple(c for c in self.ciphers if c.weakness)


# -- chain validation (pure) --------------------------------------------------------------

def _subject_of(name: str) -> DNSName | IPAddress:
    try:
        return IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return DNSName(name)


def validate_chain(chain: Sequence[x509.Certificate], ca_pem: bytes, server_name: str, *,
                   now: dt.datetime | None = None) -> ChainValidation:
    """Validate ``chain`` (leaf first) to the CA(s) in ``ca_pem`` for ``server_name`` (IP or DNS)."""
    moment = now or dt.datetime.now(dt.UTC)
    if not chain:
        return ChainValidation(server_name, False, "server sent no certificate", (), None, None)
    leaf = chain[0]
    subjects = tuple(c.subject.rfc4514_string() for c in chain)
    not_after = leaf.not_valid_after_utc
    days = (not_after - moment).total_seconds() / 86400.0
    error: str | None = None
    try:
        store = Store(x509.load_pem_x509_certificates(ca_pem))
        verifier = PolicyBuilder().store(store).time(moment).build_server_verifier(_subject_of(server_name))
        verifier.verify(leaf, list(chain[1:]))
    except VerificationError as exc:
        error = f"verification failed: {exc}"
    except ValueError as exc:
        error = f"CA file unusable: {exc}"
    return ChainValidation(server_name=server_name, valid=error is None, error=error, subjects=subjects,
                           leaf_not_after=not_after.isoformat(), days_until_expiry=round(days, 2))


# -- sslyze scan -------------------------------------------------------------------------------

def tls_scan(host: str, port: int, *, ca_file: Path, client_cert: Path | None = None,
             client_key: Path | None = None, server_name: str | None = None,
             network_timeout: int = 5) -> TlsEvidence:
    """Scan ``host:port`` with sslyze: versions SSL 2.0..TLS 1.3, accepted suites, the chain.

    ``client_cert``/``client_key``: the harness identity, for brokers that require one.
    ``ca_file`` is also handed to sslyze as a custom trust store (its own path validation
    stays in the attached result); the verdict on the chain is ``validate_chain``'s.
    """
    from hil.extras import needs_extra

    with needs_extra("security"):
        from sslyze import (  # type: ignore[attr-defined]  # sslyze re-exports without __all__
            CertificateInfoExtraArgument,
            ClientAuthenticationCredentials,
            ScanCommand,
            ScanCommandAttemptStatusEnum,
            ScanCommandsExtraArguments,
            Scanner,
            ServerNetworkConfiguration,
            ServerNetworkLocation,
            ServerScanRequest,
            ServerScanStatusEnum,
        )

    name = server_name or host
    creds = (ClientAuthenticationCredentials(certificate_chain_path=client_cert, key_path=client_key)
             if client_cert and client_key else None)
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        ip = None
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=host, port=port, ip_address=ip),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication=name, tls_client_auth_credentials=creds,
            network_timeout=network_timeout, network_max_retries=1),
        scan_commands={ScanCommand.CERTIFICATE_INFO, ScanCommand.SSL_2_0_CIPHER_SUITES,
                       ScanCommand.SSL_3_0_CIPHER_SUITES, ScanCommand.TLS_1_0_CIPHER_SUITES,
                       ScanCommand.TLS_1_1_CIPHER_SUITES, ScanCommand.TLS_1_2_CIPHER_SUITES,
                       ScanCommand.TLS_1_3_CIPHER_SUITES},
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file)),
    )
    with step("sslyze scan", host=host, port=port, server_name=name):
        scanner = Scanner()
        scanner.queue_scans([request])
        results = list(scanner.get_results())
        if len(results) != 1:
            raise ParseError(f"sslyze returned {len(results)} results for one server")
        result = results[0]
        if result.scan_status != ServerScanStatusEnum.COMPLETED or result.scan_result is None:
            trace = result.connectivity_error_trace
            raise DeviceUnreachable(f"sslyze could not connect to {host}:{port}: {trace or 'no detail'}")

    attempts: Any = result.scan_result
    accepted_versions: list[str] = []
    ciphers: list[AcceptedCipher] = []
    errors: list[str] = []
    for version, attr in TLS_VERSIONS:
        attempt = getattr(attempts, attr)
        if attempt.status != ScanCommandAttemptStatusEnum.COMPLETED or attempt.result is None:
            errors.append(f"{version}: {attempt.error_reason}")
            continue
        accepted = attempt.result.accepted_cipher_suites
        if accepted:
            accepted_versions.append(version)
        for acc in accepted:
            cs = acc.cipher_suite
            ciphers.append(AcceptedCipher(version=version, name=cs.name, key_size=cs.key_size,
                                          weakness=cipher_weakness(cs.name, cs.key_size, cs.is_anonymous)))

    chain: ChainValidation | None = None
    cert_attempt = attempts.certificate_info
    if cert_attempt.status == ScanCommandAttemptStatusEnum.COMPLETED and cert_attempt.result is not None:
        deployments = cert_attempt.result.certificate_deployments
        received = deployments[0].received_certificate_chain if deployments else []
        chain = validate_chain(received, Path(ca_file).read_bytes(), name)
    else:
        errors.append(f"certificate info: {cert_attempt.error_reason}")
    return TlsEvidence(host=host, port=port, accepted_versions=tuple(accepted_versions),
                       ciphers=tuple(ciphers), chain=chain, scan_errors=tuple(errors))
