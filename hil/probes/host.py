"""Host state checks over a Shell (OWASP IoT I6/I9/I10).

The Docker socket, ASLR, and secrets in a captured text (boot log, component logs).
Private keys: hil.probes.keys; containers: hil.probes.containers; accounts and
passwords: hil.probes.accounts; file permissions: hil.probes.files.
Commands run through the ``Shell`` protocol, so SSH or the console can serve them.
No secret value ever leaves a probe: findings carry a masked excerpt only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from hil.drivers.base import Shell
from hil.errors import ParseError

# -- Docker ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DockerSocket:
    device: str
    path: str
    exists: bool
    mode: int | None
    owner: str | None
    group: str | None
    kind: str | None

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("mode_octal", "world_accessible")

    @property
    def mode_octal(self) -> str | None:
        return None if self.mode is None else f"{self.mode:04o}"

    @property
    def world_accessible(self) -> bool:
        return self.mode is not None and bool(self.mode & 0o007)


def docker_socket(shell: Shell, path: str = "/var/run/docker.sock", *,
                  timeout: float | None = None) -> DockerSocket:
    res = shell.run(["stat", "-L", "-c", "%a|%U|%G|%F", "--", path], sudo=True, timeout=timeout)
    if not res.ok:
        return DockerSocket(shell.device, path, False, None, None, None, None)
    fields = res.stdout.strip().split("|")
    if len(fields) != 4:
        raise ParseError(f"stat of {path} printed {res.stdout.strip()!r}")
    return DockerSocket(shell.device, path, True, int(fields[0], 8), fields[1], fields[2], fields[3])


# -- kernel and accounts -----------------------------------------------------------------------

@dataclass(frozen=True)
class SysctlValue:
    device: str
    key: str
    value: str


def sysctl(shell: Shell, key: str = "kernel.randomize_va_space", *,
           timeout: float | None = None) -> SysctlValue:
    """A kernel setting read from /proc/sys (images without procps have no ``sysctl``)."""
    if not key or any(part in ("", ".", "..") for part in key.split(".")) or "/" in key:
        raise ValueError(f"not a sysctl key: {key!r}")
    res = shell.run(["cat", "/proc/sys/" + key.replace(".", "/")], timeout=timeout).check()
    return SysctlValue(shell.device, key, res.stdout.strip())


# -- secrets in text ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SecretFinding:
    kind: str
    line: int
    excerpt: str
    """The line with the secret value masked."""


@dataclass(frozen=True)
class SecretScan:
    source: str
    lines: int
    findings: tuple[SecretFinding, ...]


_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("pem-private-key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----()")),
    ("aws-access-key-id", re.compile(r"\b((?:AKIA|ASIA)[0-9A-Z]{16})\b")),
    ("aws-secret-access-key", re.compile(
        r"(?i)aws_secret_access_key\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})")),
    ("password", re.compile(r"(?i)\b(?:password|passwd|pwd)\s*[:=]\s*[\"']?([^\s\"',;]{3,})")),
    ("psk", re.compile(r"(?i)\b(?:wpa_)?psk\s*[:=]\s*[\"']?([^\s\"',;]{3,})")),
    ("token", re.compile(
        r"(?i)\b(?:token|secret|api[_-]?key|session[_-]?token)\s*[:=]\s*[\"']?([A-Za-z0-9_\-./+=]{8,})")),
    ("bearer", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9_\-.=]{16,})")),
)
_PLACEHOLDERS = {"xxx", "", "none", "null", "redacted"}
"""Values that are already masked or absent (compared after stripping * < >)."""


def _mask(line: str, start: int, end: int) -> str:
    value = line[start:end]
    shown = value[:2] if len(value) > 6 else ""
    return (line[:start] + shown + "*" * 6 + line[end:]).strip()[:200]


def find_secrets(text: str, source: str) -> SecretScan:
    """Lines of ``text`` that carry a private key, AWS key, password, PSK or token."""
    findings: list[SecretFinding] = []
    lines = text.splitlines()
    for no, line in enumerate(lines, 1):
        for kind, pattern in _SECRET_PATTERNS:
            for m in pattern.finditer(line):
                value = m.group(1)
                if kind != "pem-private-key" and value.strip("*<>").lower() in _PLACEHOLDERS | {""}:
                    continue
                start, end = (m.span(1) if value else m.span())
                findings.append(SecretFinding(kind=kind, line=no,
                                              excerpt=_mask(line, start, end) if value else line.strip()))
    return SecretScan(source=source, lines=len(lines), findings=tuple(findings))
