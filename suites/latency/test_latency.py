"""Latency of the hub's paths the product depends on, against the gate policy's budgets.

Round-trip metrics run on a fixed-rate schedule (``--latency-rate``, default 50/s),
discard a warm-up, and record ``--latency-samples`` round trips (default 300) from the
intended send time into an HdrHistogram. The MQTT and HTTP probes open their
connection inside the test, so a network fault present at that time is measured; the
SSH probe measures commands on the harness's persistent connection (what every
harness action pays). Sampling is ``quiet``: background work that loads the hub pauses
meanwhile (hil_pytest.plan); the SSH and MQTT probes do not care whether the candidate is
deployed and run while the window after its restart is watched. Deployment time is the
``deployed`` fixture's own deployment, from ``deployment create`` to verified RUNNING.
"""

from __future__ import annotations

import pytest

from hil.hub import Hub
from hil.inventory import Service
from hil.probes.latency import HttpRoundTrip, evidence_from_samples, measure, ssh_command_sampler
from hil.probes.mqtt import MqttRoundTrip
from hil.steps import step
from hil_pytest.allure_labels import labels
from hil_pytest.deploy import ComposeService, DeployedCandidate
from hil_pytest.latency import LatencyRecorder
from hil_pytest.verdicts import not_applicable

pytestmark = [pytest.mark.latency]

WARMUP = 10
PROBE_TIMEOUT = 10.0


@labels("Latency", "SSH command round trip", "normal")
@pytest.mark.quiet
@pytest.mark.hub_stage("restarted")
def test_ssh_command_round_trip(hub: Hub, latency: LatencyRecorder) -> None:
    with step("measure ssh_rtt", device=hub.name, rate_hz=latency.rate_hz, samples=latency.samples):
        ev = measure(ssh_command_sampler(hub.ssh, ["true"], timeout=PROBE_TIMEOUT), metric="ssh_rtt",
                     rate_hz=latency.rate_hz, count=latency.samples, warmup=WARMUP, device=hub.name)
    latency.check(ev)


@labels("Latency", "MQTT publish to receive", "critical")
@pytest.mark.needs_service("mqtt_broker")
@pytest.mark.quiet
@pytest.mark.hub_stage("restarted")
def test_mqtt_publish_receive_round_trip(hub: Hub, latency: LatencyRecorder) -> None:
    broker = hub.device.expect.broker
    if broker is None:
        raise not_applicable(hub.name, [Service.MQTT_BROKER])
    with step("measure mqtt_rtt", device=hub.name, rate_hz=latency.rate_hz, samples=latency.samples), \
            MqttRoundTrip(broker.host or hub.device.ssh.host, broker.port, ca_file=broker.ca_file,
                          cert_file=broker.cert_file, key_file=broker.key_file, qos=1,
                          timeout=PROBE_TIMEOUT) as rt:
        ev = measure(rt, metric="mqtt_rtt", rate_hz=latency.rate_hz, count=latency.samples, warmup=WARMUP,
                     device=hub.name)
    latency.check(ev)


@labels("Latency", "HTTP request to the web container", "critical")
@pytest.mark.needs_service("greengrass", "docker")
@pytest.mark.quiet
def test_http_get_web_round_trip(deployed: DeployedCandidate,
                                 candidate_services: dict[str, ComposeService],
                                 latency: LatencyRecorder) -> None:
    web = candidate_services.get("web")
    port = (web.published(80) or web.published()) if web else None
    if port is None:
        pytest.skip("the candidate has no web service with a published port")
    probe = HttpRoundTrip(deployed.address, port, "/", timeout=PROBE_TIMEOUT)
    try:
        with step("measure http_rtt", device=deployed.hub.name, rate_hz=latency.rate_hz):
            ev = measure(probe, metric="http_rtt", rate_hz=latency.rate_hz, count=latency.samples,
                         warmup=WARMUP, device=deployed.hub.name)
    finally:
        probe.close()
    latency.check(ev)


@labels("Latency", "Deployment time", "normal")
@pytest.mark.needs_service("greengrass", "docker")
@pytest.mark.hub_stage("settled")
def test_deployment_time(deployed: DeployedCandidate, latency: LatencyRecorder) -> None:
    """One sample per hub: `deployment create` -> every component verified RUNNING (settled: the
    window after the deployment, joined here, is part of it)."""
    stab = deployed.settled()
    if not stab.ok:
        pytest.fail(f"{deployed.hub.name}: the deployment never settled, so it has no time: {stab.problem}",
                    pytrace=False)
    seconds = deployed.result.durations["create_to_verified"]
    latency.check(evidence_from_samples("deployment_time", [seconds], device=deployed.hub.name))
