"""SerialConsole against a real getty (agetty + login + bash on a pty, served raw over TCP by socat)."""
# ruff: noqa: F811  (pytest fixtures imported from driver_services are parameters by name)

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from driver_services import LocalConsole, TempUser, local_console, temp_user  # noqa: F401

from hil.drivers.base import ConsoleState, Shell
from hil.drivers.console import SerialConsole
from hil.errors import CommandTimeout, DeviceUnreachable, InfrastructureError
from hil.inventory import ConsoleLogin, ConsoleSpec, SecretRef
from hil.redact import redact

PW_ENV = "HIL_TEST_CONSOLE_PASSWORD"


@pytest.fixture
def spec(local_console: LocalConsole, temp_user: TempUser,
         monkeypatch: pytest.MonkeyPatch) -> ConsoleSpec:
    monkeypatch.setenv(PW_ENV, temp_user.password)
    return ConsoleSpec(url=local_console.url,
                       login=ConsoleLogin(user=temp_user.name, password=SecretRef(env=PW_ENV)))


@pytest.fixture
def console(spec: ConsoleSpec, tmp_path: Path) -> Iterator[SerialConsole]:
    c = SerialConsole("local", spec, capture=tmp_path / "console.log")
    c.open()
    yield c
    c.close()


def test_state_login_then_shell(console: SerialConsole, temp_user: TempUser,
                                tmp_path: Path) -> None:
    assert isinstance(console, Shell)
    assert console.state() is ConsoleState.LOGIN_PROMPT
    console.login()
    assert console.state() is ConsoleState.SHELL
    console.login()  # already in a shell: nothing to do
    # The capture file is readable while the console is still open (flushed as it arrives).
    text = (tmp_path / "console.log").read_text()
    assert "login:" in text and temp_user.name in text
    assert temp_user.password not in text
    assert temp_user.password not in redact(console.captured() + temp_user.password)


def test_run_command_status_and_output(console: SerialConsole) -> None:
    console.login()
    r = console.run(["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (r.exit_status, r.stdout, r.channel) == (4, "out\nerr\n", "console")
    r = console.run(["printf", "%s|", "a b", "$HOME", "'q'"])
    assert (r.exit_status, r.stdout) == (0, "a b|$HOME|'q'|")
    assert console.run(["true"]).stdout == ""
    assert console.run(["cat"], stdin="line1\nline2\n").stdout == "line1\nline2\n"
    assert console.run(["id", "-u"], sudo=True).stdout == "0\n"


def test_run_tolerates_kernel_messages(console: SerialConsole, temp_user: TempUser) -> None:
    console.login()
    ps = subprocess.run(["ps", "-o", "tty=,comm=", "-u", temp_user.name],
                        capture_output=True, text=True, check=True).stdout.splitlines()
    ttys = {line.split()[0] for line in ps if line.split()[1:] == ["bash"]}
    assert len(ttys) == 1, ps  # the login shell of this console session
    tty = ttys.pop()

    def inject() -> None:
        time.sleep(0.3)
        with open("/dev/" + tty, "wb", buffering=0) as t:
            t.write(b"[  123.456789] usb 1-1: new high-speed USB device number 2 using xhci_hcd\r\n")
            time.sleep(0.5)
            t.write(b"[  124.000017] EXT4-fs (mmcblk0p2): re-mounted. Opts: (null)\r\n")

    th = threading.Thread(target=inject)
    th.start()
    r = console.run(["sh", "-c", "echo a; sleep 0.5; printf 'half '; sleep 0.5; echo b"])
    th.join()
    assert (r.exit_status, r.stdout) == (0, "a\nhalf b\n")
    assert "usb 1-1: new high-speed USB device" in console.captured()


def test_timeout_interrupts_and_console_stays_usable(console: SerialConsole) -> None:
    console.login()
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"'sleep 30' did not finish within 0\.5s"):
        console.run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - t0 < 2
    assert console.run(["echo", "back"]).stdout == "back\n"


def test_expect_says_what_it_waited_for(console: SerialConsole) -> None:
    with pytest.raises(CommandTimeout, match=r"did not print 'no-such-thing' within 0\.3s"):
        console.expect("no-such-thing", 0.3)


def test_wrong_password_is_reported(spec: ConsoleSpec, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    monkeypatch.setenv(PW_ENV, "definitely-wrong")
    refused = r"console login as \S+ failed \(Login incorrect\)"
    with SerialConsole("local", spec) as c, pytest.raises(InfrastructureError, match=refused):
        c.login()


def test_unreachable_console() -> None:
    from driver_services import free_port

    c = SerialConsole("local", ConsoleSpec(url=f"socket://127.0.0.1:{free_port()}"))
    with pytest.raises(DeviceUnreachable, match="cannot be opened"):
        c.open()
