"""The plain hub: a second kind of hub for the harness's own tests.

A Debian 12 container built from the lab's debootstrap base by its own small
Dockerfile (lab/hil_lab/images/plain-hub), not by the hub image or hil-lab-init: the
distribution's sshd on port 2222 and mosquitto with mutual TLS on 8884, configured
with drop-ins (sshd_config.d, mosquitto conf.d), certificates under /etc/mosquitto/ssl,
the harness user ``qa``; no serial console, no power outlet, no running container
engine, no Greengrass. Like a hub an installer provisioned, it receives its host keys,
broker certificate and the harness's authorized key before its first start (a tar
archive put into the created container, owners taken from the image's own accounts).

Its inventory entry (``plain_device_entry``) declares what it is: services ssh and
mqtt_broker. Its deliberate defects are listed in lab/DEFECTS.md (P1-P6).
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network

from hil.errors import DeviceUnreachable, InfrastructureError
from hil.inventory import Service
from hil_lab.state import HOST_KEY_TYPES, LabState
from hil_lab.topology import (
    HUB_LABEL,
    LABEL,
    NETWORK,
    PLAIN_ADDRESS,
    PLAIN_BROKER_PORT,
    PLAIN_CONTAINER,
    PLAIN_NAME,
    PLAIN_SSH_PORT,
    PLAIN_USER,
    ROLE_LABEL,
    SLOT,
    SLOT_LABEL,
)

BOOT_TIMEOUT = 60.0
PROVISIONED_LABEL = "hil-lab.provisioned"


def plain_device_entry() -> dict[str, Any]:
    """The plain hub in an inventory: its own profile, every path relative to the repo root."""
    return {
        "model": "plain-debian-12",
        "tags": ["virtual", "plain"],
        "ssh": {"host": PLAIN_ADDRESS, "port": PLAIN_SSH_PORT, "user": PLAIN_USER},
        "console": None,
        "expect": {
            "services": [Service.SSH.value, Service.MQTT_BROKER.value],
            "tcp_ports": [PLAIN_SSH_PORT, PLAIN_BROKER_PORT],
            "private_key_allowlist": ["/etc/ssh/ssh_host_*_key", "/etc/mosquitto/ssl/broker.key"],
            # no foreign certificate: the harness makes a throwaway one itself
            "broker": {"port": PLAIN_BROKER_PORT, "foreign_cert_file": None, "foreign_key_file": None},
        },
    }


def _ids(container: Container) -> tuple[dict[str, int], dict[str, int]]:
    """User and group ids from the image's own /etc/passwd and /etc/group."""
    out: list[dict[str, int]] = []
    for path in ("/etc/passwd", "/etc/group"):
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(Path(path).name)
            text = member.read().decode() if member else ""
        out.append({f[0]: int(f[2]) for f in (ln.split(":") for ln in text.splitlines()) if len(f) > 2})
    return out[0], out[1]


def provisioning_archive(state: LabState, harness_pub: str, users: Mapping[str, int],
                         groups: Mapping[str, int]) -> bytes:
    """Host keys, the broker's CA/certificate/key and the harness's authorized key, with real
    owners and modes, as a tar archive rooted at /."""
    paths, certs = state.paths, state.certificates
    server = certs.hub_server[PLAIN_NAME]
    qa, mosq = (users[PLAIN_USER], groups[PLAIN_USER]), (users["mosquitto"], groups["mosquitto"])
    files: list[tuple[str, bytes, int, tuple[int, int]]] = []
    for kind in HOST_KEY_TYPES:
        key = paths.host_key(PLAIN_NAME, kind)
        files.append((f"etc/ssh/{key.name}", key.read_bytes(), 0o600, (0, 0)))
        pub = key.with_name(key.name + ".pub")
        files.append((f"etc/ssh/{pub.name}", pub.read_bytes(), 0o644, (0, 0)))
    files += [
        (f"home/{PLAIN_USER}/.ssh/authorized_keys", f"{harness_pub}\n".encode(), 0o600, qa),
        ("etc/mosquitto/ca_certificates/fleet-ca.crt", certs.ca.read_bytes(), 0o644, (0, 0)),
        ("etc/mosquitto/ssl/broker.crt", server.cert.read_bytes(), 0o644, mosq),
        ("etc/mosquitto/ssl/broker.key", server.key.read_bytes(), 0o600, mosq),
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode, (uid, gid) in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def existing(client: docker.DockerClient) -> Container | None:
    try:
        return client.containers.get(PLAIN_CONTAINER)
    except docker.errors.NotFound:
        return None


def ensure_plain_hub(client: docker.DockerClient, network: Network, image: str, state: LabState) -> Container:
    """The plain hub's container, created, provisioned and started unless an identical one runs."""
    container = existing(client)
    if container is not None:
        if container.attrs["Config"]["Image"] == image and container.labels.get(PROVISIONED_LABEL) == str(
                state.paths.root):
            if container.status != "running":
                container.start()
            return container
        container.remove(force=True)
    created = client.api.create_container(
        image, name=PLAIN_CONTAINER, hostname=PLAIN_NAME, detach=True,
        labels={LABEL: "1", SLOT_LABEL: str(SLOT), ROLE_LABEL: "hub", HUB_LABEL: PLAIN_NAME,
                PROVISIONED_LABEL: str(state.paths.root)},
        networking_config=client.api.create_networking_config(
            {NETWORK: client.api.create_endpoint_config(ipv4_address=PLAIN_ADDRESS)}),
    )
    container = client.containers.get(created["Id"])
    users, groups = _ids(container)
    harness_pub = state.paths.ssh_key.with_name(state.paths.ssh_key.name + ".pub").read_text().strip()
    if not container.put_archive("/", provisioning_archive(state, harness_pub, users, groups)):
        raise InfrastructureError(f"provisioning {PLAIN_CONTAINER} failed (docker put_archive)")
    container.start()
    return container


def wait_for_plain_ssh(container: Container, timeout: float = BOOT_TIMEOUT) -> None:
    from hil_lab.rack import ssh_banner

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ssh_banner(PLAIN_ADDRESS, timeout=1.0, port=PLAIN_SSH_PORT) is not None:
            return
        container.reload()
        if container.status != "running":
            break
        time.sleep(0.3)
    logs = container.logs(tail=15).decode(errors="replace")
    raise DeviceUnreachable(f"{PLAIN_NAME}: sshd did not answer on {PLAIN_ADDRESS}:{PLAIN_SSH_PORT} within "
                            f"{timeout:.0f}s (container {container.status}); its log:\n{logs}")
