"""SSH checks (OWASP IoT I1/I2): offered auth methods, default credentials, sshd -T, ssh-audit.

Every network probe pins the host key against the inventory's known_hosts before it
authenticates: a mismatch raises ``HostKeyMismatch`` and no password is ever sent to
an unverified server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import paramiko

from hil.drivers.base import Shell
from hil.errors import DeviceUnreachable, HostKeyMismatch, ParseError, UserError
from hil.inventory import known_hosts_name
from hil.steps import step

DEFAULT_CREDENTIALS: tuple[tuple[str, str], ...] = (
    ("pi", "raspberry"),
    ("root", "root"),
    ("root", "toor"),
    ("root", ""),
    ("admin", "admin"),
    ("ubnt", "ubnt"),
    ("hil", "hil"),
    ("debian", "debian"),
    ("user", "user"),
)
"""Publicly known factory logins: none of them may work on a hub."""

HARDENED_SSHD: Mapping[str, tuple[str, ...]] = {
    "passwordauthentication": ("no",),
    "kbdinteractiveauthentication": ("no",),
    "permitrootlogin": ("no", "prohibit-password", "without-password"),
    "permitemptypasswords": ("no",),
}
"""Effective sshd settings a hub must have (key -> acceptable values)."""


# -- pinned transport -------------------------------------------------------------------

def pinned_transport(host: str, port: int, known_hosts: Path, *, timeout: float) -> paramiko.Transport:
    """A started SSH transport whose host key matched ``known_hosts``; raises otherwise."""
    name = known_hosts_name(host, port)
    try:
        keys = paramiko.HostKeys(str(known_hosts))
    except OSError as exc:
        raise UserError(f"known_hosts {known_hosts} cannot be read: {exc.strerror}") from None
    pinned = keys.lookup(name)
    if not pinned:
        raise HostKeyMismatch(f"no pinned host key for {name} in {known_hosts}; refusing to connect")
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise DeviceUnreachable(f"SSH {name}: {exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    # ask only for key types we have pinned, so the server shows a key we can compare
    opts = transport.get_security_options()
    wanted = [t for t in opts.key_types if t in pinned]
    if "ssh-rsa" in pinned:
        wanted += [t for t in ("rsa-sha2-512", "rsa-sha2-256") if t in opts.key_types]
    if wanted:
        opts.key_types = list(dict.fromkeys(wanted))
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError) as exc:
        transport.close()
        raise DeviceUnreachable(f"SSH handshake with {name} failed: {exc}") from None
    key = transport.get_remote_server_key()
    key_name = key.get_name()
    expected = pinned.get("ssh-rsa" if key_name.startswith("rsa-sha2") else key_name)
    if expected is None or expected != key:
        transport.close()
        raise HostKeyMismatch(
            f"{name} presented {key_name} {key.fingerprint}, which is not the key pinned in "
            f"{known_hosts}; not authenticating")
    return transport


# -- auth methods -----------------------------------------------------------------------

@dataclass(frozen=True)
class SshAuthMethods:
    host: str
    port: int
    user: str
    methods: tuple[str, ...]
    """What the server offers after ``none``; ("none",) when it let us in with no auth at all."""
    host_key_type: str
    host_key_fingerprint: str

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("publickey_only",)

    @property
    def publickey_only(self) -> bool:
        return self.methods == ("publickey",)


def ssh_auth_methods(host: str, port: int, known_hosts: Path, *, user: str = "root",
                     timeout: float = 10.0) -> SshAuthMethods:
    """The authentication methods the server offers to ``user`` (paramiko ``auth_none``)."""
    with step("ssh auth methods", host=host, port=port, user=user):
        transport = pinned_transport(host, port, known_hosts, timeout=timeout)
        try:
            key = transport.get_remote_server_key()
            try:
                transport.auth_none(user)
                methods: tuple[str, ...] = ("none",)
            except paramiko.BadAuthenticationType as exc:
                methods = tuple(sorted(exc.allowed_types))
            except paramiko.AuthenticationException:
                methods = ()
            return SshAuthMethods(host=host, port=port, user=user, methods=methods,
                                  host_key_type=key.get_name(), host_key_fingerprint=key.fingerprint)
        finally:
            transport.close()


# -- default credentials ----------------------------------------------------------------

@dataclass(frozen=True)
class CredentialAttempt:
    user: str
    password: str
    """A public factory default, not a secret of ours."""
    outcome: Literal["accepted", "refused", "error"]
    detail: str


@dataclass(frozen=True)
class DefaultCredentialsEvidence:
    host: str
    port: int
    attempts: tuple[CredentialAttempt, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("accepted",)

    @property
    def accepted(self) -> tuple[str, ...]:
        return tuple(f"{a.user}/{a.password}" for a in self.attempts if a.outcome == "accepted")


def _try_password(host: str, port: int, known_hosts: Path, user: str, password: str,
                  timeout: float) -> CredentialAttempt:
    try:
        transport = pinned_transport(host, port, known_hosts, timeout=timeout)
    except DeviceUnreachable as exc:
        return CredentialAttempt(user, password, "error", str(exc))
    try:
        # fallback=True: when only keyboard-interactive is offered, paramiko answers its
        # prompts with the password, which covers the KbdInteractive trap
        transport.auth_password(user, password, fallback=True)
        ok = transport.is_authenticated()
        return CredentialAttempt(user, password, "accepted" if ok else "refused",
                                 "authenticated" if ok else "not authenticated")
    except paramiko.BadAuthenticationType as exc:
        return CredentialAttempt(user, password, "refused",
                                 f"password not offered (server offers {','.join(exc.allowed_types)})")
    except paramiko.AuthenticationException as exc:
        return CredentialAttempt(user, password, "refused", f"{type(exc).__name__}: {exc}")
    except (paramiko.SSHException, OSError, EOFError) as exc:
        return CredentialAttempt(user, password, "error", f"{type(exc).__name__}: {exc}")
    finally:
        transport.close()


RETRY_PAUSE_S = 0.5
"""Before trying an attempt again that sshd dropped (MaxStartups throttles bursts of new
connections by resetting some before the banner): a dropped attempt proves nothing."""


def try_default_credentials(host: str, port: int, known_hosts: Path, *,
                            credentials: Sequence[tuple[str, str]] = DEFAULT_CREDENTIALS,
                            timeout: float = 10.0, parallel: int = 6, retries: int = 2
                            ) -> DefaultCredentialsEvidence:
    """Try each factory login over SSH (password or keyboard-interactive); report which worked.

    ``parallel`` stays well below sshd's MaxStartups (10) and each refused password costs
    about 2 s of PAM delay, hence the parallelism; attempts the server dropped before
    answering are tried again (``retries``), one at a time.
    """
    with (step("ssh default credentials", host=host, port=port, attempts=len(credentials)),
          ThreadPoolExecutor(max_workers=max(1, parallel)) as pool):
        attempts = list(pool.map(
            lambda c: _try_password(host, port, known_hosts, c[0], c[1], timeout), credentials))
        for _ in range(retries):
            again = [i for i, a in enumerate(attempts) if a.outcome == "error"]
            if not again:
                break
            time.sleep(RETRY_PAUSE_S)
            for i in again:
                attempts[i] = _try_password(host, port, known_hosts, attempts[i].user, attempts[i].password,
                                            timeout)
    return DefaultCredentialsEvidence(host=host, port=port, attempts=tuple(attempts))


# -- effective sshd configuration ---------------------------------------------------------

@dataclass(frozen=True)
class SshdConfig:
    """``sshd -T`` output: keys lower-case, repeated keys keep every value in order."""

    device: str
    settings: Mapping[str, tuple[str, ...]]

    def get(self, key: str) -> str | None:
        values = self.settings.get(key.lower())
        return values[0] if values else None

    def deviations(self, expected: Mapping[str, Iterable[str]] = HARDENED_SSHD
                   ) -> dict[str, str | None]:
        """Settings whose effective value is not among the acceptable ones (key -> actual)."""
        out: dict[str, str | None] = {}
        for key, allowed in expected.items():
            actual = self.get(key)
            if actual not in set(allowed):
                out[key] = actual
        return out


def parse_sshd_t(text: str) -> dict[str, tuple[str, ...]]:
    settings: dict[str, list[str]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not key.isascii() or not key.replace("_", "").isalnum():
            raise ParseError(f"sshd -T output line {lineno} is not 'key value': {line!r}")
        settings.setdefault(key.lower(), []).append(value.strip())
    if not settings:
        raise ParseError("sshd -T printed nothing")
    return {k: tuple(v) for k, v in settings.items()}


def sshd_effective_config(shell: Shell, *, sshd: str = "/usr/sbin/sshd",
                          connection: Mapping[str, str] | None = None,
                          timeout: float | None = None) -> SshdConfig:
    """The effective sshd settings (``sudo sshd -T``), optionally for a Match context
    (``connection={"user": "hil", "addr": "10.0.0.1", "host": "x"}`` -> ``-C``)."""
    argv = [sshd, "-T"]
    if connection:
        argv += ["-C", ",".join(f"{k}={v}" for k, v in connection.items())]
    res = shell.run(argv, sudo=True, timeout=timeout).check()
    return SshdConfig(device=shell.device, settings=parse_sshd_t(res.stdout))


# -- ssh-audit ------------------------------------------------------------------------------

SSH_AUDIT_EXIT: Mapping[int, str] = {0: "good", 1: "connection error", 2: "warning", 3: "failure"}


@dataclass(frozen=True)
class AuditFinding:
    category: str
    """kex, key, enc, mac, cve."""
    algorithm: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class SshAuditEvidence:
    host: str
    port: int
    exit_code: int
    verdict: str
    banner: str | None
    failures: tuple[AuditFinding, ...]
    warnings: tuple[AuditFinding, ...]
    report: Mapping[str, object] = field(repr=False)
    """The full ssh-audit JSON, for the attachment."""


def parse_ssh_audit(doc: Mapping[str, object], *, host: str, port: int, exit_code: int
                    ) -> SshAuditEvidence:
    failures: list[AuditFinding] = []
    warnings: list[AuditFinding] = []
    for category in ("kex", "key", "enc", "mac"):
        entries = doc.get(category) or []
        if not isinstance(entries, list):
            raise ParseError(f"ssh-audit JSON: {category!r} is not a list")
        for entry in entries:
            notes = entry.get("notes") or {}
            algo = str(entry.get("algorithm"))
            if notes.get("fail"):
                failures.append(AuditFinding(category, algo, tuple(notes["fail"])))
            if notes.get("warn"):
                warnings.append(AuditFinding(category, algo, tuple(notes["warn"])))
    for cve in doc.get("cves") or []:  # type: ignore[attr-defined]
        failures.append(AuditFinding("cve", str(cve.get("name")), (str(cve.get("description", "")),)))
    banner = doc.get("banner")
    raw_banner = banner.get("raw") if isinstance(banner, dict) else None
    return SshAuditEvidence(host=host, port=port, exit_code=exit_code,
                            verdict=SSH_AUDIT_EXIT.get(exit_code, f"exit {exit_code}"),
                            banner=raw_banner, failures=tuple(failures), warnings=tuple(warnings),
                            report=dict(doc))


def ssh_audit_executable() -> str:
    """ssh-audit from the harness's own environment (next to the interpreter), else PATH."""
    from hil.extras import extra_program

    return extra_program("security", "ssh-audit")


def ssh_audit(host: str, port: int = 22, *, timeout: float = 60.0,
              runner: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> SshAuditEvidence:
    """Run ``ssh-audit -j --skip-rate-test`` against one hub and parse its JSON."""
    argv = [ssh_audit_executable(), "-j", "--skip-rate-test", "-t", str(int(max(1, timeout / 2))),
            "-p", str(port), host]
    with step("ssh-audit", host=host, port=port) as st:
        try:
            proc = runner(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DeviceUnreachable(f"ssh-audit of {host}:{port} did not finish in {timeout:.0f} s") from None
        st.record(proc.returncode)
        st.attach("ssh-audit.json", proc.stdout)
    if proc.returncode == 1:
        raise DeviceUnreachable(f"ssh-audit could not connect to {host}:{port}: "
                                f"{(proc.stdout or proc.stderr).strip()[-300:]}")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ParseError(f"ssh-audit printed no JSON (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-300:]}") from None
    return parse_ssh_audit(doc, host=host, port=port, exit_code=proc.returncode)
