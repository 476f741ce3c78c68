"""Functional checks of the candidate, deployed once per hub for this module (``deployed``).

What is checked comes from the candidate itself: its components (Greengrass states) and
the services of its docker-compose files (containers, published ports). The web and db
checks skip when the candidate has no such service. Containers are read with the Docker
SDK over the harness's pinned SSH connection (``docker_engine``).

Stability is watched in windows that run beside the other checks (hil.deploy.follow): the
window after the deployment starts when it SUCCEEDED and is joined by
``test_components_running_and_stay_running``; the restart check starts the window after the
restart, joined by ``test_components_stay_running_after_restart``. Each window lasts
``timeouts.settle`` and ends failed at the first state change away from RUNNING/FINISHED in
the nucleus's log (hil_pytest.plan orders the checks around them).
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime

import allure
import pytest
from docker import DockerClient
from docker.models.containers import Container

from hil.deploy.follow import NucleusLog
from hil.deploy.watch import Stability
from hil.drivers.greengrass import (
    STABLE_STATES,
    ComponentState,
    Greengrass,
    LogRecord,
    StateEvent,
    state_events,
)
from hil.inventory import Service
from hil.probes.mqtt import MqttRoundTrip
from hil.steps import step
from hil_pytest.allure_labels import labels
from hil_pytest.deploy import ComposeService, DeployedCandidate
from hil_pytest.verdicts import not_applicable

# every test here judges the candidate deployed as Greengrass components running containers
pytestmark = [pytest.mark.functional, pytest.mark.needs_service("greengrass", "docker")]

REDIS_PING = b"*1\r\n$4\r\nPING\r\n"
NET_TIMEOUT = 5.0


def _service(services: dict[str, ComposeService], name: str) -> ComposeService:
    if name not in services:
        pytest.skip(f"the candidate has no '{name}' service")
    return services[name]


def _containers(engine: DockerClient, svc: ComposeService) -> list[Container]:
    found: list[Container] = engine.containers.list(
        all=True, filters={"label": f"com.docker.compose.service={svc.name}"})
    return found


def _attach_states(stab: Stability) -> None:
    allure.attach("\n".join(f"{n}: {[s.value if s else None for s in h]}" for n, h in stab.history.items()),
                  name="states seen", attachment_type=allure.attachment_type.TEXT)


@labels("Candidate", "Component lifecycle", "blocker")
@pytest.mark.hub_stage("settled")
def test_components_running_and_stay_running(deployed: DeployedCandidate, greengrass: Greengrass) -> None:
    """Every component RUNNING/FINISHED for ``timeouts.settle`` seconds after the deployment."""
    stab = deployed.settled()
    _attach_states(stab)
    assert stab.ok, f"{deployed.hub.name}: {stab.problem}"
    for name, state in stab.states.items():
        assert state in STABLE_STATES, f"{deployed.hub.name}: {name} is {state}"
    for name in deployed.candidate.components:  # and still there now
        assert greengrass.component(name).state in STABLE_STATES, f"{deployed.hub.name}: {name} left"


@labels("Candidate", "Containers", "critical")
def test_long_running_containers_up(deployed: DeployedCandidate,
                                    candidate_services: dict[str, ComposeService],
                                    docker_engine: DockerClient) -> None:
    long_running = [s for s in candidate_services.values() if not s.one_shot]
    if not long_running:
        pytest.skip("the candidate's compose files declare no long-running service")
    for svc in long_running:
        found = _containers(docker_engine, svc)
        states = [(c.name, c.status) for c in found]
        allure.attach(str(states), name=f"{svc.name} containers", attachment_type=allure.attachment_type.TEXT)
        assert found, f"{deployed.hub.name}: no container for service {svc.name} ({svc.component})"
        assert all(st == "running" for _n, st in states), \
            f"{deployed.hub.name}: service {svc.name} of {svc.component} not running: {states}"


@labels("Candidate", "Containers", "critical")
def test_one_shot_app_exited_0(deployed: DeployedCandidate, candidate_services: dict[str, ComposeService],
                               docker_engine: DockerClient) -> None:
    one_shot = [s for s in candidate_services.values() if s.one_shot]
    if not one_shot:
        pytest.skip("the candidate's compose files declare no one-shot service (restart: \"no\")")
    for svc in one_shot:
        found = _containers(docker_engine, svc)
        assert found, f"{deployed.hub.name}: no container for one-shot service {svc.name}"
        for c in found:
            state = c.attrs["State"]
            allure.attach(str(state), name=f"{svc.name} state", attachment_type=allure.attachment_type.TEXT)
            assert state["Status"] == "exited" and state["ExitCode"] == 0, (
                f"{deployed.hub.name}: one-shot {svc.name} of {svc.component}: "
                f"status {state['Status']}, exit code {state['ExitCode']}")


@labels("Candidate", "Web", "critical")
def test_web_answers_http_200(deployed: DeployedCandidate,
                              candidate_services: dict[str, ComposeService]) -> None:
    svc = _service(candidate_services, "web")
    port = svc.published(80) or svc.published()
    if port is None:
        pytest.skip("the web service publishes no port")
    url = f"http://{deployed.address}:{port}/"
    with urllib.request.urlopen(url, timeout=NET_TIMEOUT) as resp:
        status, body = resp.status, resp.read(2000)
    allure.attach(body.decode("utf-8", "replace"), name=f"GET {url}",
                  attachment_type=allure.attachment_type.TEXT)
    assert status == 200, f"{deployed.hub.name}: GET {url} -> {status}"


@labels("Candidate", "Database", "critical")
def test_db_answers_ping(deployed: DeployedCandidate, candidate_services: dict[str, ComposeService]) -> None:
    svc = _service(candidate_services, "db")
    port = svc.published(6379) or svc.published()
    if port is None:
        pytest.skip("the db service publishes no port")
    with socket.create_connection((deployed.address, port), timeout=NET_TIMEOUT) as s:
        s.sendall(REDIS_PING)
        reply = s.recv(64)
    assert reply == b"+PONG\r\n", \
        f"{deployed.hub.name}: db {deployed.address}:{port} answered {reply!r} to PING"


@labels("Broker", "MQTT publish/subscribe", "critical")
@pytest.mark.needs_service("mqtt_broker")
def test_mqtt_publish_subscribe_round_trip(deployed: DeployedCandidate) -> None:
    hub = deployed.hub
    broker = hub.device.expect.broker
    if broker is None:
        raise not_applicable(hub.name, [Service.MQTT_BROKER])
    host = broker.host or deployed.address
    with MqttRoundTrip(host, broker.port, ca_file=broker.ca_file, cert_file=broker.cert_file,
                       key_file=broker.key_file, qos=1, timeout=10.0) as rt:
        seconds = [rt.round_trip() for _ in range(3)]
    allure.attach(", ".join(f"{s * 1000:.1f} ms" for s in seconds), name="round trips",
                  attachment_type=allure.attachment_type.TEXT)


def _hub_now(deployed: DeployedCandidate) -> datetime:
    out = deployed.hub.ssh.run(["date", "-u", "+%s.%N"]).check().stdout.strip()
    return datetime.fromtimestamp(float(out), UTC)


def _restarted(log: NucleusLog, greengrass: Greengrass, name: str, since: datetime) -> list[StateEvent]:
    """The component's transitions since ``since``, once they show it leaving and re-entering
    RUNNING (the log as it is written wakes the wait; the whole log is read to judge)."""
    events = [e for e in state_events(greengrass.nucleus_log(tail=500), name) if e.timestamp >= since]
    left = [e for e in events if e.current is ComponentState.RUNNING]
    back = [e for e in events
            if e.new is ComponentState.RUNNING and left and e.timestamp >= left[0].timestamp]
    return events if back else []


def _back_running(name: str) -> Callable[[LogRecord], bool]:
    def wake(rec: LogRecord) -> bool:
        return rec.context.get("serviceName") == name and rec.context.get("newState") == "RUNNING"
    return wake


@labels("Candidate", "Component lifecycle", "critical")
@pytest.mark.hub_stage("restart")
def test_component_restart_comes_back_running(deployed: DeployedCandidate, greengrass: Greengrass) -> None:
    """After the window after the deployment (the restart would end it): each running component is
    restarted and must come back RUNNING; the window after the restart starts then."""
    timeout = deployed.hub.timeouts.deployment
    for name in deployed.candidate.components:
        before = greengrass.component(name)
        if before.state is ComponentState.FINISHED:
            continue  # a finished one-shot component has nothing to restart into RUNNING
        since = _hub_now(deployed)
        with NucleusLog(greengrass.shell, greengrass.root).open() as log:
            greengrass.restart(name)
            # `component restart` exits 0 even when nothing happened: the nucleus log must show
            # the component leaving and re-entering RUNNING after the request
            deadline = time.monotonic() + timeout
            with step(f"greengrass: wait for {name} to leave and re-enter RUNNING", device=deployed.hub.name,
                      kind="settle"):
                while not (events := _restarted(log, greengrass, name, since)):
                    assert time.monotonic() < deadline, (
                        f"{deployed.hub.name}: {name} did not restart within {timeout:.0f}s")
                    log.wait(1.0, _back_running(name))
        allure.attach(", ".join(f"{e.current.value}->{e.new.value}" for e in events),
                      name=f"{name} transitions", attachment_type=allure.attachment_type.TEXT)
        after = greengrass.wait_for_state(name, {ComponentState.RUNNING}, timeout)
        assert after.state is ComponentState.RUNNING, \
            f"{deployed.hub.name}: {name} is {after.state} after restart"
    deployed.after_restart = deployed.watch(
        f"watch {', '.join(deployed.candidate.components)} for {deployed.hub.timeouts.settle:.0f}s after "
        "the restart", lane="window after restart")


@labels("Candidate", "Component lifecycle", "critical")
@pytest.mark.hub_stage("restart-settled")
def test_components_stay_running_after_restart(deployed: DeployedCandidate) -> None:
    """Every component RUNNING/FINISHED for ``timeouts.settle`` seconds after the restart."""
    window = deployed.after_restart
    if window is None:
        pytest.skip("no restart to watch after: test_component_restart_comes_back_running did not "
                    "restart the components (see its result)")
    stab = window.result()
    _attach_states(stab)
    assert stab.ok, f"{deployed.hub.name}: after restart: {stab.problem}"
