"""The lab CA: issues every certificate the virtual rack uses, like a real CA would.

Strict verifiers (cryptography's, hence sslyze's) reject certificates without the
usual extensions, so the CA sets basicConstraints/keyUsage on itself and keyUsage,
extendedKeyUsage, subjectAltName (DNS name and IP address), SKI and AKI on leaves.
Material on disk is kept while it is still valid and issued by the current CA, so
`hil lab up` is idempotent and hubs keep their identity across up/down.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_BITS = 2048
CA_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=30)
"""A leaf that expires sooner than this is reissued on the next `lab up`."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Usage(Enum):
    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, both as files."""

    cert: Path
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key with mode 0600 from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    tmp.replace(path)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA key")
    return key


class CertificateAuthority:
    """One CA (certificate + key on disk) that signs leaves."""

    def __init__(self, cert: x509.Certificate, key: rsa.RSAPrivateKey, files: Issued) -> None:
        self.cert = cert
        self.key = key
        self.files = files

    @classmethod
    def ensure(cls, cert_path: Path, key_path: Path, common_name: str) -> CertificateAuthority:
        """Load the CA from disk if it is still good, otherwise create a new one."""
        files = Issued(cert_path, key_path)
        if cert_path.exists() and key_path.exists():
            try:
                cert, key = load_cert(cert_path), _load_key(key_path)
            except ValueError:
                pass
            else:
                if _same_key(cert, key) and cert.not_valid_after_utc - _now() > RENEW_BEFORE:
                    return cls(cert, key, files)
        key = _new_key()
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hil virtual lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            # backdated so that the expired leaf (last month) lies inside the CA's validity:
            # it must fail on its own date only
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert, key, files)

    def issued_this(self, cert: x509.Certificate) -> bool:
        if cert.issuer != self.cert.subject:
            return False
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def ensure_leaf(
        self,
        files: Issued,
        *,
        common_name: str,
        usage: Usage,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        expired: bool = False,
    ) -> Issued:
        """Keep ``files`` if they hold a good leaf from this CA with these names; else issue one.

        Every leaf carries a subjectAltName (the common name when no other name is
        given): strict verifiers require one on client certificates too.
        """
        dns_names = list(dns_names) or [common_name]
        if self._leaf_is_current(files, dns_names, ip_addresses, expired):
            return files
        key = _new_key()
        now = _now()
        if expired:
            not_before, not_after = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
        else:
            not_before, not_after = now - dt.timedelta(minutes=5), now + LEAF_LIFETIME
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        eku = ExtendedKeyUsageOID.SERVER_AUTH if usage is Usage.SERVER else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hil virtual lab"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=True,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        _write_private(files.key, _key_pem(key))
        _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
        return files

    def _leaf_is_current(self, files: Issued, dns_names: Sequence[str], ip_addresses: Sequence[str],
                         expired: bool) -> bool:
        if not (files.cert.exists() and files.key.exists()):
            return False
        try:
            cert, key = load_cert(files.cert), _load_key(files.key)
        except ValueError:
            return False
        if not (self.issued_this(cert) and _same_key(cert, key)):
            return False
        remaining = cert.not_valid_after_utc - _now()
        if expired != (remaining < dt.timedelta(0)) or (not expired and remaining < RENEW_BEFORE):
            return False
        return _sans(cert) == (set(dns_names), {str(ipaddress.ip_address(a)) for a in ip_addresses})


def _same_key(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bool:
    return bool(cert.public_key() == key.public_key())


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return (set(ext.get_values_for_type(x509.DNSName)),
            {str(a) for a in ext.get_values_for_type(x509.IPAddress)})


@dataclass(frozen=True)
class HubIdentity:
    """What the CA needs to know about a hub: its name and address."""

    name: str
    address: str


@dataclass(frozen=True)
class LabCertificates:
    """Paths of everything the CA issued for one lab."""

    ca: Path
    foreign_ca: Path
    harness: Issued
    expired: Issued
    foreign: Issued
    registry: Issued
    hub_server: dict[str, Issued]
    hub_device: dict[str, Issued]


REGISTRY_DNS = "registry.lab"


def ensure_lab_certificates(ca_dir: Path, hubs: Sequence[HubIdentity], *,
                            registry_address: str) -> LabCertificates:
    """Create or keep the whole certificate set under ``ca_dir`` (layout: lab/CONTRACT.md)."""
    ca = CertificateAuthority.ensure(ca_dir / "ca.pem", ca_dir / "ca.key", "hil lab CA")
    foreign_ca = CertificateAuthority.ensure(
        ca_dir / "foreign-ca.pem", ca_dir / "foreign-ca.key", "untrusted foreign CA"
    )

    def pair(stem: str) -> Issued:
        return Issued(ca_dir / f"{stem}.pem", ca_dir / f"{stem}.key")

    harness = ca.ensure_leaf(pair("harness"), common_name="hil-harness", usage=Usage.CLIENT)
    expired = ca.ensure_leaf(pair("expired"), common_name="hil-harness-expired", usage=Usage.CLIENT,
                             expired=True)
    foreign = foreign_ca.ensure_leaf(pair("foreign"), common_name="hil-harness", usage=Usage.CLIENT)
    registry = ca.ensure_leaf(pair("registry"), common_name=REGISTRY_DNS, usage=Usage.SERVER,
                              dns_names=[REGISTRY_DNS], ip_addresses=[registry_address])
    servers: dict[str, Issued] = {}
    devices: dict[str, Issued] = {}
    for hub in hubs:
        folder = ca_dir / "hubs" / hub.name
        servers[hub.name] = ca.ensure_leaf(
            Issued(folder / "server.pem", folder / "server.key"), common_name=hub.name,
            usage=Usage.SERVER, dns_names=[hub.name], ip_addresses=[hub.address],
        )
        devices[hub.name] = ca.ensure_leaf(
            Issued(folder / "device.pem", folder / "device.key"), common_name=hub.name,
            usage=Usage.CLIENT, dns_names=[hub.name], ip_addresses=[hub.address],
        )
    return LabCertificates(ca=ca.files.cert, foreign_ca=foreign_ca.files.cert, harness=harness,
                           expired=expired, foreign=foreign, registry=registry,
                           hub_server=servers, hub_device=devices)
