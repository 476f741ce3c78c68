"""Boot time: power on -> SSH answers. One power cycle per hub, so it is also marked ``slow``.

Deselect it with ``-m "latency and not slow"``. The test holds the hub's lease (the
``hub`` fixture) for the whole cycle and leaves the hub healthy (``ensure_ready``).
"""

from __future__ import annotations

import time

import pytest

from hil.drivers.base import PowerOutlet
from hil.errors import HilError, HostKeyMismatch
from hil.hub import Hub
from hil.probes.latency import evidence_from_samples
from hil.steps import step
from hil_pytest.allure_labels import labels
from hil_pytest.latency import LatencyRecorder

pytestmark = [pytest.mark.latency, pytest.mark.slow]

OFF_TIME_S = 2.0
POLL_S = 0.2


def _wait_for_ssh(hub: Hub, deadline: float) -> None:
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            hub.ssh.connect()
            hub.ssh.run(["true"], timeout=5.0).check()
            return
        except HostKeyMismatch:
            raise
        except HilError as exc:
            last = str(exc)
        time.sleep(POLL_S)
    pytest.fail(f"{hub.name}: SSH not ready {hub.timeouts.boot:.0f}s after power on ({last})",
                pytrace=False)


@labels("Latency", "Boot time", "normal")
def test_boot_time_power_on_to_ssh(hub: Hub, power: PowerOutlet, latency: LatencyRecorder) -> None:
    try:
        with step("power cycle for boot time", device=hub.name):
            hub.ssh.close()
            power.off()
            time.sleep(OFF_TIME_S)
            t0 = time.monotonic()
            power.on()
            _wait_for_ssh(hub, t0 + hub.timeouts.boot)
            seconds = time.monotonic() - t0
    finally:
        # the next test gets a re-checked hub (nucleus and broker back too), recovered if needed
        hub.mark_suspect("boot-time test power-cycled it")
        if not power.status():
            power.on()
    latency.check(evidence_from_samples("boot_time", [seconds], device=hub.name))
    hub.ensure_ready()
