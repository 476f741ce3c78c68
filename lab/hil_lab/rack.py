"""Bring the virtual rack up and take it down.

`up`: engine -> state and CA -> images -> network -> registry (+ component images
pushed to it) -> rackd (PDU, consoles) -> hub containers, powered on through the
PDU -> wait for each hub's sshd. `down` removes the containers `up` ran (labelled
hil-lab=1 and hil-lab.role), every network and volume labelled hil-lab=1, and stops
rackd; images (a cache) and lab/.state stay.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
import rich.progress
from docker.models.containers import Container
from docker.models.networks import Network

from hil.errors import DeviceUnreachable, InfrastructureError, UserError
from hil.timeouts import DEFAULT_TIMEOUTS
from hil_lab import engine, plain_hub, rackd
from hil_lab.images import OCI_CACHE, LabImages, ensure_images
from hil_lab.oci import push as oci_push
from hil_lab.oci import reproducible_image
from hil_lab.pdu_client import ask_pdu
from hil_lab.state import LabPaths, LabState, ensure_state
from hil_lab.topology import (
    COMPONENT_REPOSITORIES,
    GATEWAY,
    HUB_LABEL,
    LABEL,
    LOOPBACK,
    NETWORK,
    REGISTRY_ADDRESS,
    REGISTRY_CONTAINER,
    REGISTRY_HOST_PORT,
    REGISTRY_NAME,
    REGISTRY_PORT,
    ROLE_LABEL,
    SLOT,
    SLOT_LABEL,
    STATE_DIR,
    SUBNET,
    HubSpec,
    hub_by_name,
)

LABELS = {LABEL: "1", SLOT_LABEL: str(SLOT)}
SLOT_SELECTOR = [f"{LABEL}=1", f"{SLOT_LABEL}={SLOT}"]
"""Label filters for what this slot's `up` made (never another slot's lab)."""
SSH_PROBE_TIMEOUT = 2.0
REGISTRY_READY_TIMEOUT = 30.0
REMOVE_WORKERS = 8


@dataclass(frozen=True)
class UpResult:
    hubs: list[HubSpec]
    images: LabImages
    seconds: float
    plain: bool = False
    """The plain hub (hub-plain) runs."""


class Steps:
    """Progress display for `up`: one bar per step, ticked as it completes."""

    def __init__(self, progress: rich.progress.Progress | None) -> None:
        self.progress = progress

    def begin(self, title: str, total: int | None = 1) -> rich.progress.TaskID | None:
        return None if self.progress is None else self.progress.add_task(title, total=total)

    def advance(self, task: rich.progress.TaskID | None, steps: int = 1) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, steps)

    def done(self, task: rich.progress.TaskID | None) -> None:
        """Complete a one-step task."""
        if self.progress is not None and task is not None:
            self.progress.update(task, completed=1, total=1)


# ---------------------------------------------------------------------- up


def up(hubs: Sequence[HubSpec], *, progress: rich.progress.Progress | None = None,
       state_dir: Path = STATE_DIR, with_plain: bool = False) -> UpResult:
    started = time.monotonic()
    steps = Steps(progress)
    paths = LabPaths(state_dir)

    task = steps.begin("Docker engine")
    client = engine.connect(paths, report=lambda msg: _describe(progress, task, f"Docker engine: {msg}"))
    steps.done(task)

    # hubs already running stay served (consoles, PDU, known_hosts): `up` adds, never orphans
    hubs = _with_running_hubs(client, hubs)
    with_plain = with_plain or plain_hub.existing(client) is not None

    task = steps.begin("keys, host keys and certificates")
    state = ensure_state(state_dir, hubs)
    steps.done(task)

    images = ensure_images(client, state_dir=state_dir, progress=progress)

    task = steps.begin(f"network {NETWORK} ({SUBNET})")
    network = ensure_network(client)
    steps.done(task)

    task = steps.begin("lab registry", total=1 + len(images.components))
    ensure_registry(client, images, state)
    steps.advance(task)
    push_components(client, images, ca=state.certificates.ca, advance=lambda: steps.advance(task))

    task = steps.begin("rack services (PDU, consoles)")
    rackd.start(paths, hubs)
    steps.done(task)

    task = steps.begin("hubs: create and power on", total=len(hubs))
    for hub in hubs:
        ensure_hub_container(client, network, hub, images, paths)
        ask_pdu(hub.outlet, "On")
        steps.advance(task)

    if with_plain:
        task = steps.begin("plain hub: provision and start")
        plain = plain_hub.ensure_plain_hub(client, network, images.plain_hub, state)
        steps.done(task)

    task = steps.begin("hubs: waiting for sshd", total=len(hubs) + with_plain)
    wait_for_ssh(hubs, timeout=DEFAULT_TIMEOUTS.boot, on_ready=lambda _hub: steps.advance(task))
    if with_plain:
        plain_hub.wait_for_plain_ssh(plain)
        steps.advance(task)
    return UpResult(list(hubs), images, time.monotonic() - started, plain=with_plain)


def _with_running_hubs(client: docker.DockerClient, hubs: Sequence[HubSpec]) -> list[HubSpec]:
    wanted = list(hubs)
    names = {h.name for h in wanted}
    hub_filter = {"label": [*SLOT_SELECTOR, f"{ROLE_LABEL}=hub"]}
    for container in client.containers.list(all=True, filters=hub_filter):
        name = container.labels.get(HUB_LABEL, "")
        spec = hub_by_name(name)
        if spec is not None and name not in names:
            wanted.append(spec)
            names.add(name)
    return sorted(wanted, key=lambda h: h.outlet)


def _describe(progress: rich.progress.Progress | None, task: rich.progress.TaskID | None,
              text: str) -> None:
    if progress is not None and task is not None:
        progress.update(task, description=text)


def ensure_network(client: docker.DockerClient) -> Network:
    """The lab network, created if missing; a clear error when its subnet is taken."""
    for net in client.networks.list(names=[NETWORK]):
        if net.name == NETWORK:
            if net.attrs.get("Labels", {}).get(LABEL) != "1":
                raise UserError(f"a Docker network named {NETWORK} exists but was not made by the lab; "
                                f"remove it (`docker network rm {NETWORK}`) and retry")
            return net
    wanted = ipaddress.ip_network(SUBNET)
    for net in client.networks.list():
        for pool in (net.attrs.get("IPAM") or {}).get("Config") or []:
            subnet = pool.get("Subnet")
            if subnet and ipaddress.ip_network(subnet, strict=False).overlaps(wanted):
                raise UserError(f"the lab's subnet {SUBNET} overlaps Docker network {net.name!r} "
                                f"({subnet}); remove that network or free the range, then retry")
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET, gateway=GATEWAY)])
    try:
        return client.networks.create(NETWORK, driver="bridge", ipam=ipam, labels=LABELS)
    except docker.errors.APIError as exc:
        raise UserError(f"cannot create the lab network {NETWORK} ({SUBNET}): {exc.explanation}. "
                        "Another network or route on this machine probably uses that range.") from None


def ensure_registry(client: docker.DockerClient, images: LabImages, state: LabState) -> Container:
    """The lab registry on registry.lab:5000 (TLS, lab CA), also on 127.0.0.1:47500 for pushes."""
    paths = state.paths
    data = paths.root / "registry-data"  # kept across down: a warm up pushes nothing new
    data.mkdir(parents=True, exist_ok=True)
    container = _existing(client, REGISTRY_CONTAINER)
    if container is not None and (container.attrs["Config"]["Image"] != images.registry
                                  or container.status != "running"
                                  or not _mounts(container, paths.registry_certs)):
        container.remove(force=True)
        container = None
    if container is None:
        _check_host_port(REGISTRY_HOST_PORT)
        host_config = client.api.create_host_config(
            port_bindings={f"{REGISTRY_PORT}/tcp": (LOOPBACK, REGISTRY_HOST_PORT)},
            binds={str(paths.registry_certs): {"bind": "/certs", "mode": "ro"},
                   str(data): {"bind": "/var/lib/docker-registry", "mode": "rw"}},
            restart_policy={"Name": "unless-stopped"},
        )
        created = client.api.create_container(
            images.registry, name=REGISTRY_CONTAINER, hostname="registry",
            labels={**LABELS, ROLE_LABEL: "registry"},
            ports=[REGISTRY_PORT], host_config=host_config,
            networking_config=client.api.create_networking_config(
                {NETWORK: client.api.create_endpoint_config(ipv4_address=REGISTRY_ADDRESS)}),
        )
        container = client.containers.get(created["Id"])
        container.start()
    _wait_registry(state, container)
    return container


def _wait_registry(state: LabState, container: Container) -> None:
    url = f"https://{REGISTRY_ADDRESS}:{REGISTRY_PORT}/v2/"
    deadline = time.monotonic() + REGISTRY_READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        try:
            # verified against the lab CA by its lab address: what the hubs will see
            if requests.get(url, verify=str(state.certificates.ca), timeout=2).status_code == 200:
                return
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.3)
    logs = container.logs(tail=10).decode(errors="replace")
    raise InfrastructureError(f"the lab registry did not answer on {url} within "
                              f"{REGISTRY_READY_TIMEOUT:.0f}s ({last}); its log:\n{logs}")


def push_components(client: docker.DockerClient, images: LabImages, *, ca: Path,
                    advance: Callable[[], None] = lambda: None) -> None:
    """Push the candidate's component images; Docker allows a loopback registry without CA setup.
    An image candidates pin by digest goes in its reproducible form (hil_lab.oci) over the
    registry's API, verified against the lab CA, and must arrive under the digest it was built for."""
    for name, local in images.components.items():
        repo, tag = COMPONENT_REPOSITORIES[name].split(":")
        if name in images.digests:
            form = reproducible_image(client, local, OCI_CACHE)
            got = oci_push(form, f"https://{REGISTRY_ADDRESS}:{REGISTRY_PORT}", repo, tag, ca=ca)
            if got != images.digests[name]:
                raise InfrastructureError(f"the lab registry stored {repo}:{tag} as {got}, "
                                          f"expected {images.digests[name]}")
            advance()
            continue
        target = f"{LOOPBACK}:{REGISTRY_HOST_PORT}/{repo}"
        client.images.get(local).tag(target, tag)
        for line in client.images.push(target, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise InfrastructureError(f"pushing {local} to the lab registry failed: {line['error']}")
        advance()


def ensure_hub_container(client: docker.DockerClient, network: Network, hub: HubSpec,
                         images: LabImages, paths: LabPaths) -> Container:
    """Create the hub's container (stopped: the PDU powers it on) unless an identical one exists."""
    container = _existing(client, hub.container)
    if container is not None:
        config = container.attrs["Config"]
        if (config["Image"] == images.hub and not config.get("StdinOnce")
                and _mounts(container, paths.hub_config(hub.name))):
            return container
        container.remove(force=True)
    try:
        client.volumes.get(hub.volume)
    except docker.errors.NotFound:
        client.volumes.create(hub.volume, labels=LABELS)
    # flags from lab-notes: Docker inside the hub without --privileged
    host_config = client.api.create_host_config(
        cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        device_cgroup_rules=["a *:* rwm"],
        # the hub's engine pulls from the registry by name, as a real hub does from its fleet's
        extra_hosts={REGISTRY_NAME: REGISTRY_ADDRESS},
        binds={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
               str(paths.hub_config(hub.name)): {"bind": "/etc/hil-lab", "mode": "ro"},
               hub.volume: {"bind": "/var/lib/docker", "mode": "rw"}},
    )
    created = client.api.create_container(
        # detach=True: the SDK otherwise sets StdinOnce, and the console's stdin would close
        # for good the first time the console server detaches (a dead UART until power-off)
        images.hub, name=hub.container, hostname=hub.name, stdin_open=True, tty=False, detach=True,
        labels={**LABELS, ROLE_LABEL: "hub", HUB_LABEL: hub.name}, host_config=host_config,
        networking_config=client.api.create_networking_config(
            {NETWORK: client.api.create_endpoint_config(ipv4_address=hub.address)}),
    )
    return client.containers.get(created["Id"])


def _mounts(container: Container, source: Path) -> bool:
    """True when ``container`` bind-mounts ``source`` (a lab made from another checkout's
    state folder, e.g. a CI clone, must not be reused: its keys and certificates differ)."""
    binds = container.attrs.get("HostConfig", {}).get("Binds") or []
    return any(str(b).split(":", 1)[0] == str(source) for b in binds)


def _existing(client: docker.DockerClient, name: str) -> Container | None:
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _check_host_port(port: int) -> None:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((LOOPBACK, port)) == 0:
            raise UserError(f"port {LOOPBACK}:{port} is taken by another program; the lab registry "
                            "needs it. Stop that program (`ss -ltnp` shows which) and retry.")


def ssh_banner(address: str, timeout: float = SSH_PROBE_TIMEOUT, port: int = 22) -> str | None:
    """The hub's SSH identification string, or None when sshd does not answer."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            data = sock.recv(256)
    except OSError:
        return None
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return line if line.startswith("SSH-") else None


def wait_for_ssh(hubs: Sequence[HubSpec], *, timeout: float,
                 on_ready: Callable[[HubSpec], None] = lambda _h: None) -> None:
    deadline = time.monotonic() + timeout
    pending = list(hubs)
    while pending:
        for hub in list(pending):
            if ssh_banner(hub.address, timeout=1.0) is not None:
                pending.remove(hub)
                on_ready(hub)
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{h.name} ({h.address}:22)" for h in pending)
            raise DeviceUnreachable(f"sshd did not answer within {timeout:.0f}s on {names}; "
                                    f"`hil lab status` and the console (socket://{LOOPBACK}:"
                                    f"{pending[0].console_port}) show why")
        time.sleep(0.5)


# ---------------------------------------------------------------------- down


@dataclass(frozen=True)
class DownResult:
    containers: list[str]
    networks: list[str]
    volumes: list[str]
    rackd_stopped: bool
    engine_stopped: bool
    seconds: float


def down(*, stop_engine: bool = False, state_dir: Path = STATE_DIR) -> DownResult:
    started = time.monotonic()
    paths = LabPaths(state_dir)
    rackd_stopped = rackd.stop(paths)
    containers: list[str] = []
    networks: list[str] = []
    volumes: list[str] = []
    client = engine.existing_client()
    if client is not None:
        selector: dict[str, Any] = {"label": SLOT_SELECTOR}
        found = client.containers.list(all=True, filters={"label": [*SLOT_SELECTOR, ROLE_LABEL]})
        with ThreadPoolExecutor(max_workers=REMOVE_WORKERS) as pool:
            list(pool.map(lambda c: c.remove(force=True, v=True), found))
        containers = [c.name for c in found]
        for net in client.networks.list(filters=selector):
            net.remove()
            networks.append(net.name)
        vols = client.volumes.list(filters=selector)
        with ThreadPoolExecutor(max_workers=REMOVE_WORKERS) as pool:
            list(pool.map(lambda v: v.remove(force=True), vols))
        volumes = [v.name for v in vols]
    engine_stopped = engine.stop_engine(paths) if stop_engine else False
    return DownResult(containers, networks, volumes, rackd_stopped, engine_stopped,
                      time.monotonic() - started)


# ---------------------------------------------------------------------- lookups


def running_hubs(client: docker.DockerClient) -> list[tuple[HubSpec, Container]]:
    """The lab's hub containers (any state), in rack order."""
    found = []
    for container in client.containers.list(all=True, filters={"label": [*SLOT_SELECTOR, HUB_LABEL]}):
        name = container.labels.get(HUB_LABEL)
        hub = hub_by_name(name) if name else None
        if hub is not None:
            found.append((hub, container))
    return sorted(found, key=lambda pair: pair[0].index)


def hub_container(client: docker.DockerClient, name: str) -> tuple[HubSpec, Container]:
    hub = hub_by_name(name)
    if hub is None:
        raise UserError(f"{name!r} is not a lab hub name (hub-01, hub-02, ..., hub-vuln)")
    container = _existing(client, hub.container)
    if container is None:
        raise UserError(f"{name} is not part of the running lab (`hil lab status` lists the hubs)")
    return hub, container
