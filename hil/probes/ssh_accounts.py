"""SSH judged per account and per source address (OWASP IoT I1/I9).

``sshd -T`` alone prints the global settings: a ``Match User ops`` or ``Match Address
10.0.0.0/8`` block that turns password login back on is invisible there. So the
effective settings are asked for every (account, source address) pair that matters
with ``sshd -T -C user=U,host=H,addr=A,laddr=L,lport=P``: every account with a login
shell plus root and the harness's user, from the harness's own address, from an
address no Match block names, and from an address inside every ``Match Address``
pattern found under /etc/ssh (sshd_config and its drop-ins). The server is also asked
what it offers each of those accounts (auth "none"), and default passwords are tried
for each of them, not only for a fixed list of factory accounts.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hil.drivers.base import Shell
from hil.errors import DeviceUnreachable, ParseError
from hil.probes.ssh import (
    DEFAULT_CREDENTIALS,
    HARDENED_SSHD,
    RETRY_PAUSE_S,
    CredentialAttempt,
    DefaultCredentialsEvidence,
    SshAuthMethods,
    parse_sshd_t,
    ssh_auth_methods,
    try_default_credentials,
)
from hil.steps import step

OUTSIDE_ADDRESS = "203.0.113.7"
"""TEST-NET-3 (RFC 5737): stands for "anyone on the network" - an address that no sensible
Match block names, so it sees what a stranger sees."""

PASSWORDS_PER_ACCOUNT: tuple[str, ...] = ("{user}", "raspberry", "password", "admin", "changeme", "123456")
"""A handful per login account ({user}: the account's own name), on top of DEFAULT_CREDENTIALS."""

MATCH_LINES_SCRIPT = "grep -rhiE '^[[:space:]]*Match[[:space:]]' /etc/ssh 2>/dev/null; exit 0"
SSHD_T_SCRIPT = 'for c; do printf "### %s\\n" "$c"; "$SSHD" -T -C "$c" 2>&1 || echo "### failed $?"; done'
_SEP = "### "
_PASSWORD_KEYS = ("passwordauthentication", "kbdinteractiveauthentication", "permitemptypasswords")


# -- which addresses to ask for ------------------------------------------------------------

def addresses_in_match_lines(text: str) -> tuple[str, ...]:
    """One representative address inside every positive ``Match Address`` pattern."""
    out: list[str] = []
    for line in text.splitlines():
        words = line.split()
        for i, word in enumerate(words[:-1]):
            if word.lower() != "address":
                continue
            for pattern in words[i + 1].split(","):
                addr = _representative(pattern)
                if addr and addr not in out:
                    out.append(addr)
    return tuple(out)


def _representative(pattern: str) -> str | None:
    if not pattern or pattern.startswith("!"):
        return None
    try:
        net = ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        pass
    else:
        return str(net.network_address + 1) if net.num_addresses > 2 else str(net.network_address)
    if re.fullmatch(r"[0-9.*?]+", pattern):
        return pattern.replace("*", "1").replace("?", "1")
    return None


@dataclass(frozen=True)
class Vantage:
    """Where the harness's SSH session looks like it comes from, as the hub sees it."""

    client_address: str | None
    local_address: str | None
    local_port: int | None


def vantage(shell: Shell, *, timeout: float | None = None) -> Vantage:
    """From ``$SSH_CONNECTION`` (client ip, client port, server ip, server port); empty over a console."""
    res = shell.run(["printenv", "SSH_CONNECTION"], timeout=timeout)
    parts = res.stdout.split() if res.ok else []
    if len(parts) == 4 and parts[3].isdigit():
        return Vantage(parts[0], parts[2], int(parts[3]))
    return Vantage(None, None, None)


# -- effective settings per context ----------------------------------------------------------

@dataclass(frozen=True)
class SshdContext:
    user: str
    addr: str
    settings: Mapping[str, tuple[str, ...]]

    def get(self, key: str) -> str | None:
        values = self.settings.get(key)
        return values[0] if values else None

    def deviations(self, expected: Mapping[str, Iterable[str]] = HARDENED_SSHD) -> dict[str, str | None]:
        """Settings outside ``expected``. Password settings do not count where
        AuthenticationMethods allows public keys only (sshd never asks for a password then)."""
        out = {k: self.get(k) for k, allowed in expected.items() if self.get(k) not in set(allowed)}
        methods = self.get("authenticationmethods")
        if methods and methods != "any" and all(
                m == "publickey" for lst in methods.split() for m in lst.split(",")):
            for key in _PASSWORD_KEYS:
                out.pop(key, None)
        if self.user != "root":
            out.pop("permitrootlogin", None)  # sshd consults it for root logins only
        return out


@dataclass(frozen=True)
class SshdPerAccount:
    device: str
    users: tuple[str, ...]
    addresses: tuple[str, ...]
    contexts: tuple[SshdContext, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("deviations",)

    @property
    def deviations(self) -> tuple[str, ...]:
        return tuple(f"user={c.user} addr={c.addr}: {k} {v}" for c in self.contexts
                     for k, v in sorted(c.deviations().items()))


def parse_sshd_t_batch(text: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """Output of SSHD_T_SCRIPT: ``### <context>`` then that context's ``sshd -T`` lines."""
    blocks: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith(_SEP):
            label = line[len(_SEP):]
            if label.startswith("failed "):
                raise ParseError(f"sshd -T -C {current} failed (exit {label[7:]}): "
                                 + " ".join(blocks.get(current or "", []))[-300:])
            current = label
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    return {ctx: parse_sshd_t("\n".join(lines)) for ctx, lines in blocks.items()}


def connection_spec(user: str, addr: str, local: Vantage) -> str:
    spec = {"user": user, "host": addr, "addr": addr}
    if local.local_address:
        spec["laddr"] = local.local_address
    if local.local_port:
        spec["lport"] = str(local.local_port)
    return ",".join(f"{k}={v}" for k, v in spec.items())


def sshd_per_account(shell: Shell, users: Sequence[str], *, sshd: str = "/usr/sbin/sshd",
                     timeout: float | None = None) -> SshdPerAccount:
    """Effective sshd settings for every user in ``users`` from every address that matters."""
    seen = vantage(shell, timeout=timeout)
    match_lines = shell.run(["sh", "-c", MATCH_LINES_SCRIPT], sudo=True, timeout=timeout).stdout
    addresses = tuple(dict.fromkeys(a for a in (seen.client_address, OUTSIDE_ADDRESS,
                                                *addresses_in_match_lines(match_lines)) if a))
    specs = {connection_spec(u, a, seen): (u, a) for u in dict.fromkeys(users) for a in addresses}
    res = shell.run(["env", f"SSHD={sshd}", "sh", "-c", SSHD_T_SCRIPT, "sh", *specs], sudo=True,
                    timeout=timeout).check()
    parsed = parse_sshd_t_batch(res.stdout)
    missing = [s for s in specs if s not in parsed]
    if missing:
        raise ParseError(f"sshd -T printed nothing for {missing[0]}")
    contexts = tuple(SshdContext(user=specs[s][0], addr=specs[s][1], settings=parsed[s]) for s in specs)
    return SshdPerAccount(device=shell.device, users=tuple(dict.fromkeys(users)), addresses=addresses,
                          contexts=contexts)


# -- what the server offers, per account -------------------------------------------------------

@dataclass(frozen=True)
class OffersPerAccount:
    host: str
    port: int
    offers: tuple[SshAuthMethods, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("beyond_publickey",)

    @property
    def beyond_publickey(self) -> dict[str, tuple[str, ...]]:
        return {o.user: o.methods for o in self.offers if not o.publickey_only}


def _offer(host: str, port: int, known_hosts: Path, user: str, timeout: float, retries: int = 2
           ) -> SshAuthMethods:
    """auth "none" as ``user``; a connection sshd dropped (MaxStartups) is tried again."""
    for attempt in range(retries + 1):
        try:
            return ssh_auth_methods(host, port, known_hosts, user=user, timeout=timeout)
        except DeviceUnreachable:
            if attempt == retries:
                raise
            time.sleep(RETRY_PAUSE_S * (attempt + 1))
    raise AssertionError("unreachable")


def offers_per_account(host: str, port: int, known_hosts: Path, users: Sequence[str], *,
                       timeout: float = 10.0, parallel: int = 6) -> OffersPerAccount:
    """auth "none" as each user: the methods the server then offers that user."""
    names = list(dict.fromkeys(users))
    with (step("ssh auth methods per account", host=host, port=port, users=",".join(names)),
          ThreadPoolExecutor(max_workers=max(1, parallel)) as pool):
        offers = tuple(pool.map(lambda u: _offer(host, port, known_hosts, u, timeout), names))
    return OffersPerAccount(host=host, port=port, offers=offers)


# -- default passwords for every login account --------------------------------------------------

def credential_candidates(login_accounts: Iterable[str],
                          fixed: Sequence[tuple[str, str]] = DEFAULT_CREDENTIALS,
                          passwords: Sequence[str] = PASSWORDS_PER_ACCOUNT) -> tuple[tuple[str, str], ...]:
    """The fixed factory list plus a handful of passwords for each account that can log in."""
    pairs = list(fixed)
    for user in login_accounts:
        pairs += [(user, p.format(user=user)) for p in passwords]
    return tuple(dict.fromkeys(pairs))


PASSWORD_METHODS = frozenset({"password", "keyboard-interactive", "none"})


def try_account_passwords(host: str, port: int, known_hosts: Path, login_accounts: Iterable[str], *,
                          timeout: float = 10.0, parallel: int = 6) -> DefaultCredentialsEvidence:
    """Default passwords over SSH for the fixed list and every login account, in parallel.

    The server is first asked what it offers each user (auth "none"); a user offered
    neither password nor keyboard-interactive cannot log in with any password, so its
    candidates are recorded as refused without a connection each (sshd answers the same
    for users that do not exist, so this holds for the fixed list's names too)."""
    pairs = credential_candidates(login_accounts)
    offers = offers_per_account(host, port, known_hosts, [u for u, _ in pairs], timeout=timeout,
                                parallel=parallel)
    offered = {o.user: o.methods for o in offers.offers}
    to_try = [(u, p) for u, p in pairs if PASSWORD_METHODS & set(offered.get(u, ()))]
    tried = try_default_credentials(host, port, known_hosts, credentials=to_try, timeout=timeout,
                                    parallel=parallel) if to_try else None
    done = {(a.user, a.password): a for a in (tried.attempts if tried else ())}
    attempts = tuple(done.get((u, p)) or CredentialAttempt(
        u, p, "refused", f"password not offered (server offers {','.join(offered.get(u, ())) or 'nothing'})")
        for u, p in pairs)
    return DefaultCredentialsEvidence(host=host, port=port, attempts=attempts)
