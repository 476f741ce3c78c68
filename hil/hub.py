"""The hub state machine: one object per leased hub, its state and its legal transitions.

States (``HubState``): UNKNOWN -> OFF -> BOOTED -> SHELL -> HEALTHY, or BROKEN (final).
``ensure_ready()`` drives a hub to HEALTHY through its recovery strategy
(hil/recovery.py: steps from the inventory, e.g. ssh -> console -> power) or raises
``HubBroken``. The hub neither builds its drivers (hil/factory.py) nor runs commands
itself: callers use its channels (``hub.ssh``, ``hub.console``, ``hub.channels.shell()``).

Every transition is a ``hil.steps`` step, so the report shows what the harness did to
get a hub back; an illegal transition is a harness bug and raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from hil.channels import HubChannels
from hil.drivers.base import Console, PowerOutlet, SshSession
from hil.errors import HilError, InfrastructureError, Phase
from hil.health import MAX_CLOCK_SKEW_S, HealthReport, check_health
from hil.inventory import Device, Service
from hil.steps import step
from hil.timeouts import DEFAULT_TIMEOUTS, Timeouts

if TYPE_CHECKING:
    from hil.recovery import RecoveryStrategy

log = logging.getLogger("hil.hub")


class HubState(StrEnum):
    UNKNOWN = "unknown"
    OFF = "off"
    BOOTED = "booted"
    """Powered and printing on the console; no shell yet."""
    SHELL = "shell"
    """A shell answers (SSH, or the console while sshd is restarted)."""
    HEALTHY = "healthy"
    """Headroom, and every declared service answers."""
    BROKEN = "broken"


_ANY_LIVE = frozenset(HubState) - {HubState.BROKEN}
TRANSITIONS: dict[HubState, frozenset[HubState]] = {
    HubState.UNKNOWN: frozenset({HubState.UNKNOWN, HubState.OFF, HubState.SHELL, HubState.BROKEN}),
    HubState.OFF: frozenset({HubState.UNKNOWN, HubState.OFF, HubState.BOOTED, HubState.SHELL,
                             HubState.BROKEN}),
    HubState.BOOTED: frozenset({HubState.UNKNOWN, HubState.OFF, HubState.SHELL, HubState.BROKEN}),
    HubState.SHELL: _ANY_LIVE - {HubState.BOOTED} | {HubState.BROKEN},
    HubState.HEALTHY: frozenset({HubState.UNKNOWN, HubState.BROKEN}),
    HubState.BROKEN: frozenset(),
}
"""Which state may follow which (recovery moves along these; BROKEN is final for the session)."""


class HubBroken(InfrastructureError):
    """The hub could not be recovered; its remaining tests are skipped as infrastructure."""


class IllegalTransition(HilError):
    """A bug: something moved a hub between states that do not follow each other."""


class Hub:
    """A leased hub: its state, its channels, and the strategy that brings it back."""

    def __init__(self, device: Device, channels: HubChannels, strategy: RecoveryStrategy, *,
                 timeouts: Timeouts = DEFAULT_TIMEOUTS, max_clock_skew: float = MAX_CLOCK_SKEW_S,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.device = device
        self.name = device.name
        self.channels = channels
        self.strategy = strategy
        self.timeouts = timeouts
        self.max_clock_skew = max_clock_skew
        self.now = clock
        self.sleep = sleep
        self._wall_clock = wall_clock
        self.state = HubState.UNKNOWN
        self.broken_reason: str | None = None
        self.last_health: HealthReport | None = None
        self.history: list[tuple[HubState, HubState, str]] = []
        """(from, to, why) of every transition, for reports and tests."""
        self.candidate: str | None = None
        """The run id of the candidate deployed on the hub by this session (None: not touched)."""
        self.ready_hooks: list[Callable[[Hub], None]] = []
        """Run once each, in order, the first time the hub is HEALTHY (the pool's teardown-on-acquire).
        A hook that raises HilError breaks the hub: it needs a person (infrastructure)."""

    # -- channels (the hub does not run commands itself) -----------------------------
    @property
    def ssh(self) -> SshSession:
        return self.channels.ssh

    @property
    def console(self) -> Console:
        return self.channels.console

    @property
    def has_console(self) -> bool:
        return self.channels.has_console

    @property
    def power(self) -> PowerOutlet | None:
        return self.channels.power

    def console_capture(self) -> str:
        return self.channels.console_capture()

    def close(self) -> None:
        self.channels.close()

    # -- phase -------------------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        return Phase.BEFORE_CANDIDATE if self.candidate is None else Phase.WITH_CANDIDATE

    # -- state -------------------------------------------------------------------------
    def to_state(self, new: HubState, why: str) -> None:
        old = self.state
        if new not in TRANSITIONS[old]:
            raise IllegalTransition(f"{self.name}: {old} -> {new} is not a transition of the hub ({why})")
        with step(f"hub {self.name}: {old} -> {new}", device=self.name, reason=why):
            self.state = new
            self.history.append((old, new, why))
        log.info("%s: %s -> %s (%s)", self.name, old, new, why)

    def mark_suspect(self, why: str) -> None:
        """A test saw the hub unreachable: the next ``ensure_ready`` re-checks and recovers."""
        if self.state is not HubState.BROKEN:
            self.to_state(HubState.UNKNOWN, why)

    def break_(self, reason: str) -> None:
        """The hub is beyond this session's help: BROKEN, and HubBroken raised."""
        self.broken_reason = reason
        self.to_state(HubState.BROKEN, reason)
        raise HubBroken(f"{self.name} could not be recovered: {reason}")

    def left(self, deadline: float) -> float:
        return deadline - self.now()

    def outlet_reports_off(self) -> bool:
        if self.power is None:
            return False
        try:
            return not self.power.status()
        except HilError:
            return False  # a PDU that does not answer is found out by the power cycle

    def health(self) -> HealthReport:
        """Evidence over SSH: headroom, and an answer from each declared service."""
        console = (lambda: self.channels.console) if self.device.declares(Service.CONSOLE) else None
        rep = check_health(self.ssh, self.device, timeout=self.timeouts.health, console=console,
                           max_clock_skew=self.max_clock_skew, wall_clock=self._wall_clock)
        self.last_health = rep
        return rep

    def ensure_ready(self) -> Hub:
        """Drive the hub to HEALTHY (recovering it if needed) or raise HubBroken (or ServiceDown)."""
        if self.state is HubState.BROKEN:
            raise HubBroken(f"{self.name} is broken: {self.broken_reason}")
        if self.state is HubState.HEALTHY:
            return self
        deadline = self.now() + self.timeouts.recovery
        with step(f"hub {self.name}: ensure ready", device=self.name, recovery=repr(self.strategy)) as st:
            try:
                self.strategy.recover(self, deadline)
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
                self.break_(f"needs attention: {exc}")
