"""I2 Insecure network services: full TCP scan, device-side sockets, ssh-audit, Docker API.

The scan: ``tcp_scan`` only hands out a scan whose own output shows it covered the
hub (all 65535 ports, the host answering, the SSH port seen open): see
fixtures/hil_pytest/security.py.

Device-side sockets: a socket bound to loopback only is not a network service, so it
is allowed outside the allowlist (the lab's Docker DNS on 127.0.0.11, local helper
daemons) - except the forbidden ports (telnet, plaintext MQTT, Docker API), which are
refused on any address: a local Docker API or telnet is a privilege escalation path.
"""

from __future__ import annotations

import pytest

from hil.hub import Hub
from hil.probes.mqtt import plaintext_connect
from hil.probes.ports import (
    DOCKER_API_PORTS,
    FORBIDDEN_TCP_PORTS,
    PortScan,
    compare_ports,
    docker_api_exposure,
    listening_sockets,
)
from hil.probes.ssh import ssh_audit
from hil_pytest.allure_labels import BLOCKER
from suites.evidence import attach_evidence
from suites.security.owasp import owasp


@owasp("I2", isvs="V3", severity=BLOCKER)
def test_tcp_ports_match_allowlist(hub: Hub, tcp_scan: PortScan) -> None:
    cmp = compare_ports(tcp_scan, hub.device.expect.tcp_ports)
    attach_evidence("tcp scan vs allowlist", cmp)
    assert not cmp.unexpected, (f"{hub.name}: open TCP ports outside expect.tcp_ports "
                                f"{list(cmp.allowed)}: {list(cmp.unexpected)}")


@owasp("I2", isvs="V3", severity=BLOCKER)
def test_forbidden_ports_closed(hub: Hub, tcp_scan: PortScan) -> None:
    cmp = compare_ports(tcp_scan, hub.device.expect.tcp_ports)
    attach_evidence("forbidden ports", {"forbidden": FORBIDDEN_TCP_PORTS, "open": cmp.forbidden,
                                        "tool": tcp_scan.tool, "duration_s": round(tcp_scan.duration, 3)})
    assert not cmp.forbidden, f"{hub.name}: forbidden ports open: {list(cmp.forbidden)}"


@owasp("I2", isvs="V3")
def test_listening_sockets_match_allowlist(hub: Hub) -> None:
    ev = listening_sockets(hub.ssh, timeout=hub.timeouts.ssh_command)
    expect = hub.device.expect
    tcp = ev.unexpected("tcp", expect.tcp_ports, include_loopback=False)
    udp = ev.unexpected("udp", expect.udp_ports, include_loopback=False)
    local_forbidden = [s for s in ev.sockets if s.protocol == "tcp" and s.port in FORBIDDEN_TCP_PORTS]
    attach_evidence("listening sockets", {"sockets": ev, "unexpected_tcp": tcp, "unexpected_udp": udp,
                                          "forbidden_any_address": local_forbidden})
    problems = [f"{s.protocol}/{s.port} on {s.address} ({','.join(s.processes) or '?'})"
                for s in (*tcp, *udp, *local_forbidden)]
    assert not problems, f"{hub.name}: listening outside the allowlist: {'; '.join(sorted(set(problems)))}"


@owasp("I2", isvs="V4")
def test_ssh_audit_has_no_failures(hub: Hub) -> None:
    ev = ssh_audit(hub.device.ssh.host, hub.device.ssh.port)
    attach_evidence("ssh-audit", ev)
    failed = [f"{f.category} {f.algorithm}" for f in ev.failures]
    assert ev.exit_code != 3 and not failed, f"{hub.name}: ssh-audit {ev.verdict}: {', '.join(failed)}"


@owasp("I2", isvs="V3", severity=BLOCKER)
@pytest.mark.needs_service("docker")
def test_no_docker_api_on_tcp(hub: Hub) -> None:
    net = docker_api_exposure(hub.device.ssh.host)
    sockets = listening_sockets(hub.ssh, timeout=hub.timeouts.ssh_command)
    dockerd_tcp = [s for s in sockets.sockets if s.protocol == "tcp" and "dockerd" in s.processes]
    attach_evidence("docker api", {"network": net, "dockerd_tcp_sockets": dockerd_tcp,
                                   "ports_probed": DOCKER_API_PORTS})
    assert not net.exposed, f"{hub.name}: Docker API reachable over TCP: " + ", ".join(
        f"{p.port} (API {p.api_version or '?'})" for p in net.ports if p.open)
    assert not dockerd_tcp, f"{hub.name}: dockerd listens on TCP " + ", ".join(
        f"{s.address}:{s.port}" for s in dockerd_tcp)


@owasp("I2", isvs="V4", severity=BLOCKER)
@pytest.mark.needs_service("mqtt_broker")
def test_no_plaintext_mqtt(hub: Hub) -> None:
    att = plaintext_connect(hub.device.ssh.host, device=hub.name)
    attach_evidence("plaintext MQTT CONNECT on 1883", att)
    assert not att.accepted, f"{hub.name}: anonymous plaintext MQTT on 1883 got CONNACK 0"
