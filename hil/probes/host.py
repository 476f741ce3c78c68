"""Host state checks over a Shell (OWASP IoT I1/I6/I7/I9/I10).

Private key files and their modes, the Docker socket and containers' isolation,
ASLR, empty passwords, and secrets in a captured text (boot log, component logs).
Commands run through the ``Shell`` protocol, so SSH or the console can serve them.
No secret value ever leaves a probe: findings carry a masked excerpt only.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from hil.drivers.base import CommandFailed, Shell
from hil.errors import ParseError

PEM_PRIVATE_KEY_RE = r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----"

DEFAULT_KEY_ROOTS: tuple[str, ...] = (
    "/etc", "/home", "/root", "/opt", "/srv", "/greengrass", "/var", "/usr/local",
    "/tmp",  # noqa: S108 - a place on the device to search, not a temp file of ours
)
DEFAULT_PRUNE: tuple[str, ...] = ("/proc", "/sys", "/dev", "/run", "/var/lib/docker", "/var/cache",
                                  "/var/lib/containerd")
"""Image layers under /var/lib/docker belong to the image scan, not to the host's key files."""


# -- private keys --------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyFile:
    path: str
    mode: int
    owner: str
    group: str
    allowed: bool
    """Its path matches an allowlist pattern from devices.yaml."""

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("mode_octal", "too_open")

    @property
    def mode_octal(self) -> str:
        return f"{self.mode:04o}"

    @property
    def too_open(self) -> bool:
        """Readable or writable by group or others (mode beyond 0600)."""
        return bool(self.mode & 0o077)


@dataclass(frozen=True)
class PrivateKeyScan:
    device: str
    roots: tuple[str, ...]
    allowlist: tuple[str, ...]
    keys: tuple[KeyFile, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("stray", "too_open")

    @property
    def stray(self) -> tuple[str, ...]:
        return tuple(k.path for k in self.keys if not k.allowed)

    @property
    def too_open(self) -> tuple[str, ...]:
        return tuple(k.path for k in self.keys if k.too_open)


def path_allowed(path: str, allowlist: Iterable[str]) -> bool:
    """fnmatch semantics: ``*`` also crosses ``/``, so ``/greengrass/v2/**`` covers the tree."""
    return any(fnmatch.fnmatchcase(path, pat) for pat in allowlist)


def find_argv(roots: Sequence[str], prune: Sequence[str]) -> list[str]:
    prune_expr: list[str] = []
    for p in prune:
        prune_expr += (["-o"] if prune_expr else []) + ["-path", p]
    return ["find", *roots, "(", *prune_expr, ")", "-prune", "-o", "-type", "f", "-size", "-256k",
            "-exec", "grep", "-l", "-I", "-E", "-e", PEM_PRIVATE_KEY_RE, "{}", "+"]


def parse_stat(text: str) -> list[tuple[str, int, str, str]]:
    """Lines of ``stat -c '%a %U %G %n'`` -> (path, mode, owner, group)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ", 3)
        if len(parts) != 4:
            raise ParseError(f"stat output line is not 'mode owner group path': {line!r}")
        mode, owner, group, path = parts
        try:
            out.append((path, int(mode, 8), owner, group))
        except ValueError:
            raise ParseError(f"stat printed mode {mode!r} for {path}") from None
    return out


def private_keys(shell: Shell, allowlist: Iterable[str], *, roots: Sequence[str] = DEFAULT_KEY_ROOTS,
                 prune: Sequence[str] = DEFAULT_PRUNE, timeout: float | None = None) -> PrivateKeyScan:
    """Files holding a PEM private key under ``roots``, with mode/owner and allowlist match."""
    allow = tuple(allowlist)
    found = shell.run(find_argv(roots, prune), sudo=True, timeout=timeout)
    # find exits 1 for a missing root, grep 1 for "no match" in a batch: both are normal here
    if found.exit_status not in (0, 1) or (found.exit_status == 1 and not found.stdout and any(
            "No such file" not in line for line in found.stderr.splitlines() if line.strip())):
        raise CommandFailed(f"searching private keys failed (exit {found.exit_status}): "
                            f"{found.stderr.strip()[-300:]}")
    paths = sorted({p for p in found.stdout.splitlines() if p.strip()})
    keys: list[KeyFile] = []
    if paths:
        st = shell.run(["stat", "-c", "%a %U %G %n", "--", *paths], sudo=True, timeout=timeout).check()
        for path, mode, owner, group in parse_stat(st.stdout):
            keys.append(KeyFile(path=path, mode=mode, owner=owner, group=group,
                                allowed=path_allowed(path, allow)))
    return PrivateKeyScan(device=shell.device, roots=tuple(roots), allowlist=allow, keys=tuple(keys))


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


@dataclass(frozen=True)
class ContainerIsolation:
    name: str
    image: str
    running: bool
    privileged: bool
    network_mode: str
    pid_mode: str
    docker_sock_mounts: tuple[str, ...]
    cap_add: tuple[str, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("problems",)

    @property
    def problems(self) -> tuple[str, ...]:
        out = []
        if self.privileged:
            out.append("privileged")
        if self.network_mode == "host":
            out.append("host network")
        if self.pid_mode == "host":
            out.append("host pid namespace")
        out += [f"docker socket mounted at {m}" for m in self.docker_sock_mounts]
        return tuple(out)


@dataclass(frozen=True)
class ContainerIsolationScan:
    device: str
    containers: tuple[ContainerIsolation, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("offenders",)

    @property
    def offenders(self) -> dict[str, tuple[str, ...]]:
        return {c.name: c.problems for c in self.containers if c.problems}


def parse_docker_inspect(text: str) -> tuple[ContainerIsolation, ...]:
    try:
        docs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"docker inspect printed no JSON: {exc}") from None
    if not isinstance(docs, list):
        raise ParseError("docker inspect JSON is not a list")
    out = []
    for d in docs:
        hc = d.get("HostConfig") or {}
        mounts = d.get("Mounts") or []
        sock = tuple(str(m.get("Destination")) for m in mounts
                     if str(m.get("Source", "")).endswith("docker.sock"))
        out.append(ContainerIsolation(
            name=str(d.get("Name", "")).lstrip("/"),
            image=str((d.get("Config") or {}).get("Image", d.get("Image", ""))),
            running=bool((d.get("State") or {}).get("Running")),
            privileged=bool(hc.get("Privileged")),
            network_mode=str(hc.get("NetworkMode") or ""),
            pid_mode=str(hc.get("PidMode") or ""),
            docker_sock_mounts=sock,
            cap_add=tuple(hc.get("CapAdd") or ()),
        ))
    return tuple(out)


def container_isolation(shell: Shell, *, timeout: float | None = None) -> ContainerIsolationScan:
    """Every container on the device (running or not) with its isolation settings."""
    ids = shell.run(["docker", "ps", "-aq", "--no-trunc"], sudo=True, timeout=timeout).check()
    id_list = ids.stdout.split()
    if not id_list:
        return ContainerIsolationScan(shell.device, ())
    res = shell.run(["docker", "inspect", *id_list], sudo=True, timeout=timeout).check()
    return ContainerIsolationScan(shell.device, parse_docker_inspect(res.stdout))


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


@dataclass(frozen=True)
class EmptyPasswords:
    device: str
    users: tuple[str, ...]


def empty_passwords(shell: Shell, *, timeout: float | None = None) -> EmptyPasswords:
    """Accounts whose /etc/shadow password field is empty (login with no password)."""
    # awk prints only user names: hashes never travel into the step log
    res = shell.run(["awk", "-F:", '$2 == "" { print $1 }', "/etc/shadow"], sudo=True,
                    timeout=timeout).check()
    return EmptyPasswords(shell.device, tuple(u for u in res.stdout.split() if u))


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
