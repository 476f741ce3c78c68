"""Does the hub's container engine pull images only over verified TLS? (OWASP IoT I4)

Judged from the engine's own view (``docker info``'s RegistryConfig), not from
daemon.json or command-line flags: a registry marked insecure (``Secure: false``, from
``--insecure-registry`` or daemon.json) or an insecure CIDR beyond loopback means the
engine accepts plain HTTP or an unverified certificate from it, so whoever sits on the
path can hand the hub another image under the candidate's name.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hil.drivers.base import Shell
from hil.errors import InfrastructureError, ParseError

INFO_ARGV = ["docker", "info", "--format", "{{json .RegistryConfig}}"]


class EngineMissing(InfrastructureError):
    """The hub declares a Docker engine (the check is marked ``needs_service("docker")``)
    but has no docker CLI: the hub is not fit for the run."""


@dataclass
class RegistryTrust:
    device: str
    insecure_registries: list[str] = field(default_factory=list)
    """Registries the engine talks to without verified TLS."""
    insecure_cidrs: list[str] = field(default_factory=list)
    """Insecure address ranges beyond loopback (Docker's default 127.0.0.0/8 is fine)."""
    mirrors: list[str] = field(default_factory=list)

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("secure",)

    @property
    def secure(self) -> bool:
        return not self.insecure_registries and not self.insecure_cidrs


def _loopback(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).is_loopback
    except ValueError:
        return False


def parse_registry_config(device: str, doc: Any) -> RegistryTrust:
    if not isinstance(doc, dict):
        raise ParseError(f"{device}: docker info RegistryConfig is not a JSON object")
    ev = RegistryTrust(device)
    for name, conf in sorted((doc.get("IndexConfigs") or {}).items()):
        if isinstance(conf, dict) and conf.get("Secure") is False:
            ev.insecure_registries.append(str(name))
        if isinstance(conf, dict):
            ev.mirrors += [str(m) for m in conf.get("Mirrors") or []]
    ev.insecure_cidrs = [str(c) for c in doc.get("InsecureRegistryCIDRs") or [] if not _loopback(str(c))]
    return ev


def engine_registry_trust(shell: Shell, *, timeout: float) -> RegistryTrust:
    got = shell.run(INFO_ARGV, sudo=True, timeout=timeout)
    if got.exit_status == 127 or "command not found" in got.stderr:
        raise EngineMissing(f"{shell.device}: no docker CLI on this hub")
    got.check()
    try:
        doc = json.loads(got.stdout.strip() or "null")
    except json.JSONDecodeError as exc:
        raise ParseError(f"{shell.device}: docker info printed no JSON: {exc}") from None
    return parse_registry_config(shell.device, doc)
