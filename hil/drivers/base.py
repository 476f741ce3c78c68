"""Protocols every driver family implements, and the command result record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@runtime_checkable
class Shell(Protocol):
    """Anything that runs a command on a device: SSH, or the console when SSH is down."""

    device: str

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None) -> CommandResult: ...


@runtime_checkable
class PowerOutlet(Protocol):
    """A switchable outlet: a PDU port, a smart plug, or external commands."""

    def on(self) -> None: ...

    def off(self) -> None: ...

    def cycle(self, off_time: float = 2.0) -> None: ...

    def status(self) -> bool:
        """True when the outlet is on."""
        ...
