"""Accounts of a hub (OWASP IoT I1): who can log in, and the state of their passwords.

An account "can log in" when its shell is a login shell: listed in /etc/shells and not
a nologin/false stand-in. That, not a uid range or a fixed list of names, decides
which accounts the SSH checks try (default passwords, per-user sshd settings).

Password state comes from two sources that must tell the same story: the shadow/passwd
fields (read by awk on the hub, which prints a state word and never a hash) and
``passwd -S -a``. An empty field means "log in with no password"; an empty field in
/etc/passwd itself does too, whatever /etc/shadow says (pam_unix uses it directly).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from hil.drivers.base import Shell
from hil.errors import ParseError

PasswordState = Literal["empty", "locked", "usable", "unknown"]

NON_LOGIN_SHELLS = frozenset({"nologin", "false", "sync", "shutdown", "halt"})

# Constant scripts (no interpolation): they print state words, never password hashes.
ACCOUNTS_SCRIPT = (
    "getent passwd | awk -F: '{ s = ($2 == \"x\") ? \"shadow\" : ($2 == \"\") ? \"empty\" : "
    "($2 ~ /^[!*]/) ? \"locked\" : \"usable\"; print $1 \":\" $3 \":\" $7 \":\" s }'")
SHADOW_SCRIPT = (
    "awk -F: '{ s = ($2 == \"\") ? \"empty\" : ($2 ~ /^[!*]/) ? \"locked\" : \"usable\"; "
    "print $1 \":\" s }' /etc/shadow")
PASSWD_S_STATES: Mapping[str, PasswordState] = {"P": "usable", "NP": "empty", "L": "locked"}


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    shell: str
    login_shell: bool
    stored_in: str
    """"shadow" (the usual ``x``), or the state of a password kept in /etc/passwd itself."""


@dataclass(frozen=True)
class Accounts:
    device: str
    accounts: tuple[Account, ...]
    shells: tuple[str, ...]
    """/etc/shells as read (empty when the hub has none: then only the nologin rule applies)."""

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("login_names",)

    @property
    def login_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.accounts if a.login_shell)

    def get(self, name: str) -> Account | None:
        return next((a for a in self.accounts if a.name == name), None)


def is_login_shell(shell: str, shells: frozenset[str]) -> bool:
    if not shell or posixpath.basename(shell) in NON_LOGIN_SHELLS:
        return False
    return shell in shells if shells else True


def parse_passwd_states(text: str, shells: frozenset[str]) -> tuple[Account, ...]:
    """Lines ``name:uid:shell:state`` of ACCOUNTS_SCRIPT."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(":")
        if len(parts) != 4 or not parts[1].lstrip("-").isdigit():
            raise ParseError(f"account line {lineno} is not 'name:uid:shell:state': {line!r}")
        name, uid, shell, state = parts
        out.append(Account(name=name, uid=int(uid), shell=shell, login_shell=is_login_shell(shell, shells),
                           stored_in=state))
    return tuple(out)


def parse_shells(text: str) -> frozenset[str]:
    return frozenset(ln.strip() for ln in text.splitlines() if ln.strip().startswith("/"))


def accounts(shell: Shell, *, timeout: float | None = None) -> Accounts:
    """Every account the hub's NSS knows (getent), with its shell and whether it can log in."""
    shells_res = shell.run(["cat", "/etc/shells"], timeout=timeout)
    shells = parse_shells(shells_res.stdout) if shells_res.ok else frozenset()
    res = shell.run(["sh", "-c", ACCOUNTS_SCRIPT], sudo=True, timeout=timeout).check()
    return Accounts(device=shell.device, accounts=parse_passwd_states(res.stdout, shells),
                    shells=tuple(sorted(shells)))


# -- password state -------------------------------------------------------------------------

def parse_shadow_states(text: str) -> dict[str, PasswordState]:
    out: dict[str, PasswordState] = {}
    for line in text.splitlines():
        name, sep, state = line.strip().partition(":")
        if not sep or state not in ("empty", "locked", "usable"):
            raise ParseError(f"shadow state line is not 'name:state': {line!r}")
        out[name] = state  # type: ignore[assignment]  # checked just above
    return out


def parse_passwd_s(text: str) -> dict[str, PasswordState]:
    """``passwd -S -a``: ``name P|NP|L date min max warn inactive`` per line."""
    out: dict[str, PasswordState] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or fields[1] not in PASSWD_S_STATES:
            raise ParseError(f"passwd -S line is not 'name P|NP|L ...': {line!r}")
        out[fields[0]] = PASSWD_S_STATES[fields[1]]
    return out


@dataclass(frozen=True)
class AccountPassword:
    name: str
    login_shell: bool
    by_files: PasswordState
    """Judged from /etc/passwd and /etc/shadow."""
    by_status_command: PasswordState
    """Judged by ``passwd -S`` ("unknown" when the hub has no such command)."""

    @property
    def empty(self) -> bool:
        return "empty" in (self.by_files, self.by_status_command)

    @property
    def agree(self) -> bool:
        return self.by_status_command == "unknown" or self.by_files == self.by_status_command


@dataclass(frozen=True)
class PasswordStates:
    device: str
    accounts: tuple[AccountPassword, ...]
    passwd_s_available: bool

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("empty", "disagreements")

    @property
    def empty(self) -> tuple[str, ...]:
        """Accounts that log in with no password, by either source."""
        return tuple(a.name for a in self.accounts if a.empty)

    @property
    def disagreements(self) -> tuple[str, ...]:
        return tuple(f"{a.name}: files say {a.by_files}, passwd -S says {a.by_status_command}"
                     for a in self.accounts if not a.agree)


def combine_password_states(accts: Accounts, shadow: Mapping[str, PasswordState],
                            passwd_s: Mapping[str, PasswordState] | None) -> PasswordStates:
    rows = []
    for a in accts.accounts:
        if a.stored_in == "shadow":
            by_files: PasswordState = shadow.get(a.name, "unknown")
        else:  # a password (or none) in /etc/passwd itself wins over shadow
            by_files = a.stored_in  # type: ignore[assignment]  # a state word by construction
        rows.append(AccountPassword(a.name, a.login_shell, by_files,
                                    passwd_s.get(a.name, "unknown") if passwd_s is not None else "unknown"))
    return PasswordStates(accts.device, tuple(rows), passwd_s is not None)


def password_states(shell: Shell, *, timeout: float | None = None,
                    known: Accounts | None = None) -> PasswordStates:
    """Every account's password state from the files and from ``passwd -S -a``."""
    accts = known or accounts(shell, timeout=timeout)
    shadow = parse_shadow_states(shell.run(["sh", "-c", SHADOW_SCRIPT], sudo=True, timeout=timeout)
                                 .check().stdout)
    status = shell.run(["passwd", "-S", "-a"], sudo=True, timeout=timeout)
    return combine_password_states(accts, shadow, parse_passwd_s(status.stdout) if status.ok else None)
