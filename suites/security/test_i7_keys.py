"""I7 Insecure data storage: private keys (PEM, OpenSSH, PuTTY or DER; in files of any
size) - their modes and owners, and keys outside the inventory's allowlist."""

from __future__ import annotations

from hil.errors import InconclusiveEvidence
from hil.hub import Hub
from hil.probes.accounts import Accounts
from hil.probes.keys import PrivateKeyScan
from suites.evidence import attach_evidence
from suites.security.owasp import owasp


@owasp("I7", isvs="V3")
def test_private_keys_mode_and_owner(hub: Hub, key_scan: PrivateKeyScan, hub_accounts: Accounts) -> None:
    people = set(hub_accounts.login_names) - {"root"}
    owned_by_people = [f"{k.path} ({k.owner})" for k in key_scan.keys if k.owner in people]
    attach_evidence("private keys", {"scan": key_scan, "owned_by_login_accounts": owned_by_people})
    if not key_scan.keys:  # every hub running sshd holds host keys
        raise InconclusiveEvidence(f"{hub.name}: no private key found at all: the search itself is suspect")
    assert not key_scan.too_open, f"{hub.name}: private keys readable beyond their owner: " + ", ".join(
        f"{k.path} {k.mode_octal}" for k in key_scan.keys if k.too_open)
    assert not owned_by_people, f"{hub.name}: private keys owned by login accounts: {owned_by_people}"


@owasp("I7", isvs="V3")
def test_no_stray_private_keys(hub: Hub, key_scan: PrivateKeyScan) -> None:
    attach_evidence("private keys", key_scan)
    stray = [f"{k.path} ({k.format})" for k in key_scan.keys if not k.allowed]
    assert not stray, f"{hub.name}: private keys outside expect.private_key_allowlist: {', '.join(stray)}"
