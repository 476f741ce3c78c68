"""pytest plugin for the harness's own lab tests: inject a fault around one suite check.

Loaded into a child ``pytest suites/...`` run with ``-p hub_faults`` (this folder on
PYTHONPATH). The fault is injected by the child, on the hub it holds the lease of
(after the ``hub`` fixture made it healthy), right before the targeted check, and
cleared right after it - so no other lease holder ever sees the fault, and the
parent test needs no lease of its own while the child runs.

``HIL_HUB_FAULTS="hub-vuln=containers,log-secret;hub-03=nucleus-down"`` picks faults;
``HIL_HUB_FAULTS_LOG=FILE`` receives one JSON line per inject/clear (the proof).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from hil.hub import Hub

REGISTRY_IMAGE = "registry.lab:5000/hil/web:1.0"
HOST_ROOT_LINK = "/srv/hil-fault-data"
"""A harmless-looking folder name that is a symlink to / (what a bind mount of it hands over)."""
FAULT_CONTAINERS = {
    "hil-fault-hostnet": ["run", "-d", "--network", "host", "--pid", "host"],
    # the lab's engines cannot start privileged containers (no CAP_SYS_RESOURCE):
    # created, it carries HostConfig.Privileged exactly as a started one would
    "hil-fault-privileged": ["create", "--privileged"],
    "hil-fault-docker-sock": ["create", "-v", "/var/run/docker.sock:/var/run/docker.sock"],
    # no "docker.sock" in any name: /run holds the socket, the symlink resolves to /
    "hil-fault-run-dir": ["create", "-v", "/run:/hostrun"],
    "hil-fault-symlink-root": ["create", "-v", f"{HOST_ROOT_LINK}:/data:ro"],
    "hil-fault-unconfined": ["create", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
                             "--ipc", "host", "--device", "/dev/null:/dev/hostnull"],
}
LEAKY_LOG = "/greengrass/v2/logs/com.example.HilFaultLeaky.log"
LEAKY_TEXT = ("2024-05-01T10:00:00.000Z [INFO] (pool-2) com.example.HilFaultLeaky: "
              "connecting with token=hilFaultTok3nAbCdEf0123\n"
              "-----BEGIN EC PRIVATE KEY-----\n")
NUCLEUS_START = "/opt/hil-lab/nucleus/start"


def _ok(hub: Hub, argv: list[str], timeout: float = 120.0) -> str:
    return hub.ssh.run(argv, sudo=True, timeout=timeout).check().stdout


def _inject_containers(hub: Hub) -> dict[str, object]:
    had_image = hub.ssh.run(["docker", "image", "inspect", REGISTRY_IMAGE], sudo=True).ok
    if not had_image:
        _ok(hub, ["docker", "pull", REGISTRY_IMAGE])
    _ok(hub, ["ln", "-sfn", "/", HOST_ROOT_LINK])
    for name, args in FAULT_CONTAINERS.items():
        _ok(hub, ["docker", *args, "--name", name, REGISTRY_IMAGE])
    return {"had_image": had_image}


def _clear_containers(hub: Hub, state: dict[str, object]) -> None:
    hub.ssh.run(["docker", "rm", "-f", *FAULT_CONTAINERS], sudo=True, timeout=60)
    hub.ssh.run(["rm", "-f", HOST_ROOT_LINK], sudo=True, timeout=60)
    if not state.get("had_image"):
        hub.ssh.run(["docker", "rmi", REGISTRY_IMAGE], sudo=True, timeout=60)


def _inject_log_secret(hub: Hub) -> dict[str, object]:
    hub.ssh.run(["tee", LEAKY_LOG], sudo=True, stdin=LEAKY_TEXT).check()
    return {"file": LEAKY_LOG}


def _clear_log_secret(hub: Hub, state: dict[str, object]) -> None:
    hub.ssh.run(["rm", "-f", LEAKY_LOG], sudo=True).check()


ARTIFACT_KEY = "/greengrass/v2/packages/artifacts/com.example.HilFaultLeaky/1.0.0/client.key"
"""A key the candidate ships: devices.yaml's `/greengrass/v2/**` must not exempt it."""


def _inject_artifact_key(hub: Hub) -> dict[str, object]:
    folder = ARTIFACT_KEY.rsplit("/", 2)[0]
    _ok(hub, ["mkdir", "-p", ARTIFACT_KEY.rsplit("/", 1)[0]])
    _ok(hub, ["openssl", "genpkey", "-algorithm", "ed25519", "-out", ARTIFACT_KEY])
    _ok(hub, ["chmod", "0600", ARTIFACT_KEY])
    return {"folder": folder}


def _clear_artifact_key(hub: Hub, state: dict[str, object]) -> None:
    _ok(hub, ["rm", "-rf", str(state["folder"])])


def _harness_address(hub: Hub) -> str:
    """The harness's address as the hub sees it (the SSH session's client address)."""
    parts = hub.ssh.run(["printenv", "SSH_CONNECTION"]).check().stdout.split()  # not under sudo: env kept
    if len(parts) != 4:
        raise RuntimeError(f"{hub.name}: no SSH_CONNECTION in the session ({parts})")
    return parts[0]


def _blind_rule(source: str) -> list[str]:
    # new TCP connections from the harness get a reset: every port looks closed, and the
    # harness's own SSH session (already established) keeps working
    return ["INPUT", "-s", source, "-p", "tcp", "--syn", "-j", "REJECT", "--reject-with", "tcp-reset"]


def _inject_scan_blind(hub: Hub) -> dict[str, object]:
    source = _harness_address(hub)
    _ok(hub, ["iptables", "-I", *_blind_rule(source)])
    return {"source": source}


def _clear_scan_blind(hub: Hub, state: dict[str, object]) -> None:
    _ok(hub, ["iptables", "-D", *_blind_rule(str(state["source"]))])


def _nucleus_pids(hub: Hub) -> list[str]:
    res = hub.ssh.run(["pgrep", "-f", "[g]gnucleus.daemon"])
    return res.stdout.split()


def _inject_nucleus_down(hub: Hub) -> dict[str, object]:
    pids = _nucleus_pids(hub)
    if not pids:
        raise RuntimeError(f"{hub.name}: no nucleus stand-in process to stop")
    _ok(hub, ["kill", "-TERM", *pids])
    deadline = time.monotonic() + 15
    while _nucleus_pids(hub):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{hub.name}: nucleus still running 15 s after SIGTERM")
        time.sleep(0.2)
    return {"stopped": pids}


def _clear_nucleus_down(hub: Hub, state: dict[str, object]) -> None:
    _ok(hub, ["setsid", "-f", NUCLEUS_START])
    deadline = time.monotonic() + 60
    while not hub.ssh.run(["/greengrass/v2/bin/greengrass-cli", "component", "list"], sudo=True,
                          timeout=30).ok:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{hub.name}: greengrass-cli not answering 60 s after restarting the nucleus")
        time.sleep(0.5)


def _inject_power_off(hub: Hub) -> dict[str, object]:
    assert hub.power is not None, f"{hub.name}: no outlet to switch off"
    hub.power.off()  # through the harness's own (fenced) outlet: under this run's lease
    return {}


def _leave_it_to_the_harness(hub: Hub, state: dict[str, object]) -> None:
    """Nothing to undo: getting the hub back is the harness's job (its recovery strategy)."""


@dataclass(frozen=True)
class Fault:
    target: str
    """The suite check (function name) the fault is injected around."""
    inject: Callable[[Hub], dict[str, object]]
    clear: Callable[[Hub, dict[str, object]], None]


FAULTS: dict[str, Fault] = {
    "containers": Fault("test_containers_isolated", _inject_containers, _clear_containers),
    "log-secret": Fault("test_no_secrets_in_greengrass_logs", _inject_log_secret, _clear_log_secret),
    "nucleus-down": Fault("test_nucleus_healthy", _inject_nucleus_down, _clear_nucleus_down),
    # key_scan is gathered once per hub, by the first I7 check: the stray-key check judges that scan
    "artifact-key": Fault("test_private_keys_mode_and_owner", _inject_artifact_key, _clear_artifact_key),
    "scan-blind": Fault("test_tcp_ports_match_allowlist", _inject_scan_blind, _clear_scan_blind),
    # a power blip in the middle of a functional check, candidate deployed
    "power-off": Fault("test_components_running_and_stay_running", _inject_power_off,
                       _leave_it_to_the_harness),
}


def _wanted() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in filter(None, os.environ.get("HIL_HUB_FAULTS", "").split(";")):
        hub, _, names = part.partition("=")
        out[hub.strip()] = [n.strip() for n in names.split(",") if n.strip()]
    return out


def _log(event: str, hub: str, fault: str, **extra: object) -> None:
    path = os.environ.get("HIL_HUB_FAULTS_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, "hub": hub, "fault": fault, "time": time.time(), **extra},
                                default=str) + "\n")


@pytest.fixture(autouse=True)
def _hil_hub_fault(request: pytest.FixtureRequest) -> Iterator[None]:
    if "hub" not in request.fixturenames:
        yield
        return
    hub: Hub = request.getfixturevalue("hub")
    func = getattr(request.node, "originalname", request.node.name)
    faults = [n for n in _wanted().get(hub.name, []) if FAULTS[n].target == func]
    done: list[tuple[str, dict[str, object]]] = []
    try:
        for name in faults:
            done.append((name, FAULTS[name].inject(hub)))
            _log("inject", hub.name, name, test=request.node.nodeid)
        yield
    finally:
        for name, state in reversed(done):
            FAULTS[name].clear(hub, state)
            _log("clear", hub.name, name, test=request.node.nodeid)
