"""I1 Weak, guessable or hardcoded passwords: SSH and console logins, sshd, passwords, host keys.

SSH is judged per account: every account with a login shell (plus root and the harness's
user) - what the server offers it, default passwords tried as it, and sshd's effective
settings for it from every source address a Match block could single out.
"""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from hil.errors import InconclusiveEvidence
from hil.hub import Hub
from hil.probes.accounts import Accounts, password_states
from hil.probes.console import ConsoleCredentialsEvidence
from hil.probes.ssh import HARDENED_SSHD, ssh_auth_methods
from hil.probes.ssh_accounts import offers_per_account, sshd_per_account, try_account_passwords
from hil_pytest.allure_labels import BLOCKER
from suites.evidence import attach_evidence
from suites.security.owasp import owasp


def _ssh_users(hub: Hub, accts: Accounts) -> list[str]:
    """Every account that can log in, plus root and the harness's own user."""
    return list(dict.fromkeys([*accts.login_names, "root", hub.device.ssh.user]))


@owasp("I1", isvs="V3", severity=BLOCKER)
def test_ssh_offers_only_publickey(hub: Hub, hub_accounts: Accounts) -> None:
    """What the server offers each account that can log in (auth "none" as that user)."""
    ssh = hub.device.ssh
    ev = offers_per_account(ssh.host, ssh.port, ssh.known_hosts, _ssh_users(hub, hub_accounts),
                            timeout=hub.timeouts.ssh_connect)
    attach_evidence("ssh auth methods per account", ev)
    assert not ev.beyond_publickey, f"{hub.name}: SSH offers more than publickey: " + "; ".join(
        f"{user}: {', '.join(methods)}" for user, methods in ev.beyond_publickey.items())


@owasp("I1", isvs="V3", severity=BLOCKER)
def test_ssh_refuses_default_credentials(hub: Hub, hub_accounts: Accounts) -> None:
    """The factory list plus a handful of passwords for every account that can log in."""
    ssh = hub.device.ssh
    ev = try_account_passwords(ssh.host, ssh.port, ssh.known_hosts, hub_accounts.login_names,
                               timeout=hub.timeouts.ssh_connect)
    attach_evidence("ssh default credentials", ev)
    errors = [f"{a.user}: {a.detail}" for a in ev.attempts if a.outcome == "error"]
    assert not ev.accepted, f"{hub.name}: SSH accepted default logins {', '.join(ev.accepted)}"
    if errors:
        raise InconclusiveEvidence(f"{hub.name}: default logins could not all be tried: {errors}")


@owasp("I1", isvs="V5", severity=BLOCKER)
@pytest.mark.needs_service("console")
@pytest.mark.hub_stage("console")
def test_console_refuses_default_credentials(hub: Hub,
                                            console_credentials: ConsoleCredentialsEvidence) -> None:
    """Each factory login typed at the console's prompt by the hub's console lane (hil_pytest.lanes)."""
    ev = console_credentials
    attach_evidence("console default credentials", ev)
    assert not ev.accepted, f"{hub.name}: the console accepted default logins {', '.join(ev.accepted)}"
    assert not ev.untested, f"{hub.name}: the console did not let default logins be refused: {ev.untested}"


@owasp("I1", isvs="V3")
def test_sshd_effective_config_hardened(hub: Hub, hub_accounts: Accounts) -> None:
    """``sshd -T -C`` per account and source address: a Match block cannot hide a weakness."""
    ev = sshd_per_account(hub.ssh, _ssh_users(hub, hub_accounts), timeout=hub.timeouts.ssh_command)
    attach_evidence("sshd -T -C per account and address", {"acceptable": HARDENED_SSHD, "evidence": ev})
    assert not ev.deviations, f"{hub.name}: sshd allows " + "; ".join(ev.deviations)


@owasp("I1", isvs="V3")
def test_no_empty_passwords(hub: Hub, hub_accounts: Accounts) -> None:
    """Judged from /etc/passwd + /etc/shadow and from ``passwd -S``: either source suffices."""
    ev = password_states(hub.ssh, timeout=hub.timeouts.ssh_command, known=hub_accounts)
    attach_evidence("password states", ev)
    assert not ev.empty, f"{hub.name}: empty password for {', '.join(ev.empty)}"


def _pinned_prints(known_hosts: Path, name: str) -> set[str]:
    keys = paramiko.HostKeys(str(known_hosts)).lookup(name)
    return {keys[t].fingerprint for t in keys} if keys else set()


@owasp("I1", isvs="V3", severity="normal")
def test_host_keys_unique_across_rack(hub: Hub, request: pytest.FixtureRequest) -> None:
    """A cloned image shares host keys: none of this hub's keys may be pinned for another hub.

    Compares the key the hub serves (verified against its pin) and every key pinned for it
    with the pins of every other device in the inventory - no other hub is leased.
    """
    from hil.inventory import Inventory

    inventory: Inventory = request.getfixturevalue("inventory")
    ssh = hub.device.ssh
    served = ssh_auth_methods(ssh.host, ssh.port, ssh.known_hosts, timeout=hub.timeouts.ssh_connect)
    my_prints = _pinned_prints(ssh.known_hosts, ssh.known_hosts_name) | {served.host_key_fingerprint}
    shared: dict[str, list[str]] = {}
    for other in inventory.devices.values():
        if other.name == hub.name:
            continue
        common = sorted(my_prints & _pinned_prints(other.ssh.known_hosts, other.ssh.known_hosts_name))
        if common:
            shared[other.name] = common
    attach_evidence("host keys", {"served": served.host_key_fingerprint, "pinned": sorted(my_prints),
                                  "shared_with": shared})
    assert not shared, f"{hub.name}: host keys shared with {', '.join(shared)} (cloned image?)"
