"""Protocols every driver family implements, and the command result record.

Callers ask for a protocol, not a class: ``Shell`` (run a command: SSH, or the serial
console when the network is down), ``Console`` (a serial console: a ``Shell`` that can
also be typed at and read), ``SshSession`` (a ``Shell`` with a connection to keep) and
``PowerOutlet``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from hil.errors import ProductError


@dataclass(frozen=True)
class CommandResult:
    """What a command on a device gave back."""

    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str
    duration: float
    channel: str = "ssh"
    """"ssh" or "console": which path served the command."""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self) -> CommandResult:
        """Raise when the command failed; the message carries stderr's tail."""
        if self.exit_status != 0:
            tail = (self.stderr or self.stdout).strip().splitlines()[-5:]
            raise CommandFailed(
                f"{' '.join(self.argv)!s} exited {self.exit_status}: " + " | ".join(tail)
            )
        return self


class CommandFailed(ProductError):
    """A command on the device exited non-zero where success was required."""


SUDO = ("sudo", "-n", "--")
"""Non-interactive sudo: fails at once instead of waiting for a password (every channel)."""


def sudo_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` run as root through non-interactive sudo."""
    return [*SUDO, *argv]


def with_stdin(cmd: str, stdin: str | None) -> str:
    """A shell line running ``cmd`` with exactly ``stdin`` on its standard input, else /dev/null.

    Framed transports (the console, a persistent SSH shell) share one stream for every
    command: the text travels as base64 so no byte of it can end or fake a frame.
    """
    if stdin is None:
        return f"{cmd} </dev/null"
    data = base64.b64encode(stdin.encode()).decode()
    return f"printf %s {data} | base64 -d | {cmd}"


@runtime_checkable
class Shell(Protocol):
    """Anything that runs a command on a device: SSH, or the console when SSH is down.

    ``check=True`` raises ``CommandFailed`` on a non-zero exit (``CommandResult.check``).
    """

    device: str

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None, check: bool = False) -> CommandResult: ...


@runtime_checkable
class SshSession(Shell, Protocol):
    """A ``Shell`` over a connection the caller may (re)open and test."""

    def connect(self) -> None: ...

    def alive(self) -> bool: ...

    def close(self) -> None: ...


class ConsoleState(StrEnum):
    """What a serial console is waiting for, judged from what it printed last."""

    LOGIN_PROMPT = "login prompt"
    PASSWORD_PROMPT = "password prompt"  # noqa: S105  (a state name, not a secret)
    SHELL = "shell"
    SILENT = "silent"


ConsolePattern = str | re.Pattern[str]


@runtime_checkable
class Console(Shell, Protocol):
    """A serial console: typed at like a terminal, and a ``Shell`` once logged in.

    ``expect`` consumes output up to the match and returns it (``re.Match``);
    it raises ``CommandTimeout`` past ``timeout`` and ``DeviceUnreachable`` when the
    console fails. ``run`` needs a shell (``login()`` first); stderr is merged into stdout.
    """

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send(self, text: str) -> None:
        """Type ``text`` as a person would (no newline added)."""
        ...

    def expect(self, pattern: ConsolePattern, timeout: float) -> re.Match[str]: ...

    def state(self, timeout: float | None = None, *, settle: bool = True) -> ConsoleState:
        """Send a newline and classify what comes back (``settle=False``: the first prompt
        seen, without waiting for the console to stay quiet after it)."""
        ...

    def login(self) -> None:
        """Get to a shell with the inventory's console credentials (no-op at a shell)."""
        ...

    def captured(self) -> str:
        """Everything the console printed since it was opened (cleaned)."""
        ...

    def hold(self) -> AbstractContextManager[object]:
        """Exclusive use for a dialog of several calls (other threads wait): ``with con.hold():``."""
        ...


@runtime_checkable
class PowerOutlet(Protocol):
    """A switchable outlet: a PDU port, a smart plug, or external commands."""

    def on(self) -> None: ...

    def off(self) -> None: ...

    def cycle(self, off_time: float = 2.0) -> None: ...

    def status(self) -> bool:
        """True when the outlet is on."""
        ...
