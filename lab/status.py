"""`hil lab status`: cheap probes of every hub of the running lab."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import docker
import docker.errors
from docker.models.containers import Container

from lab.rack import running_hubs, ssh_banner
from lab.topology import LOOPBACK, HubSpec

PROBE_TIMEOUT = 1.0
BROKER_PORT = 8883
ENGINE_PROBE_SECONDS = "3"
NUCLEUS_PROCESS = "ggnucleus.daemon"
"""The stand-in's process (lab/hub/rootfs/opt/hil-lab/nucleus/start); a cheap liveness probe."""


@dataclass(frozen=True)
class HubStatus:
    name: str
    address: str
    power: str
    """"on", "off" or "hung" (paused: powered, but frozen)."""
    ssh: bool
    console: bool
    broker: bool
    engine: str
    nucleus: str


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def _exec(container: Container, argv: list[str]) -> tuple[int, str]:
    try:
        result = container.exec_run(argv, demux=False)
    except docker.errors.APIError:
        return -1, ""
    return int(result.exit_code or 0), bytes(result.output or b"").decode(errors="replace").strip()


def probe(hub: HubSpec, container: Container) -> HubStatus:
    container.reload()
    state = container.status
    power = {"running": "on", "paused": "hung"}.get(state, "off")
    engine = nucleus = "-"
    if power == "on":
        # bounded: during boot the inner engine's socket exists before it answers
        rc, out = _exec(container, ["timeout", ENGINE_PROBE_SECONDS, "docker", "version", "--format",
                                    "{{.Server.Version}}"])
        engine = out.split("+")[0] if rc == 0 and out else "down"
        rc, _ = _exec(container, ["pgrep", "-f", NUCLEUS_PROCESS])
        nucleus = "running" if rc == 0 else "down"
    return HubStatus(
        name=hub.name, address=hub.address, power=power,
        ssh=power == "on" and ssh_banner(hub.address, timeout=PROBE_TIMEOUT) is not None,
        console=_tcp_open(LOOPBACK, hub.console_port),
        broker=power == "on" and _tcp_open(hub.address, BROKER_PORT),
        engine=engine, nucleus=nucleus,
    )


def lab_status(client: docker.DockerClient) -> list[HubStatus]:
    hubs = running_hubs(client)
    with ThreadPoolExecutor(max_workers=max(1, len(hubs))) as pool:
        return list(pool.map(lambda pair: probe(*pair), hubs))
