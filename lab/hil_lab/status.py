"""`hil lab status`: cheap probes of every hub of the running lab."""

from __future__ import annotations

import dataclasses
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from hil.errors import HilError
from hil_lab import plain_hub
from hil_lab.rack import running_hubs, ssh_banner
from hil_lab.topology import (
    LOOPBACK,
    PLAIN_ADDRESS,
    PLAIN_BROKER_PORT,
    PLAIN_NAME,
    PLAIN_SSH_PORT,
    REPO_ROOT,
    HubSpec,
)

PROBE_TIMEOUT = 1.0
BROKER_PORT = 8883
ENGINE_PROBE_SECONDS = "3"
NUCLEUS_PROCESS = "ggnucleus.daemon"
"""The stand-in's process (lab/hil_lab/hub/rootfs/opt/hil-lab/nucleus/start); a cheap liveness probe."""


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
    lease: str = "free"
    """Who holds the hub, from whichever lease store the inventory configures."""


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


def probe_plain(container: Container) -> HubStatus:
    """The plain hub: sshd on 2222, broker on 8884, no console, engine or nucleus."""
    container.reload()
    power = {"running": "on", "paused": "hung"}.get(container.status, "off")
    on = power == "on"
    return HubStatus(
        name=PLAIN_NAME, address=PLAIN_ADDRESS, power=power,
        ssh=on and ssh_banner(PLAIN_ADDRESS, timeout=PROBE_TIMEOUT, port=PLAIN_SSH_PORT) is not None,
        console=False, broker=on and _tcp_open(PLAIN_ADDRESS, PLAIN_BROKER_PORT), engine="-", nucleus="-",
    )


def lease_holders(inventory: Path | None = None) -> dict[str, str]:
    """hub -> holder from the configured lease store ($HIL_DEVICES or devices.yaml)."""
    from hil.inventory import load_inventory
    from hil.lease import make_lease_store

    path = inventory or Path(os.environ.get("HIL_DEVICES", REPO_ROOT / "devices.yaml"))
    try:
        inv = load_inventory(path)
    except HilError:
        return {}  # no usable inventory: nobody can hold a lease through it
    try:
        return {name: info.describe() for name, info in make_lease_store(inv).holders().items()}
    except HilError as exc:
        return {name: f"? ({exc})" for name in inv.devices}


def lab_status(client: docker.DockerClient) -> list[HubStatus]:
    hubs = running_hubs(client)
    plain = plain_hub.existing(client)
    with ThreadPoolExecutor(max_workers=max(1, len(hubs) + 1)) as pool:
        holders = pool.submit(lease_holders)
        rows = list(pool.map(lambda pair: probe(*pair), hubs))
        if plain is not None:
            rows.append(probe_plain(plain))
        held = holders.result()
    return [dataclasses.replace(r, lease=held.get(r.name, "free")) for r in rows]
