"""I9 Insecure default settings: the Docker socket, containers' isolation, ASLR."""

from __future__ import annotations

import pytest

from hil.hub import Hub
from hil.probes.host import container_isolation, docker_socket, sysctl
from suites.evidence import attach_evidence
from suites.labels import BLOCKER
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
    attach_evidence("container isolation", scan)
    assert not scan.offenders, f"{hub.name}: containers breaking isolation: " + "; ".join(
        f"{name}: {', '.join(why)}" for name, why in scan.offenders.items())


@owasp("I9", isvs="V3")
def test_aslr_full(hub: Hub) -> None:
    value = sysctl(hub.ssh, "kernel.randomize_va_space", timeout=hub.timeouts.ssh_command)
    attach_evidence("ASLR", value)
    assert value.value == FULL_ASLR, f"{hub.name}: kernel.randomize_va_space = {value.value} (need 2)"
