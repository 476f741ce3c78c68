"""I9 Insecure default settings: the Docker socket, containers' isolation, ASLR, file
permissions of security configuration and key folders, set-user-ID programs."""

from __future__ import annotations

import posixpath

import pytest

from hil.hub import Hub
from hil.probes.accounts import Accounts
from hil.probes.containers import container_isolation
from hil.probes.files import audited_paths, file_permissions, setuid_files
from hil.probes.host import docker_socket, sysctl
from hil.probes.keys import PrivateKeyScan
from hil_pytest.allure_labels import BLOCKER
from suites.evidence import attach_evidence
from suites.security.owasp import owasp

DOCKER_SOCKET = "/var/run/docker.sock"
FULL_ASLR = "2"
"""kernel.randomize_va_space: 2 randomises stack, mmap, vdso and heap (brk)."""


@owasp("I9", isvs="V3", severity=BLOCKER)
@pytest.mark.needs_service("docker")
def test_docker_socket_permissions(hub: Hub) -> None:
    sock = docker_socket(hub.ssh, DOCKER_SOCKET, timeout=hub.timeouts.ssh_command)
    attach_evidence("docker socket", sock)
    assert sock.exists, f"{hub.name}: {DOCKER_SOCKET} does not exist"
    assert sock.mode is not None and not sock.mode & 0o117, \
        f"{hub.name}: {DOCKER_SOCKET} mode {sock.mode_octal} (at most 0660)"
    assert (sock.owner, sock.group) == ("root", "docker"), \
        f"{hub.name}: {DOCKER_SOCKET} owned by {sock.owner}:{sock.group} (root:docker)"


@owasp("I9", isvs="V3", severity=BLOCKER)
@pytest.mark.needs_service("docker")
def test_containers_isolated(hub: Hub) -> None:
    scan = container_isolation(hub.ssh, timeout=hub.timeouts.ssh_command)
    attach_evidence(f"container isolation ({scan.policy})", scan)
    assert not scan.offenders, f"{hub.name}: containers breaking isolation: " + "; ".join(
        f"{name}: {', '.join(why)}" for name, why in scan.offenders.items())


@owasp("I9", isvs="V3")
def test_aslr_full(hub: Hub) -> None:
    value = sysctl(hub.ssh, "kernel.randomize_va_space", timeout=hub.timeouts.ssh_command)
    attach_evidence("ASLR", value)
    assert value.value == FULL_ASLR, f"{hub.name}: kernel.randomize_va_space = {value.value} (need 2)"


@owasp("I9", isvs="V3", severity=BLOCKER)
def test_security_files_not_writable_by_others(hub: Hub, hub_accounts: Accounts,
                                               key_scan: PrivateKeyScan) -> None:
    """sshd/sudoers/passwd/shadow/PAM/cron/systemd/Greengrass/broker configuration owned by root
    and writable by nobody else; key folders (and every folder a key was found in) not
    writable by group or others nor owned by a login account."""
    people = [n for n in hub_accounts.login_names if n != "root"]
    folders = sorted({posixpath.dirname(k.path) for k in key_scan.keys})
    config_paths, key_roots = audited_paths(hub.device.expect.greengrass_root)
    audit = file_permissions(hub.ssh, login_accounts=people, key_folders=folders, config_paths=config_paths,
                             key_roots=key_roots, timeout=hub.timeouts.ssh_command)
    attach_evidence("file permissions", audit)
    assert not audit.findings, f"{hub.name}: security-relevant files open to change: " + "; ".join(
        f.describe() for f in audit.findings)


@owasp("I9", isvs="V3")
def test_no_unexpected_setuid_programs(hub: Hub) -> None:
    scan = setuid_files(hub.ssh, timeout=hub.timeouts.ssh_command)
    attach_evidence(f"set-user-ID/set-group-ID programs ({scan.policy})", scan)
    assert not scan.unexpected, (f"{hub.name}: set-user-ID/set-group-ID programs outside the "
                                 f"allowlist {scan.policy}: {'; '.join(scan.unexpected)}")
