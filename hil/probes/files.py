"""File permissions that matter (OWASP IoT I9): who may change security configuration,
and which programs run with someone else's privileges.

Configuration (sshd and its drop-ins, sudoers and sudoers.d, passwd/shadow/group, PAM,
cron, systemd units, init scripts, Greengrass and broker configuration) must be owned
by root and writable by nobody else: whoever can write it is root. Key and certificate
folders (and every folder a private key was found in) must not be writable by group or
others, nor owned by an account that can log in (a service account owning its own key
is how Debian packages do it). Set-user-ID/set-group-ID executables are held against an
allowlist (hil/policies/setuid-allowlist.yaml).

Everything is read with ``find -printf`` on the hub (mode, owner, group and type of
each entry) in two commands, whatever paths exist on that hub: a path a hub does not
have is simply not there, never an error.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from hil.drivers.base import CommandFailed, CommandResult, Shell
from hil.errors import ParseError
from hil.probes.keys import files_argv, harmless_stderr
from hil.probes.policy_files import POLICY_DIR, load_policy, policy_mapping

DEFAULT_SETUID_POLICY = POLICY_DIR / "setuid-allowlist.yaml"

CONFIG_PATHS: tuple[str, ...] = (
    "/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d",
    "/etc/sudoers", "/etc/sudoers.d",
    "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/pam.d", "/etc/ld.so.preload",
    "/etc/crontab", "/etc/cron.d", "/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly",
    "/etc/cron.monthly", "/var/spool/cron",
    "/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system", "/etc/init.d", "/etc/rc.local",
    "/etc/mosquitto/mosquitto.conf", "/etc/mosquitto/conf.d",
)
"""Audited recursively: the path itself and everything below it (plus the Greengrass config)."""

KEY_FOLDERS: tuple[str, ...] = ("/etc/ssh", "/etc/ssl/private", "/etc/mosquitto")
"""Audited one level deep (the folder and its entries), with the Greengrass root: that also
holds the candidate's packages, which are not configuration."""


def audited_paths(greengrass_root: str = "/greengrass/v2") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(configuration paths, key folders) for a hub whose nucleus lives in ``greengrass_root``."""
    root = greengrass_root.rstrip("/") or "/"
    return (*CONFIG_PATHS, f"{root}/config"), (*KEY_FOLDERS, root)

CRONTABS = "/var/spool/cron/crontabs/"
"""Per-user crontabs are owned by the user they are named after: that is how cron works."""

FIND_FORMAT = "%m|%U|%u|%G|%g|%y|%p\\n"
SETUID_PRUNE: tuple[str, ...] = ("/proc", "/sys", "/dev", "/run", "/var/lib/docker", "/var/lib/containerd")

Kind = Literal["config", "keys", "key-folder"]
"""config: root-owned, writable by root only; keys: a known key/certificate folder and its
entries, not writable by group/others nor owned by a login account; key-folder: a folder a
private key was found in (a home folder, say), not writable by group/others."""


@dataclass(frozen=True)
class Entry:
    path: str
    mode: int
    uid: int
    owner: str
    gid: int
    group: str
    type: str
    """find's %y: f file, d directory, l symlink, ..."""


@dataclass(frozen=True)
class PermissionFinding:
    path: str
    kind: Kind
    mode_octal: str
    owner: str
    group: str
    problem: str

    def describe(self) -> str:
        return f"{self.path} {self.mode_octal} {self.owner}:{self.group} ({self.problem})"


@dataclass(frozen=True)
class FilePermissionAudit:
    device: str
    audited: int
    findings: tuple[PermissionFinding, ...]
    roots: tuple[str, ...]


def parse_find_printf(text: str) -> tuple[Entry, ...]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 6)
        if len(parts) != 7 or not parts[1].isdigit() or not parts[3].isdigit():
            raise ParseError(f"find -printf line is not 'mode|uid|user|gid|group|type|path': {line!r}")
        mode, uid, owner, gid, group, ftype, path = parts
        try:
            out.append(Entry(path, int(mode, 8), int(uid), owner, int(gid), group, ftype))
        except ValueError:
            raise ParseError(f"find printed mode {mode!r} for {path}") from None
    return tuple(out)


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def judge_entry(e: Entry, kind: Kind, login_accounts: Iterable[str]) -> str | None:
    """Why ``e`` is a problem (None: it is fine)."""
    if e.type not in ("f", "d"):
        return None  # symlinks carry mode 0777 by definition; sockets/devices are not configuration
    sticky_shared_dir = (e.type == "d" and e.mode & 0o1000 and e.uid == 0 and not e.mode & 0o002
                         and e.gid != 0 and e.gid < 1000)
    if e.mode & 0o002:
        return "world-writable"
    if e.mode & 0o020 and not sticky_shared_dir:
        return f"writable by group {e.group}"
    if kind == "config" and e.uid != 0:
        if e.type == "f" and e.path.startswith(CRONTABS) and posixpath.basename(e.path) == e.owner:
            return None
        return f"owned by {e.owner}, not root"
    if kind == "keys" and e.owner in set(login_accounts):
        return f"owned by {e.owner}, an account that can log in"
    return None


def _run_find(shell: Shell, argv: Sequence[str], timeout: float | None) -> CommandResult:
    res = shell.run(argv, sudo=True, timeout=timeout)
    other = [ln for ln in res.stderr.splitlines() if not harmless_stderr(ln)]
    if res.exit_status not in (0, 1) or other:
        raise CommandFailed(f"find failed (exit {res.exit_status}): {res.stderr.strip()[-300:]}")
    return res


def file_permissions(shell: Shell, *, login_accounts: Iterable[str], key_folders: Iterable[str] = (),
                     config_paths: Sequence[str] = CONFIG_PATHS, key_roots: Sequence[str] = KEY_FOLDERS,
                     timeout: float | None = None) -> FilePermissionAudit:
    """Mode and owner of configuration (recursive) and key folders (one level) on the hub.

    ``key_folders``: extra folders, e.g. where private keys were found on this hub.
    """
    extra = tuple(sorted(set(key_folders) - set(key_roots)))
    deep = _run_find(shell, ["find", *config_paths, "-printf", FIND_FORMAT], timeout)
    shallow = _run_find(shell, ["find", *key_roots, "-maxdepth", "1", "-printf", FIND_FORMAT], timeout)
    itself = (_run_find(shell, ["find", *extra, "-maxdepth", "0", "-printf", FIND_FORMAT], timeout).stdout
              if extra else "")
    kinds: dict[str, Kind] = {}
    entries: dict[str, Entry] = {}
    sources: tuple[tuple[Kind, str], ...] = (("key-folder", itself), ("keys", shallow.stdout),
                                             ("config", deep.stdout))
    for kind, text in sources:
        for e in parse_find_printf(text):
            entries[e.path] = e
            kinds[e.path] = "config" if _under(e.path, config_paths) else kind
    people = tuple(login_accounts)
    findings = []
    for path in sorted(entries):
        e, kind = entries[path], kinds[path]
        why = judge_entry(e, kind, people)
        if why:
            findings.append(PermissionFinding(path, kind, f"{e.mode:04o}", e.owner, e.group, why))
    return FilePermissionAudit(device=shell.device, audited=len(entries), findings=tuple(findings),
                               roots=(*config_paths, *key_roots, *extra))


# -- set-user-ID / set-group-ID ----------------------------------------------------------------

@dataclass(frozen=True)
class SetuidPolicy:
    name: str
    version: str
    allowed: Mapping[str, str]


def load_setuid_policy(path: Path = DEFAULT_SETUID_POLICY) -> SetuidPolicy:
    what = "setuid allowlist"
    doc = load_policy(path, ("name", "version", "allowed"), what)
    return SetuidPolicy(str(doc["name"]), str(doc["version"]), policy_mapping(doc, "allowed", path, what))


@dataclass(frozen=True)
class SetuidScan:
    device: str
    policy: str
    found: tuple[Entry, ...]
    allowed: tuple[str, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("unexpected",)

    @property
    def unexpected(self) -> tuple[str, ...]:
        allow = set(self.allowed)
        return tuple(f"{e.path} {e.mode:04o} {e.owner}:{e.group}" for e in self.found if e.path not in allow)


def setuid_argv(roots: Sequence[str] = ("/",), prune: Sequence[str] = SETUID_PRUNE) -> list[str]:
    return [*files_argv(roots, prune), "(", "-perm", "-4000", "-o", "-perm", "-2000", ")",
            "-printf", FIND_FORMAT]


def setuid_files(shell: Shell, *, policy: SetuidPolicy | None = None, roots: Sequence[str] = ("/",),
                 prune: Sequence[str] = SETUID_PRUNE, timeout: float | None = None) -> SetuidScan:
    """Every set-user-ID or set-group-ID regular file on the hub (pseudo filesystems and
    container storage left out), held against the allowlist."""
    pol = policy or load_setuid_policy()
    res = _run_find(shell, setuid_argv(roots, prune), timeout)
    return SetuidScan(device=shell.device, policy=f"{pol.name} {pol.version}",
                      found=parse_find_printf(res.stdout), allowed=tuple(pol.allowed))
