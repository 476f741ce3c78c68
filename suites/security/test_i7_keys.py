"""I7 Insecure data storage: private key files' modes and owners, stray keys."""

from __future__ import annotations

from hil.hub import Hub
from hil.probes.host import private_keys
from suites.evidence import attach_evidence
from suites.security.owasp import owasp

FIRST_LOGIN_UID = 1000
"""Debian: uids below this are system/service accounts; from here on, people log in."""


def _login_accounts(hub: Hub) -> set[str]:
    res = hub.ssh.run(["getent", "passwd"], timeout=hub.timeouts.ssh_command).check()
    out = set()
    for line in res.stdout.splitlines():
        parts = line.split(":")
        person = len(parts) >= 3 and parts[2].isdigit() and int(parts[2]) >= FIRST_LOGIN_UID
        if person and parts[0] != "nobody":
            out.add(parts[0])
    return out


@owasp("I7", isvs="V3")
def test_private_keys_mode_and_owner(hub: Hub) -> None:
    scan = private_keys(hub.ssh, hub.device.expect.private_key_allowlist, timeout=hub.timeouts.ssh_command)
    people = _login_accounts(hub)
    owned_by_people = [f"{k.path} ({k.owner})" for k in scan.keys if k.owner in people]
    attach_evidence("private keys", {"scan": scan, "owned_by_login_accounts": owned_by_people})
    assert scan.keys, f"{hub.name}: no private key found at all (the search itself is suspect)"
    assert not scan.too_open, f"{hub.name}: private keys readable beyond their owner: " + ", ".join(
        f"{k.path} {k.mode_octal}" for k in scan.keys if k.too_open)
    assert not owned_by_people, f"{hub.name}: private keys owned by login accounts: {owned_by_people}"


@owasp("I7", isvs="V3")
def test_no_stray_private_keys(hub: Hub) -> None:
    scan = private_keys(hub.ssh, hub.device.expect.private_key_allowlist, timeout=hub.timeouts.ssh_command)
    attach_evidence("private keys", scan)
    assert not scan.stray, (f"{hub.name}: private keys outside expect.private_key_allowlist: "
                            f"{', '.join(scan.stray)}")
