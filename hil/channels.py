"""The ways the harness reaches one hub: SSH, the serial console (opened on first use), power.

``HubChannels`` only holds and opens them; what to do when one of them fails is the hub's
recovery strategy (hil/recovery.py), and which drivers they are is the factory's choice
(hil/factory.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hil.drivers.base import Console, ConsoleState, PowerOutlet, Shell, SshSession
from hil.errors import DeviceUnreachable, HilError, HostKeyMismatch
from hil.timeouts import DEFAULT_TIMEOUTS, Timeouts

log = logging.getLogger("hil.channels")

ConsoleFactory = Callable[[], Console]


class HubChannels:
    """SSH, the console and the outlet of one hub."""

    def __init__(self, device: str, ssh: SshSession, *, console: ConsoleFactory | None = None,
                 power: PowerOutlet | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self.device = device
        self.ssh = ssh
        self.power = power
        self.timeouts = timeouts
        self._console_factory = console
        self._console: Console | None = None
        # the console is opened on first use, possibly by two threads at once (the health
        # check asks it beside the SSH questions; a hub's console lane runs in the background)
        self._console_lock = threading.Lock()

    @property
    def has_console(self) -> bool:
        return self._console_factory is not None

    @property
    def console(self) -> Console:
        """The serial console, opened on first use; DeviceUnreachable when there is none."""
        with self._console_lock:
            if self._console is None:
                if self._console_factory is None:
                    raise DeviceUnreachable(f"{self.device}: no serial console in the inventory")
                con = self._console_factory()
                con.open()
                self._console = con
            return self._console

    def console_shell(self) -> Console:
        """The console, logged in (a session left at a shell is used as it is)."""
        con = self.console
        if con.state(self.timeouts.console_login) is not ConsoleState.SHELL:
            con.login()
        return con

    def drop_console(self) -> None:
        """Forget a console that failed; the next use opens it again."""
        if self._console is not None:
            try:
                self._console.close()
            except HilError:
                log.debug("%s: closing a dead console failed", self.device, exc_info=True)
            self._console = None

    def shell(self) -> Shell:
        """SSH when it answers, else the logged-in console; DeviceUnreachable when neither does."""
        try:
            if not self.ssh.alive():
                self.ssh.connect()
            return self.ssh
        except HostKeyMismatch:
            raise
        except HilError as ssh_exc:
            if not self.has_console:
                raise DeviceUnreachable(f"{self.device}: SSH down ({ssh_exc}) and no console") from ssh_exc
            try:
                return self.console_shell()
            except HilError as con_exc:
                raise DeviceUnreachable(
                    f"{self.device}: SSH down ({ssh_exc}) and console unusable ({con_exc})") from con_exc

    def console_capture(self) -> str:
        """What the console printed so far (empty when it was never opened)."""
        return self._console.captured() if self._console is not None else ""

    def close(self) -> None:
        self.ssh.close()
        if self._console is not None:
            try:
                self._console.close()
            finally:
                self._console = None
