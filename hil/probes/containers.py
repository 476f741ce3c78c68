"""Containers' isolation on a hub (OWASP IoT I9), judged from ``docker inspect``.

What hands a container the host: privileged mode; capabilities added beyond the
policy's allowlist (hil/policies/container.yaml); seccomp, AppArmor or SELinux
confinement switched off; the host's PID, IPC, network or UTS namespace; host devices;
and bind mounts of sensitive host paths. Mount sources are resolved on the hub
(``realpath``), so ``/var/run`` and ``/run`` are one path and a symlink or a parent
folder (``-v /run:/x`` exposes the Docker socket) cannot hide what is mounted - a name
suffix such as "docker.sock" proves nothing either way.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hil.drivers.base import Shell
from hil.errors import ParseError
from hil.probes.policy_files import POLICY_DIR, load_policy, policy_list, policy_mapping

DEFAULT_CONTAINER_POLICY = POLICY_DIR / "container.yaml"

UNCONFINED_OPTS: Mapping[str, str] = {
    "seccomp=unconfined": "seccomp unconfined",
    "seccomp:unconfined": "seccomp unconfined",
    "apparmor=unconfined": "AppArmor unconfined",
    "apparmor:unconfined": "AppArmor unconfined",
    "label=disable": "SELinux labels disabled",
    "label:disable": "SELinux labels disabled",
    "systempaths=unconfined": "/proc and /sys paths unmasked",
}
HOST_NAMESPACES: Mapping[str, str] = {"NetworkMode": "host network", "PidMode": "host pid namespace",
                                      "IpcMode": "host ipc namespace", "UTSMode": "host uts namespace"}


@dataclass(frozen=True)
class ContainerPolicy:
    name: str
    version: str
    capability_allowlist: Mapping[str, str]
    sensitive_host_paths: tuple[str, ...]


def load_container_policy(path: Path = DEFAULT_CONTAINER_POLICY) -> ContainerPolicy:
    what = "container policy"
    doc = load_policy(path, ("name", "version", "capability_allowlist", "sensitive_host_paths"), what)
    caps = {k.upper().removeprefix("CAP_"): v
            for k, v in policy_mapping(doc, "capability_allowlist", path, what).items()}
    return ContainerPolicy(str(doc["name"]), str(doc["version"]), caps,
                           policy_list(doc, "sensitive_host_paths", path, what))


@dataclass(frozen=True)
class BindMount:
    source: str
    destination: str
    rw: bool


@dataclass(frozen=True)
class ContainerIsolation:
    name: str
    image: str
    running: bool
    privileged: bool
    namespaces: Mapping[str, str]
    """HostConfig NetworkMode/PidMode/IpcMode/UTSMode as docker reports them."""
    cap_add: tuple[str, ...]
    security_opt: tuple[str, ...]
    apparmor_profile: str
    devices: tuple[str, ...]
    device_cgroup_rules: tuple[str, ...]
    binds: tuple[BindMount, ...]
    problems: tuple[str, ...] = field(default=())
    """Filled by ``judge_container``."""


@dataclass(frozen=True)
class ContainerIsolationScan:
    device: str
    policy: str
    containers: tuple[ContainerIsolation, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("offenders",)

    @property
    def offenders(self) -> dict[str, tuple[str, ...]]:
        return {c.name: c.problems for c in self.containers if c.problems}


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def parse_docker_inspect(text: str) -> tuple[ContainerIsolation, ...]:
    try:
        docs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"docker inspect printed no JSON: {exc}") from None
    if not isinstance(docs, list):
        raise ParseError("docker inspect JSON is not a list")
    out = []
    for d in docs:
        hc = d.get("HostConfig") or {}
        binds = tuple(BindMount(str(m.get("Source", "")), str(m.get("Destination", "")), bool(m.get("RW")))
                      for m in d.get("Mounts") or [] if m.get("Type") == "bind")
        devices = tuple(f"{dev.get('PathOnHost')}:{dev.get('PathInContainer')}"
                        for dev in hc.get("Devices") or [])
        out.append(ContainerIsolation(
            name=str(d.get("Name", "")).lstrip("/"),
            image=str((d.get("Config") or {}).get("Image", d.get("Image", ""))),
            running=bool((d.get("State") or {}).get("Running")),
            privileged=bool(hc.get("Privileged")),
            namespaces={k: str(hc.get(k) or "") for k in HOST_NAMESPACES},
            cap_add=_strings(hc.get("CapAdd")),
            security_opt=_strings(hc.get("SecurityOpt")),
            apparmor_profile=str(d.get("AppArmorProfile") or ""),
            devices=devices,
            device_cgroup_rules=_strings(hc.get("DeviceCgroupRules")),
            binds=binds,
        ))
    return tuple(out)


def _covers(source: str, sensitive: str) -> bool:
    """A bind of ``source`` exposes ``sensitive`` when it is that path or a folder above it."""
    if source == sensitive:
        return True
    prefix = source if source.endswith("/") else source + "/"
    return sensitive.startswith(prefix)


def judge_container(c: ContainerIsolation, policy: ContainerPolicy, resolved: Mapping[str, str]
                    ) -> ContainerIsolation:
    """``c`` with its problems; ``resolved`` maps host paths to their realpath on the hub."""
    problems: list[str] = []
    if c.privileged:
        problems.append("privileged")
    for key, what in HOST_NAMESPACES.items():
        if c.namespaces.get(key) == "host":
            problems.append(what)
    for cap in c.cap_add:
        name = cap.upper().removeprefix("CAP_")
        if name not in policy.capability_allowlist:
            problems.append(f"capability {name} added (allowlist: {', '.join(policy.capability_allowlist)})")
    for opt in c.security_opt:
        if opt.replace(" ", "") in UNCONFINED_OPTS:
            problems.append(UNCONFINED_OPTS[opt.replace(" ", "")])
    if c.apparmor_profile == "unconfined" and "AppArmor unconfined" not in problems:
        problems.append("AppArmor unconfined")
    problems += [f"host device {d}" for d in c.devices]
    problems += [f"device cgroup rule {r}" for r in c.device_cgroup_rules]
    sensitive = {resolved.get(p, p): p for p in policy.sensitive_host_paths}
    for b in c.binds:
        real = resolved.get(b.source, b.source)
        hits = sorted({name for path, name in sensitive.items() if _covers(real, path)})
        if hits:
            shown = b.source if real == b.source else f"{b.source} (= {real})"
            socket_note = " - the docker socket" if any("docker.sock" in h for h in hits) else ""
            problems.append(f"host {shown} mounted at {b.destination}{' read-write' if b.rw else ''}"
                            f" exposes {', '.join(hits)}{socket_note}")
    return dataclasses.replace(c, problems=tuple(dict.fromkeys(problems)))


def resolve_paths(shell: Shell, paths: Sequence[str], *, timeout: float | None = None) -> dict[str, str]:
    """realpath of each host path on the hub (missing components allowed)."""
    unique = sorted({p for p in paths if p.startswith("/")})
    if not unique:
        return {}
    res = shell.run(["realpath", "-m", "--", *unique], sudo=True, timeout=timeout).check()
    lines = res.stdout.splitlines()
    if len(lines) != len(unique):
        raise ParseError(f"realpath printed {len(lines)} lines for {len(unique)} paths")
    return dict(zip(unique, lines, strict=True))


def container_isolation(shell: Shell, *, policy: ContainerPolicy | None = None,
                        timeout: float | None = None) -> ContainerIsolationScan:
    """Every container on the device (running or not), judged against the container policy."""
    pol = policy or load_container_policy()
    ids = shell.run(["docker", "ps", "-aq", "--no-trunc"], sudo=True, timeout=timeout).check()
    id_list = ids.stdout.split()
    found: tuple[ContainerIsolation, ...] = ()
    if id_list:
        found = parse_docker_inspect(shell.run(["docker", "inspect", *id_list], sudo=True,
                                               timeout=timeout).check().stdout)
    resolved = resolve_paths(shell, [*pol.sensitive_host_paths, *(b.source for c in found for b in c.binds)],
                             timeout=timeout)
    return ContainerIsolationScan(device=shell.device, policy=f"{pol.name} {pol.version}",
                                  containers=tuple(judge_container(c, pol, resolved) for c in found))
