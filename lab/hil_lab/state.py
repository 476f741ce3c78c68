"""The lab's git-ignored state folder: keys, host keys, secrets, certificates, hub configs.

Everything here is generated once and kept across `hil lab up`/`down`, the way a
real device keeps its host keys and identity across reboots. Layout: lab/CONTRACT.md.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from hil.inventory import known_hosts_name
from hil_lab.ca import HubIdentity, LabCertificates, ensure_lab_certificates
from hil_lab.topology import (
    PLAIN_ADDRESS,
    PLAIN_NAME,
    PLAIN_SSH_PORT,
    REGISTRY_ADDRESS,
    REGISTRY_NAME,
    REGISTRY_PORT,
    SLOT,
    HubSpec,
)

HOST_KEY_TYPES = ("ed25519", "rsa")
RSA_HOST_KEY_BITS = 3072
PASSWORD_BYTES = 18


@dataclass(frozen=True)
class LabPaths:
    """Where each piece of state lives under ``root`` (lab/.state)."""

    root: Path

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ssh_key(self) -> Path:
        return self.root / "keys" / "hil_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def console_password(self) -> Path:
        return self.root / "secrets" / "console_password"

    @property
    def registry_certs(self) -> Path:
        """Only the registry's own certificate and key: what its container may see."""
        return self.root / "registry-certs"

    # rackd serves one slot's consoles and PDU: each slot of a checkout has its own, so
    # `HIL_LAB_SLOT=1 hil lab down` cannot stop slot 0's
    @property
    def _rackd(self) -> str:
        return "rackd" if SLOT == 0 else f"rackd-s{SLOT}"

    @property
    def rackd_pid(self) -> Path:
        return self.root / f"{self._rackd}.pid"

    @property
    def rackd_log(self) -> Path:
        return self.root / f"{self._rackd}.log"

    @property
    def rackd_hubs(self) -> Path:
        """The hubs rackd serves (one name per line): written by `lab up`."""
        return self.root / f"{self._rackd}.hubs"

    @property
    def dockerd_pid(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def dockerd_log(self) -> Path:
        return self.root / "dockerd.log"

    def host_key(self, hub: str, kind: str) -> Path:
        return self.root / "hostkeys" / hub / f"ssh_host_{kind}_key"

    def hub_config(self, hub: str) -> Path:
        return self.root / "hubs" / hub


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically, created with ``mode`` (never briefly more open)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_bytes() == data:
        os.chmod(path, mode)
        return
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    tmp.replace(path)


def _openssh_pair(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey, comment: str) -> tuple[bytes, bytes]:
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    return private, public + f" {comment}\n".encode()


def ensure_ssh_key(path: Path, kind: str, comment: str) -> str:
    """Create an OpenSSH key pair at ``path``/``path.pub`` unless present; return the public line."""
    pub = path.with_name(path.name + ".pub")
    if not (path.exists() and pub.exists()):
        key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        if kind == "ed25519":
            key = ed25519.Ed25519PrivateKey.generate()
        elif kind == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_HOST_KEY_BITS)
        else:
            raise ValueError(f"unsupported SSH key type {kind!r}")
        private, public = _openssh_pair(key, comment)
        _write(path, private, 0o600)
        _write(pub, public, 0o644)
    return pub.read_text().strip()


def ensure_console_password(path: Path) -> None:
    if not path.exists() or not path.read_text().strip():
        _write(path, (secrets.token_urlsafe(PASSWORD_BYTES) + "\n").encode(), 0o600)
    os.chmod(path, 0o600)


def known_hosts_lines(paths: LabPaths, hubs: Sequence[HubSpec]) -> list[str]:
    """One line per hub address and host key type (port 22: the plain-address form), and the
    plain hub's (``[address]:2222``), whether it runs or not: its entry is always valid."""
    lines = []
    endpoints = [(hub.name, hub.address) for hub in hubs]
    endpoints.append((PLAIN_NAME, known_hosts_name(PLAIN_ADDRESS, PLAIN_SSH_PORT)))
    for name, endpoint in endpoints:
        for kind in HOST_KEY_TYPES:
            pub = paths.host_key(name, kind).with_suffix(".pub").read_text().split()
            lines.append(f"{endpoint} {pub[0]} {pub[1]}")
    return lines


@dataclass(frozen=True)
class LabState:
    paths: LabPaths
    certificates: LabCertificates


def ensure_state(root: Path, hubs: Sequence[HubSpec]) -> LabState:
    """Create or keep everything ``hubs`` need, then (re)write their config folders."""
    paths = LabPaths(root)
    root.mkdir(parents=True, exist_ok=True)
    identities = [HubIdentity(h.name, h.address) for h in hubs] + [HubIdentity(PLAIN_NAME, PLAIN_ADDRESS)]
    certs = ensure_lab_certificates(paths.ca_dir, identities, registry_address=REGISTRY_ADDRESS)
    harness_pub = ensure_ssh_key(paths.ssh_key, "ed25519", "hil@harness")
    ensure_console_password(paths.console_password)
    for name in [h.name for h in hubs] + [PLAIN_NAME]:
        for kind in HOST_KEY_TYPES:
            ensure_ssh_key(paths.host_key(name, kind), kind, f"root@{name}")
    _write(paths.known_hosts, ("\n".join(known_hosts_lines(paths, hubs)) + "\n").encode(), 0o644)
    _write(paths.registry_certs / "registry.pem", certs.registry.cert.read_bytes(), 0o644)
    _write(paths.registry_certs / "registry.key", certs.registry.key.read_bytes(), 0o600)
    for hub in hubs:
        _write_hub_config(paths, hub, certs, harness_pub)
    return LabState(paths, certs)


def _write_hub_config(paths: LabPaths, hub: HubSpec, certs: LabCertificates, harness_pub: str) -> None:
    """The hub's /etc/hil-lab (bind-mounted read-only): what its init installs at boot."""
    cfg = paths.hub_config(hub.name)
    _write(cfg / "profile", f"{hub.profile.value}\n".encode(), 0o644)
    _write(cfg / "authorized_keys", f"{harness_pub}\n".encode(), 0o644)
    _write(cfg / "console_password", paths.console_password.read_bytes(), 0o600)
    _write(cfg / "ca.pem", certs.ca.read_bytes(), 0o644)
    _write(cfg / "registry-ca.pem", certs.ca.read_bytes(), 0o644)
    _write(cfg / "registry", f"{REGISTRY_NAME}:{REGISTRY_PORT}\n".encode(), 0o644)
    for stem, issued in (("server", certs.hub_server[hub.name]), ("device", certs.hub_device[hub.name])):
        _write(cfg / f"{stem}.pem", issued.cert.read_bytes(), 0o644)
        _write(cfg / f"{stem}.key", issued.key.read_bytes(), 0o600)
    for kind in HOST_KEY_TYPES:
        key = paths.host_key(hub.name, kind)
        _write(cfg / "ssh" / key.name, key.read_bytes(), 0o600)
        pub = key.with_name(key.name + ".pub")
        _write(cfg / "ssh" / pub.name, pub.read_bytes(), 0o644)
