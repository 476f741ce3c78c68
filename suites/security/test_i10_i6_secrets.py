"""I10 Lack of physical hardening (console, boot log) and I6 privacy (secrets in logs).

Boot log, the choice: power-cycling every hub on every run to capture a fresh boot is
too slow, so the check reads what this run has of it - the console capture (a console
server replays the boot log to a client that connects; a real ser2net may not, then the
capture holds only what the hub printed during the run) - plus the kernel log (`dmesg`)
and the journal of the current boot where the hub has them. The harness's own lab tests
prove the check on a fresh boot captured after a power cycle.
"""

from __future__ import annotations

import pytest

from hil.drivers.base import Console
from hil.hub import Hub
from hil.probes.console import ConsoleSession
from hil.probes.host import SecretScan, find_secrets
from hil_pytest.allure_labels import BLOCKER
from suites.evidence import attach_evidence
from suites.security.owasp import owasp

LOG_TAIL_LINES = 20000
"""Per log file: enough for a run's worth of logging, bounded for huge logs."""


@owasp("I10", isvs="V5", severity=BLOCKER)
@pytest.mark.needs_service("console")
@pytest.mark.hub_stage("console")
def test_console_asks_for_login(hub: Hub, console_session_evidence: ConsoleSession) -> None:
    """The login gate of the hub's console visit (hil_pytest.lanes)."""
    gate = console_session_evidence.gate
    attach_evidence("console login gate", gate)
    assert not gate.shell_without_login, f"{hub.name}: a newline on the console gives a shell"
    assert gate.asks_for_login, f"{hub.name}: a newline on the console gives {gate.final_state!r}"


def _findings(scans: list[SecretScan]) -> list[str]:
    return [f"{s.source}:{f.line} {f.kind}: {f.excerpt}" for s in scans for f in s.findings]


@owasp("I10", isvs="V5")
@pytest.mark.needs_service("console")
@pytest.mark.hub_stage("console")
def test_no_secrets_in_boot_log(hub: Hub, console: Console) -> None:
    console.state(hub.timeouts.console_open)  # a prompt: whatever the server replays is in by now
    capture = console.captured()
    scans = [find_secrets(capture, "console")]
    sources = {"console": "captured, with a boot" if "Booting Linux" in capture
               else "captured, no boot in it (the hub booted before this run)"}
    for name, argv in (("dmesg", ["dmesg"]), ("journal", ["journalctl", "-b", "--no-pager", "-q"])):
        res = hub.ssh.run(argv, sudo=True, timeout=hub.timeouts.ssh_command)
        sources[name] = "read" if res.ok else f"unavailable (exit {res.exit_status})"
        if res.ok:
            scans.append(find_secrets(res.stdout, name))
    found = _findings(scans)
    attach_evidence("boot log secret scan", {"sources": sources, "scans": scans})
    assert not found, f"{hub.name}: secrets in the boot log: {'; '.join(found)}"


@owasp("I6", isvs="V3")
@pytest.mark.needs_service("greengrass")
def test_no_secrets_in_greengrass_logs(hub: Hub) -> None:
    logs = f"{hub.device.expect.greengrass_root}/logs"
    listing = hub.ssh.run(["find", logs, "-maxdepth", "2", "-type", "f", "-name", "*.log"],
                          sudo=True, timeout=hub.timeouts.ssh_command).check()
    files = sorted(p for p in listing.stdout.splitlines() if p.strip())
    assert files, f"{hub.name}: no log files under {logs} (is the nucleus installed?)"
    scans = []
    for path in files:
        res = hub.ssh.run(["tail", "-n", str(LOG_TAIL_LINES), path], sudo=True,
                          timeout=hub.timeouts.ssh_command).check()
        scans.append(find_secrets(res.stdout, path))
    found = _findings(scans)
    attach_evidence("greengrass log secret scan", scans)
    assert not found, f"{hub.name}: secrets in Greengrass/component logs: {'; '.join(found)}"
