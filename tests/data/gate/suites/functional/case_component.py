import os

import pytest

from hil.errors import DeviceUnreachable

SCENARIO = os.environ.get("GATE_SCENARIO", "good")
DEVICES = ["hub-01", "hub-02"]


@pytest.fixture
def deployment(device: str) -> dict[str, str]:
    if SCENARIO == "harness":
        raise KeyError("recipe field 'ComponentVersion' missing in the harness's deployment template")
    return {"com.example.Telemetry": "1.4.0"}


@pytest.mark.functional
@pytest.mark.parametrize("device", DEVICES)
def test_component_running(device: str, deployment: dict[str, str]) -> None:
    if SCENARIO == "infra" and device == "hub-02":
        raise DeviceUnreachable("hub-02: ssh 172.28.77.12:22 did not answer after recovery")
    state = "BROKEN" if SCENARIO == "bad" and device == "hub-01" else "RUNNING"
    assert state == "RUNNING", f"component com.example.Telemetry 1.4.0 is {state} on {device}"
