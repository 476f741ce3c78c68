"""Fault injection for the harness's reliability tests: `hil lab fault HUB KIND`."""

from __future__ import annotations

from collections.abc import Callable

import docker
import docker.errors
from docker.models.containers import Container

from hil.errors import InfrastructureError, UserError
from hil_lab.topology import NETWORK, HubSpec

FAULT_HELPER = "/usr/local/sbin/hil-lab-fault"


def _network(client: docker.DockerClient) -> docker.models.networks.Network:
    try:
        return client.networks.get(NETWORK)
    except docker.errors.NotFound:
        raise UserError(f"the lab network {NETWORK} does not exist: is the lab up?") from None


def _connected(container: Container) -> bool:
    container.reload()
    return NETWORK in (container.attrs["NetworkSettings"].get("Networks") or {})


def _running(container: Container, fault: str) -> None:
    container.reload()
    if container.status != "running":
        raise UserError(f"{container.name} is {container.status}: {fault} needs a running hub")


def _exec(container: Container, argv: list[str], fault: str) -> None:
    _running(container, fault)
    result = container.exec_run(argv)
    if result.exit_code not in (0, None):
        out = bytes(result.output or b"").decode(errors="replace").strip()
        raise InfrastructureError(f"{fault} on {container.name} failed (exit {result.exit_code}): {out}")


def cable_pull(client: docker.DockerClient, hub: HubSpec, container: Container) -> None:
    if _connected(container):
        _network(client).disconnect(container, force=True)


def cable_plug(client: docker.DockerClient, hub: HubSpec, container: Container) -> None:
    if not _connected(container):
        _network(client).connect(container, ipv4_address=hub.address)


def hang(client: docker.DockerClient, hub: HubSpec, container: Container) -> None:
    _running(container, "hang")
    container.pause()


def kill_sshd(client: docker.DockerClient, hub: HubSpec, container: Container) -> None:
    _exec(container, ["pkill", "-x", "sshd"], "kill-sshd")


def slow_network(client: docker.DockerClient, hub: HubSpec, container: Container, ms: int) -> None:
    if ms < 0:
        raise UserError("slow-network needs a delay of 0 ms or more")
    _exec(container, [FAULT_HELPER, "slow-network", str(ms)], "slow-network")


def clear(client: docker.DockerClient, hub: HubSpec, container: Container) -> None:
    """Undo every fault: unfreeze, plug the cable back, restart sshd, remove the delay."""
    container.reload()
    if container.status == "paused":
        container.unpause()
    cable_plug(client, hub, container)
    container.reload()
    if container.status == "running":
        _exec(container, [FAULT_HELPER, "clear"], "clear")
        # sshd is a child of the hub's init; after kill-sshd a fresh daemon takes over
        _exec(container, ["sh", "-c", "pgrep -x sshd >/dev/null || /usr/sbin/sshd"], "clear")


FaultAction = Callable[[docker.DockerClient, HubSpec, Container], None]
FAULTS: dict[str, FaultAction] = {
    "cable-pull": cable_pull,
    "cable-plug": cable_plug,
    "hang": hang,
    "kill-sshd": kill_sshd,
    "clear": clear,
}
"""Faults without an argument; slow-network takes milliseconds and is called directly."""
