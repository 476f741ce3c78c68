"""The lab PDU (Tasmota HTTP API) switches a hub's container off and on; SSH comes back.

Needs a running lab (`hil lab up`); skipped with the reason otherwise.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest
import requests
from lab_hub import HUB, PDU, hil_path, leased_running_hub

from hil.timeouts import DEFAULT_TIMEOUTS

pytestmark = [pytest.mark.lab, pytest.mark.slow]

running_lab = pytest.fixture(scope="module", autouse=True)(leased_running_hub)


@pytest.fixture
def hub_powered_on() -> Iterator[None]:
    """Leave the hub as we found it: powered on with sshd answering."""
    yield
    requests.get(PDU, params={"cmnd": f"Power{HUB.outlet} On"}, timeout=10)
    _wait_ssh(DEFAULT_TIMEOUTS.boot)


def cmnd(text: str) -> dict[str, str]:
    resp = requests.get(PDU, params={"cmnd": text}, timeout=DEFAULT_TIMEOUTS.power_request)
    assert resp.status_code == 200
    body: dict[str, str] = resp.json()
    return body


def _container_status() -> str:
    return str(docker.from_env().containers.get(HUB.container).status)


def _ssh_answers() -> bool:
    try:
        with socket.create_connection((HUB.address, 22), timeout=1) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _wait_ssh(timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _ssh_answers():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"sshd on {HUB.address}:22 did not answer within {timeout:.0f}s")


def test_off_and_on_switch_the_container_and_ssh_comes_back(hub_powered_on: None) -> None:
    n = HUB.outlet
    assert cmnd(f"Power{n} On") == {f"POWER{n}": "ON"}
    assert cmnd(f"Power{n} Off") == {f"POWER{n}": "OFF"}
    assert _container_status() == "exited"
    assert not _ssh_answers()
    # the state is the container's: a later status query still says OFF
    assert cmnd(f"Power{n}") == {f"POWER{n}": "OFF"}
    assert cmnd(f"Power{n} On") == {f"POWER{n}": "ON"}
    assert _container_status() == "running"
    _wait_ssh(DEFAULT_TIMEOUTS.boot)
    assert cmnd(f"Power{n}") == {f"POWER{n}": "ON"}


def test_toggle_flips_the_outlet(hub_powered_on: None) -> None:
    n = HUB.outlet
    assert cmnd(f"Power{n} On") == {f"POWER{n}": "ON"}
    assert cmnd(f"Power{n} Toggle") == {f"POWER{n}": "OFF"}
    assert _container_status() == "exited"
    assert cmnd(f"Power{n} Toggle") == {f"POWER{n}": "ON"}
    assert _container_status() == "running"


def test_unknown_outlet_and_command_answer_like_tasmota() -> None:
    assert cmnd("Power77 On") == {"Command": "Unknown"}
    assert cmnd("Reboot 1") == {"Command": "Unknown"}
    assert cmnd(f"Power{HUB.outlet} Sideways") == {"Command": "Unknown"}


def test_hil_lab_power_status_uses_the_pdu() -> None:
    out = subprocess.run([hil_path(), "lab", "power", HUB.name, "status"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert f"{HUB.name} (outlet {HUB.outlet}): ON" in out
