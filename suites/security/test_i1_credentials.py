"""I1 Weak, guessable or hardcoded passwords: SSH and console logins, sshd, shadow, host keys."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from hil.drivers.base import Console
from hil.hub import Hub
from hil.probes.console import console_default_credentials
from hil.probes.host import empty_passwords
from hil.probes.ssh import HARDENED_SSHD, ssh_auth_methods, sshd_effective_config, try_default_credentials
from suites.evidence import attach_evidence
from suites.labels import BLOCKER
from suites.security.owasp import owasp


@owasp("I1", isvs="V3", severity=BLOCKER)
def test_ssh_offers_only_publickey(hub: Hub) -> None:
    ssh = hub.device.ssh
    ev = ssh_auth_methods(ssh.host, ssh.port, ssh.known_hosts, timeout=hub.timeouts.ssh_connect)
    attach_evidence("ssh auth methods", ev)
    assert ev.publickey_only, f"{hub.name}: SSH offers {', '.join(ev.methods)} (only publickey allowed)"


@owasp("I1", isvs="V3", severity=BLOCKER)
def test_ssh_refuses_default_credentials(hub: Hub) -> None:
    ssh = hub.device.ssh
    ev = try_default_credentials(ssh.host, ssh.port, ssh.known_hosts, timeout=hub.timeouts.ssh_connect)
    attach_evidence("ssh default credentials", ev)
    errors = [f"{a.user}: {a.detail}" for a in ev.attempts if a.outcome == "error"]
    assert not ev.accepted, f"{hub.name}: SSH accepted default logins {', '.join(ev.accepted)}"
    assert not errors, f"{hub.name}: default logins could not all be tried: {errors}"


@owasp("I1", isvs="V5", severity=BLOCKER)
@pytest.mark.needs_service("console")
def test_console_refuses_default_credentials(hub: Hub, console: Console) -> None:
    ev = console_default_credentials(console, timeout=hub.timeouts.console_open)
    attach_evidence("console default credentials", ev)
    assert not ev.accepted, f"{hub.name}: the console accepted default logins {', '.join(ev.accepted)}"
    assert not ev.untested, f"{hub.name}: the console did not let default logins be refused: {ev.untested}"


@owasp("I1", isvs="V3")
def test_sshd_effective_config_hardened(hub: Hub) -> None:
    cfg = sshd_effective_config(hub.ssh, timeout=hub.timeouts.ssh_command)
    wanted = {k: cfg.settings.get(k) for k in HARDENED_SSHD}
    attach_evidence("sshd -T (judged settings)", {"effective": wanted, "acceptable": HARDENED_SSHD})
    bad = cfg.deviations()
    assert not bad, f"{hub.name}: sshd -T has " + ", ".join(f"{k} {v}" for k, v in bad.items())


@owasp("I1", isvs="V3")
def test_no_empty_passwords(hub: Hub) -> None:
    ev = empty_passwords(hub.ssh, timeout=hub.timeouts.ssh_command)
    attach_evidence("accounts with an empty password", ev)
    assert not ev.users, f"{hub.name}: accounts without a password: {', '.join(ev.users)}"


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
