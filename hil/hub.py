"""The hub state machine: one object per leased hub, with health and recovery.

States (``HubState``): UNKNOWN -> OFF -> BOOTED -> SHELL -> HEALTHY, or BROKEN.
``ensure_ready()`` drives a hub to HEALTHY or raises ``HubBroken``:

1. SSH answers -> health check.
2. SSH fails -> the serial console: log in, restart sshd (systemd or not), retry SSH.
3. Console dead too (or SSH still down, or the hub unhealthy) -> power cycle, wait for
   the console's login prompt and for SSH (``Timeouts.boot``), re-check health.

Everything is bounded by ``Timeouts.recovery``; every transition is a ``hil.steps``
step, so the report shows what the harness did to get a hub back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path

from hil.drivers.base import CommandResult, Console, ConsoleState, PowerOutlet, Shell, SshSession
from hil.errors import DeviceUnreachable, HilError, HostKeyMismatch, InfrastructureError
from hil.health import MAX_CLOCK_SKEW_S, HealthReport, check_health
from hil.inventory import Device
from hil.steps import step
from hil.timeouts import DEFAULT_TIMEOUTS, Timeouts

log = logging.getLogger("hil.hub")

LOGIN_PROMPT = r"(?im)login:\s*$"
_RETRY_PAUSE_S = 0.5
"""Pause between attempts while waiting for SSH to come back."""


class HubState(StrEnum):
    UNKNOWN = "unknown"
    OFF = "off"
    BOOTED = "booted"
    """Powered and printing on the console; no shell yet."""
    SHELL = "shell"
    """A shell answers (SSH, or the console as a fallback)."""
    HEALTHY = "healthy"
    BROKEN = "broken"


class HubBroken(InfrastructureError):
    """The hub could not be recovered; its remaining tests are skipped as infrastructure."""


ConsoleFactory = Callable[[], Console]


class Hub:
    """A leased hub: its channels, its state and the way back to HEALTHY."""

    def __init__(self, device: Device, ssh: SshSession, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 console_factory: ConsoleFactory | None = None, power: PowerOutlet | None = None,
                 max_clock_skew: float = MAX_CLOCK_SKEW_S,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.device = device
        self.name = device.name
        self.ssh = ssh
        self.power = power
        self.timeouts = timeouts
        self.max_clock_skew = max_clock_skew
        self._console_factory = console_factory
        self._console: Console | None = None
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self.state = HubState.UNKNOWN
        self.broken_reason: str | None = None
        self.last_health: HealthReport | None = None
        self.history: list[tuple[HubState, HubState, str]] = []
        """(from, to, why) of every transition, for reports and tests."""
        self.ready_hooks: list[Callable[[Hub], None]] = []
        """Run once each, in order, the first time the hub is HEALTHY (the pool's teardown-on-acquire).
        A hook that raises HilError breaks the hub: it needs a person (infrastructure)."""

    # -- construction from the inventory --------------------------------------
    @classmethod
    def from_device(cls, device: Device, timeouts: Timeouts = DEFAULT_TIMEOUTS, *,
                    capture_dir: Path | None = None) -> Hub:
        """A hub with the real drivers the inventory names (nothing is connected yet)."""
        from hil.drivers.ssh import SshConnection

        power: PowerOutlet | None = None
        if device.power is not None:
            from hil.drivers.power import make_power
            power = make_power(device, timeouts)
        console_factory: ConsoleFactory | None = None
        if device.console is not None:
            spec = device.console

            def console_factory() -> Console:
                from hil.drivers.console import SerialConsole
                capture = capture_dir / f"{device.name}.console.log" if capture_dir else None
                return SerialConsole(device.name, spec, timeouts, capture)

        return cls(device, SshConnection(device.name, device.ssh, timeouts), timeouts=timeouts,
                   console_factory=console_factory, power=power)

    # -- channels ----------------------------------------------------------------
    @property
    def console(self) -> Console:
        """The serial console, opened on first use; DeviceUnreachable when there is none."""
        if self._console is None:
            if self._console_factory is None:
                raise DeviceUnreachable(f"{self.name}: no serial console in the inventory")
            con = self._console_factory()
            con.open()
            self._console = con
        return self._console

    @property
    def has_console(self) -> bool:
        return self._console_factory is not None

    def shell(self) -> Shell:
        """SSH when it answers, else the console; DeviceUnreachable when neither does."""
        try:
            if not self.ssh.alive():
                self.ssh.connect()
            return self.ssh
        except HostKeyMismatch:
            raise
        except HilError as ssh_exc:
            if not self.has_console:
                raise DeviceUnreachable(f"{self.name}: SSH down ({ssh_exc}) and no console") from ssh_exc
            try:
                con = self.console
                self._console_login(con)
                return con
            except HilError as con_exc:
                raise DeviceUnreachable(
                    f"{self.name}: SSH down ({ssh_exc}) and console unusable ({con_exc})") from con_exc

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None, check: bool = False) -> CommandResult:
        return self.shell().run(argv, timeout=timeout, sudo=sudo, stdin=stdin, check=check)

    def close(self) -> None:
        self.ssh.close()
        if self._console is not None:
            try:
                self._console.close()
            finally:
                self._console = None

    def console_capture(self) -> str:
        """What the console printed so far (empty when it was never opened)."""
        return self._console.captured() if self._console is not None else ""

    # -- state ---------------------------------------------------------------------
    def _to(self, new: HubState, why: str) -> None:
        old = self.state
        with step(f"hub {self.name}: {old} -> {new}", device=self.name, reason=why):
            self.state = new
            self.history.append((old, new, why))
        log.info("%s: %s -> %s (%s)", self.name, old, new, why)

    def mark_suspect(self, why: str) -> None:
        """A test saw the hub unreachable: the next ``ensure_ready`` re-checks and recovers."""
        if self.state is not HubState.BROKEN:
            self._to(HubState.UNKNOWN, why)

    def health(self) -> HealthReport:
        rep = check_health(self.shell(), self.device.expect, timeout=self.timeouts.health,
                           max_clock_skew=self.max_clock_skew, wall_clock=self._wall_clock)
        self.last_health = rep
        return rep

    def ensure_ready(self) -> Hub:
        """Drive the hub to HEALTHY (recovering it if needed) or raise HubBroken."""
        if self.state is HubState.BROKEN:
            raise HubBroken(f"{self.name} is broken: {self.broken_reason}")
        if self.state is HubState.HEALTHY:
            return self
        deadline = self._clock() + self.timeouts.recovery
        with step(f"hub {self.name}: ensure ready", device=self.name) as st:
            try:
                self._recover(deadline)
                self._run_ready_hooks()
            except HubBroken as exc:
                st.attach("reason", str(exc))
                raise
        return self

    def _run_ready_hooks(self) -> None:
        while self.ready_hooks:
            hook = self.ready_hooks.pop(0)  # popped first: a failing hook is not retried
            try:
                hook(self)
            except HubBroken:
                raise
            except HilError as exc:
                self._break(f"needs attention: {exc}")

    def _recover(self, deadline: float) -> None:
        problems: list[str] = []
        # 1. SSH
        ssh_err = self._try_ssh()
        if ssh_err is None:
            self._to(HubState.SHELL, "SSH answers")
            if self._healthy(problems):
                return
        else:
            problems.append(f"SSH: {ssh_err}")
            powered_off = self._outlet_is_off()
            if powered_off:
                problems.append("outlet is off")
                self._to(HubState.OFF, "outlet reports off")
            # 2. the console: maybe only sshd is dead
            if not powered_off and self.has_console and self._left(deadline) > 0:
                con_err = self._repair_over_console(deadline)
                if con_err is None:
                    self._to(HubState.SHELL, "sshd restarted over the console")
                    if self._healthy(problems):
                        return
                else:
                    problems.append(f"console: {con_err}")
        # 3. power cycle
        if self.power is None:
            self._break("; ".join(problems) + "; no power outlet to cycle")
        if self._left(deadline) <= 0:
            self._break("; ".join(problems) + "; recovery deadline passed before a power cycle")
        boot_err = self._power_cycle(deadline)
        if boot_err is not None:
            self._break("; ".join([*problems, boot_err]))
        self._to(HubState.SHELL, "SSH answers after the power cycle")
        after: list[str] = []
        if not self._healthy(after):
            self._break("unhealthy after a power cycle: " + "; ".join(after))

    def _outlet_is_off(self) -> bool:
        if self.power is None:
            return False
        try:
            return not self.power.status()
        except HilError:
            return False  # a PDU that does not answer is found out by the power cycle

    def _left(self, deadline: float) -> float:
        return deadline - self._clock()

    def _break(self, reason: str) -> None:
        self.broken_reason = reason
        self._to(HubState.BROKEN, reason)
        raise HubBroken(f"{self.name} could not be recovered: {reason}")

    def _healthy(self, problems: list[str]) -> bool:
        try:
            rep = self.health()
        except HilError as exc:
            problems.append(f"health check failed: {exc}")
            return False
        if rep.healthy:
            self._to(HubState.HEALTHY, "health check passed")
            return True
        problems.append("unhealthy: " + rep.summary())
        return False

    def _try_ssh(self) -> str | None:
        try:
            self.ssh.close()
            self.ssh.connect()
            return None
        except HostKeyMismatch:
            raise  # never "recovered" by a power cycle: a changed key needs a person
        except HilError as exc:
            return str(exc)

    def _wait_for_ssh(self, deadline: float, what: str) -> str | None:
        last = "no attempt"
        while True:
            err = self._try_ssh()
            if err is None:
                return None
            last = err
            if self._left(deadline) <= 0:
                return f"SSH did not answer {what} (last error: {last})"
            self._sleep(min(_RETRY_PAUSE_S, max(0.0, self._left(deadline))))

    def _console_login(self, con: Console) -> None:
        if con.state(self.timeouts.console_login) is not ConsoleState.SHELL:
            con.login()

    def _repair_over_console(self, deadline: float) -> str | None:
        try:
            con = self.console
            self._console_login(con)
            self._to(HubState.SHELL, "console shell")
            has_systemd = con.run(["test", "-d", "/run/systemd/system"],
                                  timeout=self.timeouts.console_command).ok
            argv = ["systemctl", "restart", "ssh"] if has_systemd else ["/usr/sbin/sshd"]
            with step(f"hub {self.name}: restart sshd over the console", device=self.name) as st:
                st.record(con.run(argv, sudo=True, timeout=self.timeouts.console_command))
        except HilError as exc:
            self._console_failed()
            return str(exc)
        ssh_deadline = min(deadline, self._clock() + self.timeouts.ssh_connect)
        return self._wait_for_ssh(ssh_deadline, "after restarting sshd over the console")

    def _console_failed(self) -> None:
        if self._console is not None:
            try:
                self._console.close()
            except HilError:
                log.debug("%s: closing a dead console failed", self.name, exc_info=True)
            self._console = None

    def _power_cycle(self, deadline: float) -> str | None:
        assert self.power is not None
        try:
            with step(f"hub {self.name}: power cycle", device=self.name):
                self.power.off()
                self._to(HubState.OFF, "power off")
                # off + on rather than cycle(): the OFF state is then observable in the report
                self.power.on()
        except HilError as exc:
            return f"power: {exc}"
        boot_deadline = min(deadline, self._clock() + self.timeouts.boot)
        if self.has_console:
            try:
                self.console.expect(LOGIN_PROMPT, timeout=max(0.1, self._left(boot_deadline)))
                self._to(HubState.BOOTED, "login prompt on the console")
            except HilError as exc:
                # SSH may still come up: the console is a witness, not a requirement
                log.info("%s: no login prompt after power on: %s", self.name, exc)
                self._console_failed()
        return self._wait_for_ssh(boot_deadline, "after the power cycle")

