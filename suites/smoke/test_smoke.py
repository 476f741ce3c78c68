"""Smoke suite: is each hub reachable, on the expected OS, in sync, with headroom, and are
its nucleus and container engine healthy? Expectations come from devices.yaml."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from hil.drivers.greengrass import ComponentState, Greengrass
from hil.health import MAX_CLOCK_SKEW_S, parse_df_free_mb, parse_meminfo_available_mb, parse_os_release
from hil.hub import Hub
from hil.probes.console import ConsoleSession
from hil_pytest.allure_labels import BLOCKER, CRITICAL, NORMAL, labels
from suites.evidence import attach_evidence

NUCLEUS = "aws.greengrass.Nucleus"

pytestmark = [pytest.mark.smoke]


@labels(feature="Smoke", story="Reachable over SSH", severity=BLOCKER)
def test_reachable_over_ssh(hub: Hub) -> None:
    token = secrets.token_hex(4)
    res = hub.ssh.run(["echo", token])
    attach_evidence("ssh echo", res)
    assert res.ok and res.stdout.strip() == token, f"{hub.name}: SSH echo gave {res.stdout!r}"


@labels(feature="Smoke", story="Reachable over the serial console", severity=CRITICAL)
@pytest.mark.needs_service("console")
@pytest.mark.hub_stage("console")
def test_reachable_over_console(hub: Hub, console_session_evidence: ConsoleSession) -> None:
    """The console visit the hub's console lane made (hil_pytest.lanes): a login prompt, a login
    with the inventory's credentials, ``uname -n`` naming the hub."""
    gate = console_session_evidence.gate
    attach_evidence("console login gate", gate)
    assert gate.asks_for_login, f"{hub.name}: a newline on the console gives {gate.final_state!r}"
    res = console_session_evidence.command
    assert res is not None
    attach_evidence("console command", res)
    assert res.ok and res.stdout.strip() == hub.name, \
        f"{hub.name}: `uname -n` on the console gave exit {res.exit_status}, {res.stdout!r}"


@labels(feature="Smoke", story="Expected OS", severity=CRITICAL)
def test_expected_os(hub: Hub) -> None:
    expect = hub.device.expect
    release = parse_os_release(hub.ssh.run(["cat", "/etc/os-release"]).check().stdout)
    attach_evidence("os-release", release)
    assert release.get("ID") == expect.os_id, \
        f"{hub.name}: OS ID {release.get('ID')!r}, expected {expect.os_id!r}"
    if expect.os_version_id is not None:
        assert release.get("VERSION_ID") == expect.os_version_id, \
            f"{hub.name}: VERSION_ID {release.get('VERSION_ID')!r}, expected {expect.os_version_id!r}"


@labels(feature="Smoke", story="Clock synchronised", severity=NORMAL)
def test_clock_synchronised(hub: Hub) -> None:
    before = time.time()
    res = hub.ssh.run(["date", "+%s.%N"]).check()
    after = time.time()
    skew = float(res.stdout.strip()) - (before + after) / 2
    slack = (after - before) / 2  # the hub read its clock somewhere inside that window
    attach_evidence("clock", {"skew_s": round(skew, 4), "round_trip_s": round(after - before, 4),
                              "allowed_s": MAX_CLOCK_SKEW_S})
    assert abs(skew) <= MAX_CLOCK_SKEW_S + slack, \
        f"{hub.name}: clock is {skew:+.2f} s off the harness clock (allowed {MAX_CLOCK_SKEW_S:.0f} s)"


@labels(feature="Smoke", story="Disk headroom", severity=NORMAL)
def test_disk_headroom(hub: Hub) -> None:
    free = parse_df_free_mb(hub.ssh.run(["df", "-Pm", "/"]).check().stdout)
    need = hub.device.expect.min_free_disk_mb
    attach_evidence("disk", {"free_mb": free, "min_free_disk_mb": need})
    assert free >= need, f"{hub.name}: {free} MiB free on /, need {need}"


@labels(feature="Smoke", story="Memory headroom", severity=NORMAL)
def test_memory_headroom(hub: Hub) -> None:
    free = parse_meminfo_available_mb(hub.ssh.run(["cat", "/proc/meminfo"]).check().stdout)
    need = hub.device.expect.min_free_mem_mb
    attach_evidence("memory", {"available_mb": free, "min_free_mem_mb": need})
    assert free >= need, f"{hub.name}: {free} MiB available, need {need}"


@labels(feature="Smoke", story="Nucleus healthy", severity=BLOCKER)
@pytest.mark.needs_service("greengrass")
def test_nucleus_healthy(hub: Hub) -> None:
    gg = Greengrass(hub.ssh, timeout=hub.timeouts.health)
    components = gg.component_list()  # raises (test fails) when greengrass-cli does not answer
    attach_evidence("components", components)
    nucleus = next((c for c in components if c.name == NUCLEUS), None)
    assert nucleus is not None, f"{hub.name}: {NUCLEUS} is not in `greengrass-cli component list`"
    assert nucleus.state is ComponentState.FINISHED, f"{hub.name}: {NUCLEUS} is {nucleus.state}"


@labels(feature="Smoke", story="Container engine healthy", severity=BLOCKER)
@pytest.mark.needs_service("docker")
def test_docker_engine_healthy(hub: Hub) -> None:
    res = hub.ssh.run(["docker", "info", "--format", "{{json .}}"], sudo=True,
                      timeout=hub.timeouts.health)
    assert res.ok, f"{hub.name}: `docker info` exited {res.exit_status}: {res.stderr.strip()[-300:]}"
    info = json.loads(res.stdout)
    summary = {k: info.get(k) for k in ("ServerVersion", "Driver", "Containers", "ContainersRunning",
                                          "Images", "ServerErrors", "Warnings")}
    attach_evidence("docker info", summary)
    assert info.get("ServerVersion"), f"{hub.name}: `docker info` names no server version"
    assert not info.get("ServerErrors"), f"{hub.name}: docker engine errors: {info.get('ServerErrors')}"
