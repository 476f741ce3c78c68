"""A fixed smoke suite for the -n 0 vs -n 4 benchmark (bench/rack.py): ten cheap device
tests per hub, SSH commands and one console command, as a real smoke run would do."""

from __future__ import annotations

import time

from hil.hub import Hub


def test_hostname(hub: Hub) -> None:
    assert hub.ssh.run(["hostname"]).stdout.strip() == hub.name


def test_os_release(hub: Hub) -> None:
    assert 'VERSION_ID="12"' in hub.ssh.run(["cat", "/etc/os-release"]).check().stdout


def test_clock_sane(hub: Hub) -> None:
    remote = int(hub.ssh.run(["date", "+%s"]).check().stdout)
    assert abs(remote - time.time()) < 60


def test_disk_headroom(hub: Hub) -> None:
    free_kib = int(hub.ssh.run(["df", "--output=avail", "-k", "/"]).check().stdout.split()[-1])
    assert free_kib > 100 * 1024


def test_memory(hub: Hub) -> None:
    assert "MemAvailable" in hub.ssh.run(["cat", "/proc/meminfo"]).check().stdout


def test_engine_answers(hub: Hub) -> None:
    out = hub.ssh.run(["docker", "info", "--format", "{{.ServerVersion}}"], sudo=True).check().stdout
    assert out.strip()


def test_nucleus_cli_present(hub: Hub) -> None:
    assert hub.ssh.run(["test", "-x", "/greengrass/v2/bin/greengrass-cli"]).ok


def test_broker_listens(hub: Hub) -> None:
    assert ":8883 " in hub.ssh.run(["ss", "-ltn"]).check().stdout


def test_sudo_works(hub: Hub) -> None:
    assert hub.ssh.run(["id", "-u"], sudo=True).stdout.strip() == "0"


def test_console_command(hub: Hub) -> None:
    from hil.drivers.console import SerialConsole

    con = hub.console
    assert isinstance(con, SerialConsole)
    con.login()
    assert con.run(["uname", "-n"]).stdout.strip() == hub.name
    con._write("exit\r")  # leave no session behind (the driver has no logout)
