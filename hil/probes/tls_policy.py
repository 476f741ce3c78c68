"""A TLS policy as data (hil/policies/*.yaml) and the verdict of a scan against it.

A short deny-list of "weak" markers passes CBC, SHA-1 MAC and RSA-key-exchange suites
that no current guideline accepts; so a service is judged against an allowlist: every
accepted protocol and cipher suite must be in the policy. Each violation also names
what is wrong with the suite (CBC, SHA-1 MAC, no forward secrecy, ...) for the reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from hil.errors import UserError
from hil.probes.policy_files import POLICY_DIR, load_policy, policy_list
from hil.probes.tls import TlsEvidence

DEFAULT_TLS_POLICY = POLICY_DIR / "tls-intermediate.yaml"

_FLAWS: tuple[tuple[str, str], ...] = (
    ("_anon_", "anonymous key exchange"),
    ("_NULL_", "no encryption"),
    ("_EXPORT", "export-grade"),
    ("_RC4_", "RC4"),
    ("_3DES_", "3DES"),
    ("_DES_", "DES"),
    ("_RC2_", "RC2"),
    ("_IDEA_", "IDEA"),
    ("_CBC_", "CBC mode"),
)


@dataclass(frozen=True)
class TlsPolicy:
    name: str
    version: str
    source: str
    protocols: tuple[str, ...]
    cipher_suites: Mapping[str, tuple[str, ...]]
    path: Path

    def allows(self, protocol: str, suite: str) -> bool:
        return suite in self.cipher_suites.get(protocol, ())


def suite_flaws(suite: str) -> tuple[str, ...]:
    """What is known-bad about an IANA suite name (empty: nothing by name alone)."""
    name = suite
    out = [why for marker, why in _FLAWS if marker in name]
    if name.endswith("_MD5"):
        out.append("MD5 MAC")
    elif name.endswith("_SHA"):
        out.append("SHA-1 MAC")
    if name.startswith("TLS_RSA_WITH_") or name.startswith("SSL_RSA_WITH_"):
        out.append("RSA key exchange (no forward secrecy)")
    if name.startswith(("TLS_PSK_", "TLS_SRP_")):
        out.append("PSK/SRP key exchange")
    return tuple(out)


def load_tls_policy(path: Path = DEFAULT_TLS_POLICY) -> TlsPolicy:
    """Read a policy file; a malformed one is a UserError naming the file and field."""
    what = "TLS policy"
    doc = load_policy(path, ("name", "version", "protocols", "cipher_suites"), what)
    protocols = policy_list(doc, "protocols", path, what)
    suites = doc["cipher_suites"]
    if not isinstance(suites, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in suites.values()):
        raise UserError("cipher_suites must map a protocol to a list of IANA suite names",
                        file=str(path), field="cipher_suites")
    unknown = sorted(set(suites) - set(protocols))
    if unknown:
        raise UserError(f"cipher_suites lists protocols not in protocols: {unknown}", file=str(path),
                        field="cipher_suites")
    return TlsPolicy(name=str(doc["name"]), version=str(doc["version"]), source=str(doc.get("source", "")),
                     protocols=protocols, cipher_suites={k: tuple(v) for k, v in suites.items()},
                     path=path)


@dataclass(frozen=True)
class SuiteViolation:
    protocol: str
    suite: str
    flaws: tuple[str, ...]

    def describe(self) -> str:
        why = ", ".join(self.flaws) or "not in the policy"
        return f"{self.protocol} {self.suite} ({why})"


@dataclass(frozen=True)
class TlsPolicyVerdict:
    policy: str
    """Name and version, e.g. ``mozilla-intermediate 5.7``."""
    protocols_outside: tuple[str, ...]
    suites_outside: tuple[SuiteViolation, ...]
    accepted: tuple[str, ...] = field(default=())
    """Every accepted ``protocol suite``, for the report."""

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("compliant",)

    @property
    def compliant(self) -> bool:
        return not self.protocols_outside and not self.suites_outside


def judge_tls(evidence: TlsEvidence, policy: TlsPolicy) -> TlsPolicyVerdict:
    """Every accepted protocol and suite of ``evidence`` held against ``policy``."""
    outside = tuple(v for v in evidence.accepted_versions if v not in policy.protocols)
    bad = tuple(SuiteViolation(c.version, c.name, suite_flaws(c.name))
                for c in evidence.ciphers if not policy.allows(c.version, c.name))
    return TlsPolicyVerdict(policy=f"{policy.name} {policy.version}", protocols_outside=outside,
                            suites_outside=bad,
                            accepted=tuple(f"{c.version} {c.name}" for c in evidence.ciphers))
