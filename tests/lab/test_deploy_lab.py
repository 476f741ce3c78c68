"""Deployments on the virtual lab: good, bad, upgrade + rollback, power cycle, 3 hubs in parallel.

Every test holds the leases of the hubs it deploys to and restores them in teardown.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from hil.deploy.candidate import Candidate, load_candidate
from hil.deploy.deployment import Deployment, DeploymentResult
from hil.deploy.snapshot import component_set
from hil.drivers.docker import docker_client
from hil.drivers.greengrass import ComponentState, DeploymentState, Greengrass
from hil.drivers.power import make_power
from hil.drivers.ssh import SshConnection
from hil.errors import HilError
from hil.inventory import load_inventory
from hil.lease import make_lease_store
from hil_lab.topology import lab_inventory_path
from hil_pytest.deploy import compose_services

ROOT = Path(__file__).resolve().parents[2]
KNOWN_HOSTS = ROOT / "lab" / ".state" / "known_hosts"
if not KNOWN_HOSTS.is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]
INV = load_inventory(lab_inventory_path())
GOOD = load_candidate(ROOT / "candidates" / "good")
BAD = load_candidate(ROOT / "candidates" / "bad")
UPGRADE = load_candidate(ROOT / "candidates" / "upgrade")
CONTAINER = "com.hbs.hub.Container"
LEASE_TIMEOUT = 600.0
PARALLEL_BUDGET_S = 60.0


@dataclass
class LeasedHub:
    name: str
    ssh: SshConnection
    gg: Greengrass

    @property
    def address(self) -> str:
        return INV.devices[self.name].ssh.host

    def deployment(self, cand: Candidate, *, stack: bool = False) -> Deployment:
        return Deployment(self.ssh, self.ssh, cand, greengrass=self.gg, timeouts=INV.timeouts, stack=stack)

    def components(self) -> dict[str, str]:
        return component_set(self.gg.component_list())


@contextmanager
def leased(name: str) -> Iterator[LeasedHub]:
    lease = make_lease_store(INV).acquire(name, timeout=LEASE_TIMEOUT)
    try:
        with SshConnection(name, INV.devices[name].ssh, INV.timeouts) as ssh:
            yield LeasedHub(name, ssh, Greengrass(ssh))
    finally:
        lease.release()


def restore(d: Deployment) -> None:
    if d.snapshot is not None:
        r = d.restore()
        assert r.ok, f"restore failed: {r.problem}"


def check_good(hub: LeasedHub, res: DeploymentResult) -> None:
    assert res.ok, res.summary()
    assert res.components[CONTAINER] is ComponentState.RUNNING
    with urllib.request.urlopen(f"http://{hub.address}/", timeout=5) as resp:
        assert resp.status == 200
    with socket.create_connection((hub.address, 6379), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert s.recv(64) == b"+PONG\r\n"
    client = docker_client(hub.ssh)
    try:
        [app] = client.containers.list(all=True, filters={"label": "com.docker.compose.service=app"})
        assert app.attrs["State"]["Status"] == "exited" and app.attrs["State"]["ExitCode"] == 0
    finally:
        client.close()


def test_good_candidate_deploys_and_restores() -> None:
    with leased("hub-01") as hub:
        before = hub.components()
        d = hub.deployment(GOOD)
        try:
            res = d.deploy()
            check_good(hub, res)
            print(f"hub-01 deploy: {res.durations}")
        finally:
            restore(d)
        assert hub.components() == before


def test_bad_candidate_fails_broken_with_logs_and_restores() -> None:
    with leased("hub-02") as hub:
        before = hub.components()
        d = hub.deployment(BAD)
        try:
            res = d.deploy()
            assert not res.ok
            assert res.status is not None and res.status.status is DeploymentState.FAILED, res.summary()
            assert res.components.get("com.hbs.hub.Broken") is ComponentState.BROKEN, res.components
            assert res.attachments and "greengrass.log" in res.attachments
            assert "com.hbs.hub.Broken" in res.attachments["greengrass.log"]
            assert str(res.failure_class) == "product"
        finally:
            restore(d)
        assert hub.components() == before


def _web_release(hub: LeasedHub) -> str:
    client = docker_client(hub.ssh)
    try:
        [web] = client.containers.list(filters={"label": "com.docker.compose.service=web"})
        return str(web.labels.get("com.hbs.release"))
    finally:
        client.close()


def test_upgrade_and_rollback_to_previous_version() -> None:
    with leased("hub-03") as hub:
        before = hub.components()
        base = hub.deployment(GOOD)
        try:
            assert base.deploy().ok
            assert _web_release(hub) == "1.0.0"
            up = hub.deployment(UPGRADE, stack=True)
            res = up.deploy()
            assert res.ok, res.summary()
            assert hub.gg.component(CONTAINER).version == "1.1.0"
            assert _web_release(hub) == "1.1.0"
            r = up.restore()  # roll the upgrade back: 1.0.0 again, RUNNING
            assert r.ok, r.problem
            c = hub.gg.wait_for_state(CONTAINER, {ComponentState.RUNNING}, INV.timeouts.deployment)
            assert c.version == "1.0.0"
            assert _web_release(hub) == "1.0.0"
        finally:
            restore(base)
        assert hub.components() == before


def test_tampered_artifact_is_refused_and_the_old_version_keeps_running(tmp_path: Path) -> None:
    """OWASP I4 on a hub: the upgrade validated, then one byte of its artifact changed on the
    way (still a working compose file, release 1.1.0 -> 1.1.1): the nucleus checks the
    recipe's digest, fails the deployment before anything changes, 1.0.0 keeps running."""
    import shutil

    shutil.copytree(ROOT / "candidates" / "upgrade", tmp_path / "upgrade")
    up = load_candidate(tmp_path / "upgrade")  # valid now: every digest matches
    compose = tmp_path / "upgrade" / "artifacts" / CONTAINER / "1.1.0" / "docker-compose.yaml"
    data = compose.read_bytes()
    i = data.index(b'HBS_RELEASE: "1.1.0"') + len(b'HBS_RELEASE: "1.1.')
    compose.write_bytes(data[:i] + b"1" + data[i + 1:])  # one byte: "1.1.0" -> "1.1.1"
    with leased("hub-02") as hub:
        before = hub.components()
        base = hub.deployment(GOOD)
        try:
            assert base.deploy().ok
            res = hub.deployment(up, stack=True).deploy()
            assert not res.ok and str(res.failure_class) == "product", res.summary()
            assert res.status is not None and res.status.status is DeploymentState.FAILED, res.summary()
            assert res.status.detailed_status == "FAILED_NO_STATE_CHANGE", res.status
            assert "ARTIFACT_CHECKSUM_MISMATCH" in res.status.error_stack, res.status
            assert "Integrity check for downloaded artifact failed" in (res.status.failure_cause or "")
            c = hub.gg.component(CONTAINER)
            assert (c.version, c.state) == ("1.0.0", ComponentState.RUNNING)
            assert _web_release(hub) == "1.0.0"
            with urllib.request.urlopen(f"http://{hub.address}/", timeout=5) as resp:
                assert resp.status == 200
        finally:
            restore(base)
        assert hub.components() == before


def test_power_cycled_hub_comes_back_with_component_running() -> None:
    with leased("hub-03") as hub:
        outlet = make_power(INV.devices["hub-03"], INV.timeouts)
        d = hub.deployment(GOOD)
        try:
            assert d.deploy().ok
            hub.ssh.close()
            outlet.cycle()
            deadline = time.monotonic() + INV.timeouts.boot
            while True:
                try:
                    hub.ssh.connect()
                    break
                except HilError:
                    assert time.monotonic() < deadline, "SSH did not come back after the power cycle"
                    time.sleep(0.5)
            c = hub.gg.wait_for_state(CONTAINER, {ComponentState.RUNNING}, INV.timeouts.deployment)
            assert c.state is ComponentState.RUNNING
        finally:
            if not outlet.status():
                outlet.on()
            restore(d)


def test_good_candidate_on_three_hubs_in_parallel_under_60s() -> None:
    names = ["hub-01", "hub-02", "hub-03"]

    def one(name: str) -> DeploymentResult:
        with leased(name) as hub:
            d = hub.deployment(GOOD)
            try:
                return d.deploy()
            finally:
                restore(d)

    t0 = time.monotonic()
    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(one, names))
    wall = time.monotonic() - t0
    for r in results:
        print(f"{r.device}: create->verified {r.durations.get('create_to_verified', -1):.1f}s, "
              f"total {r.durations.get('total', -1):.1f}s, phases {r.durations}")
    print(f"3 hubs in parallel: wall {wall:.1f}s (incl. restore)")
    for r in results:
        assert r.ok, r.summary()
        assert r.durations["create_to_verified"] < PARALLEL_BUDGET_S, r.durations


def test_compose_services_of_the_example() -> None:
    svc = compose_services(GOOD)
    assert {n: s.one_shot for n, s in svc.items()} == {"web": False, "app": True, "db": False}
    assert svc["web"].published(80) == 80 and svc["db"].published(6379) == 6379
