"""The lab's console server behaves like ser2net: a getty on newline, and it survives a
power cycle showing the boot log from its first line.

Needs a running lab (`hil lab up`); skipped with the reason otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import docker
import pytest
import requests
import serial
from lab_hub import HUB, PDU, leased_running_hub

from hil.timeouts import DEFAULT_TIMEOUTS

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FIRST_BOOT_LINE = "Booting Linux on physical CPU"

running_lab = pytest.fixture(scope="module", autouse=True)(leased_running_hub)


@pytest.fixture
def console() -> Iterator[serial.Serial]:
    port = serial.serial_for_url(HUB.console_url, timeout=0.2)
    yield port
    port.close()
    power("On")  # leave the hub on for whoever comes next


def power(action: str) -> None:
    requests.get(PDU, params={"cmnd": f"Power{HUB.outlet} {action}"},
                 timeout=DEFAULT_TIMEOUTS.power_request).raise_for_status()


def read_until(port: serial.Serial, marker: bytes, timeout: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} on {HUB.console_url} within {timeout:.0f}s; "
                                 f"last output: {buf[-300:]!r}")
        buf += port.read(4096)
    return buf


def first_line_after(output: bytes, marker: bytes) -> str:
    tail = output.split(marker, 1)[1] if marker else output
    lines = [ln.strip() for ln in tail.decode(errors="replace").splitlines() if ln.strip()]
    return lines[0] if lines else ""


def test_newline_gives_a_login_prompt(console: serial.Serial) -> None:
    console.reset_input_buffer()
    console.write(b"\n")
    seen = read_until_any(console, (b"login:", b"$ "), timeout=DEFAULT_TIMEOUTS.console_login)
    if not seen.endswith(b"login:"):
        # someone left a session logged in (as on a real rack): log it out first
        console.write(b"exit\n")
        read_until(console, b"login:", timeout=DEFAULT_TIMEOUTS.console_login)


def read_until_any(port: serial.Serial, markers: tuple[bytes, ...], timeout: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        for marker in markers:
            if marker in buf:
                return buf[:buf.index(marker) + len(marker)]
        if time.monotonic() > deadline:
            raise AssertionError(f"none of {markers!r} on {HUB.console_url} within {timeout:.0f}s; "
                                 f"last output: {buf[-300:]!r}")
        buf += port.read(4096)


def test_power_cycle_shows_boot_log_from_first_line(console: serial.Serial) -> None:
    power("Off")
    read_until(console, b"Power down", timeout=DEFAULT_TIMEOUTS.power_request)
    # the console server survives the power-off: a new client still connects, the old one stays
    with serial.serial_for_url(HUB.console_url, timeout=0.2) as second:
        second.write(b"\n")
        assert second.read(64) == b""  # a dead UART says nothing
    console.write(b"\n")
    console.reset_input_buffer()
    power("On")
    boot = read_until(console, b"login:", timeout=DEFAULT_TIMEOUTS.boot)
    assert FIRST_BOOT_LINE in first_line_after(boot, b"")


def test_client_connecting_after_power_on_still_gets_the_whole_boot(console: serial.Serial) -> None:
    power("Off")
    power("On")
    time.sleep(1.0)
    with serial.serial_for_url(HUB.console_url, timeout=0.2) as late:
        boot = read_until(late, b"login:", timeout=DEFAULT_TIMEOUTS.boot)
    assert FIRST_BOOT_LINE in first_line_after(boot, b"")


def test_start_by_someone_else_is_caught_up_from_the_log(console: serial.Serial) -> None:
    container = docker.from_env().containers.get(HUB.container)
    container.restart(timeout=5)  # not through the PDU: rackd was not attached before the start
    boot = read_until(console, b"Started", timeout=DEFAULT_TIMEOUTS.boot)
    assert FIRST_BOOT_LINE.encode() in boot
    # input reaches the getty of the new boot
    console.write(b"\n")
    read_until(console, b"login:", timeout=DEFAULT_TIMEOUTS.console_login)
