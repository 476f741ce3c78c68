"""How a hub is brought back to HEALTHY: a strategy of recovery steps, built from the inventory.

The steps and their order come from the device's ``recovery`` list (default: ssh, then
console and power where the entry has those blocks), through the ``RECOVERY_STEPS``
registry; a hub without a console or an outlet simply has a strategy without those
steps. The strategy tries its steps in order until one leaves SSH answering AND the hub
ready, or it runs out of steps or of time (``Timeouts.recovery``); then the hub breaks.

Ready means the declared services answer (hil/health.py), within ``Timeouts.ready`` of
SSH answering: a nucleus that is still starting is waited for, not accepted and not
power-cycled. Whose fault services that never answer are depends on the phase
(``hil.errors.blame_for_dead_service``): before the candidate touched the hub the
strategy goes on to its next step and finally breaks the hub (infrastructure); with the
candidate deployed it stops and raises ``ServiceDown`` (product) - a power cycle would
only hide what the candidate did.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar, Protocol

from hil.errors import HilError, HostKeyMismatch, Phase, ServiceDown
from hil.hub import Hub, HubState
from hil.inventory import Device, RecoveryStep
from hil.steps import step

log = logging.getLogger("hil.recovery")

LOGIN_PROMPT = r"(?im)login:\s*$"
RETRY_PAUSE_S = 0.5
"""Pause between attempts while waiting for SSH to come back."""
READY_POLL_S = 1.0
"""Pause between health checks while waiting for declared services to answer."""


class Attempt(Protocol):
    """One recovery step: try it, say whether SSH answers afterwards."""

    name: ClassVar[RecoveryStep]

    def applies(self, hub: Hub) -> bool:
        """False when the step cannot help in the hub's present state (skipped, not failed)."""
        ...

    def attempt(self, hub: Hub, deadline: float, problems: list[str]) -> bool:
        """True when SSH answers afterwards; otherwise add what went wrong to ``problems``."""
        ...


def try_ssh(hub: Hub) -> str | None:
    """A fresh SSH connection: None when it answers, else why not."""
    try:
        hub.ssh.close()
        hub.ssh.connect()
        return None
    except HostKeyMismatch:
        raise  # never "recovered" by a power cycle: a changed key needs a person
    except HilError as exc:
        return str(exc)


def wait_for_ssh(hub: Hub, deadline: float, what: str) -> str | None:
    last = "no attempt"
    while True:
        err = try_ssh(hub)
        if err is None:
            return None
        last = err
        if hub.left(deadline) <= 0:
            return f"SSH did not answer {what} (last error: {last})"
        hub.sleep(min(RETRY_PAUSE_S, max(0.0, hub.left(deadline))))


class Reconnect:
    """SSH may only have dropped: connect again."""

    name: ClassVar[RecoveryStep] = RecoveryStep.SSH

    def applies(self, hub: Hub) -> bool:
        return True

    def attempt(self, hub: Hub, deadline: float, problems: list[str]) -> bool:
        err = try_ssh(hub)
        if err is None:
            hub.to_state(HubState.SHELL, "SSH answers")
            return True
        problems.append(f"SSH: {err}")
        if hub.outlet_reports_off():
            problems.append("outlet is off")
            hub.to_state(HubState.OFF, "outlet reports off")
        return False


class RestartSshdOverConsole:
    """The hub runs but sshd died: log in on the console and start sshd again."""

    name: ClassVar[RecoveryStep] = RecoveryStep.CONSOLE

    def applies(self, hub: Hub) -> bool:
        # with SSH answering (an unhealthy hub) or the outlet off, the console cannot help
        return hub.channels.has_console and not hub.ssh.alive() and hub.state is not HubState.OFF

    def attempt(self, hub: Hub, deadline: float, problems: list[str]) -> bool:
        t = hub.timeouts
        try:
            con = hub.channels.console_shell()
            hub.to_state(HubState.SHELL, "console shell")
            has_systemd = con.run(["test", "-d", "/run/systemd/system"], timeout=t.console_command).ok
            argv = ["systemctl", "restart", "ssh"] if has_systemd else ["/usr/sbin/sshd"]
            with step(f"hub {hub.name}: restart sshd over the console", device=hub.name) as st:
                st.record(con.run(argv, sudo=True, timeout=t.console_command))
        except HilError as exc:
            hub.channels.drop_console()
            problems.append(f"console: {exc}")
            return False
        err = wait_for_ssh(hub, min(deadline, hub.now() + t.ssh_connect),
                           "after restarting sshd over the console")
        if err is not None:
            problems.append(f"console: {err}")
            return False
        hub.to_state(HubState.SHELL, "sshd restarted over the console")
        return True


class PowerCycle:
    """Switch the outlet off and on, wait for the console's login prompt and for SSH."""

    name: ClassVar[RecoveryStep] = RecoveryStep.POWER

    def applies(self, hub: Hub) -> bool:
        return hub.power is not None

    def attempt(self, hub: Hub, deadline: float, problems: list[str]) -> bool:
        power = hub.power
        assert power is not None
        try:
            with step(f"hub {hub.name}: power cycle", device=hub.name):
                power.off()
                hub.to_state(HubState.OFF, "power off")
                # off + on rather than cycle(): the OFF state is then observable in the report
                power.on()
        except HilError as exc:
            problems.append(f"power: {exc}")
            return False
        boot_deadline = min(deadline, hub.now() + hub.timeouts.boot)
        if hub.channels.has_console:
            try:
                hub.channels.console.expect(LOGIN_PROMPT, timeout=max(0.1, hub.left(boot_deadline)))
                hub.to_state(HubState.BOOTED, "login prompt on the console")
            except HilError as exc:
                # SSH may still come up: the console is a witness, not a requirement
                log.info("%s: no login prompt after power on: %s", hub.name, exc)
                hub.channels.drop_console()
        err = wait_for_ssh(hub, boot_deadline, "after the power cycle")
        if err is not None:
            problems.append(err)
            return False
        hub.to_state(HubState.SHELL, "SSH answers after the power cycle")
        return True


RECOVERY_STEPS: dict[RecoveryStep, type[Attempt]] = {
    RecoveryStep.SSH: Reconnect,
    RecoveryStep.CONSOLE: RestartSshdOverConsole,
    RecoveryStep.POWER: PowerCycle,
}
"""What each ``recovery`` name in devices.yaml does."""


class RecoveryStrategy:
    """The recovery steps of one hub, in order, and the readiness check after each."""

    def __init__(self, steps: Sequence[Attempt]) -> None:
        self.steps = tuple(steps)

    @classmethod
    def for_device(cls, device: Device) -> RecoveryStrategy:
        return cls([RECOVERY_STEPS[name]() for name in device.recovery_steps])

    @property
    def names(self) -> tuple[RecoveryStep, ...]:
        return tuple(s.name for s in self.steps)

    def __repr__(self) -> str:
        return f"RecoveryStrategy({' -> '.join(self.names)})"

    def recover(self, hub: Hub, deadline: float) -> None:
        """Drive ``hub`` to HEALTHY, or break it (HubBroken) with every problem met on the way."""
        problems: list[str] = []
        for i, attempt in enumerate(self.steps):
            if not attempt.applies(hub):
                continue
            if i > 0 and hub.left(deadline) <= 0:
                problems.append(f"recovery deadline passed before the {attempt.name} step")
                break
            if attempt.attempt(hub, deadline, problems) and self._ready(hub, deadline, problems):
                return
        left = [s.name.value for s in self.steps]
        hub.break_("; ".join(problems) + f"; no recovery step left (recovery: {', '.join(left)})")

    def _ready(self, hub: Hub, deadline: float, problems: list[str]) -> bool:
        """SSH answers: wait (bounded) until the hub is healthy and its declared services answer."""
        ready_by = min(deadline, hub.now() + hub.timeouts.ready)
        while True:
            try:
                rep = hub.health()
            except HilError as exc:
                problems.append(f"health check failed: {exc}")
                return False
            if rep.healthy:
                hub.to_state(HubState.HEALTHY, "health check passed, declared services answer")
                return True
            waiting_helps = not rep.problems  # only services are silent: they may be starting
            if not waiting_helps or hub.left(ready_by) <= 0:
                break
            hub.sleep(min(READY_POLL_S, max(0.0, hub.left(ready_by))))
        if waiting_helps and hub.phase is Phase.WITH_CANDIDATE:
            raise ServiceDown(f"{hub.name}: with the candidate deployed, {rep.summary()}", device=hub.name,
                              services=tuple(str(s) for s in rep.silent), phase=hub.phase)
        problems.append("unhealthy: " + rep.summary())
        return False
