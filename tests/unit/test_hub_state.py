"""The hub state machine and its recovery strategy on fake drivers (pure logic: which recovery
path, which state, when the hub counts as ready, whose fault a silent service is)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from fake_clock import FakeClock

from hil.channels import HubChannels
from hil.drivers.base import CommandResult, ConsoleState
from hil.errors import DeviceUnreachable, FailureClass, HostKeyMismatch, ServiceDown
from hil.hub import Hub, HubBroken, HubState, IllegalTransition
from hil.inventory import Device, Expectations, RecoveryStep, Service, SshEndpoint
from hil.recovery import RecoveryStrategy
from hil.timeouts import Timeouts

MEMINFO = "MemTotal:        8000000 kB\nMemAvailable:    4000000 kB\n"
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
DF = ("Filesystem     1048576-blocks  Used Available Capacity Mounted on\n"
      "overlay                 59000 20000     39000      34% /\n")


GG_LIST = "Components currently running in Greengrass:\n"
class FakeDevice:
    """What is true about the (fake) hardware: powered, sshd up, console alive, healthy."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.powered = True
        self.sshd = True
        self.network = True
        self.console_alive = True
        self.disk_free_mb = 39000
        self.nucleus = True
        self.nucleus_start = 0.0
        """Seconds after boot before greengrass-cli reaches the nucleus (its process runs earlier)."""
        self.engine = True
        self.systemd = False
        self.boot_time = 5.0
        self.booted_at: float | None = None
        self.sshd_restarts: list[list[str]] = []

    def ssh_ok(self) -> bool:
        up = self.booted_at is None or self.clock.now >= self.booted_at + self.boot_time
        return self.powered and self.sshd and self.network and up

    def nucleus_answers(self) -> bool:
        started = self.booted_at is None or self.clock.now >= self.booted_at + self.nucleus_start
        return self.nucleus and started

    def answer(self, argv: Sequence[str], channel: str) -> CommandResult:
        out, rc = "", 0
        a = list(argv)
        if a[:1] == ["date"]:
            out = "1700000000\n"
        elif a[:1] == ["df"]:
            out = DF.replace("39000", str(self.disk_free_mb))
        elif a[:1] == ["cat"]:
            out = MEMINFO + OS_RELEASE
        elif "greengrass-cli" in a[0]:
            rc, out = (0, GG_LIST) if self.nucleus_answers() else (1, "")
        elif a[:1] == ["pgrep"]:  # a process is no answer: health must not ask this
            rc, out = 0, "42\n"
        elif a[:2] == ["docker", "info"]:
            rc, out = (0, "20.10.24\n") if self.engine else (1, "")
        elif a == ["true"]:
            pass
        elif a[:2] == ["test", "-d"]:
            rc = 0 if self.systemd else 1
        elif a in (["/usr/sbin/sshd"], ["systemctl", "restart", "ssh"]):
            self.sshd_restarts.append(a)
            self.sshd = True
        return CommandResult(tuple(a), rc, out, "", 0.001, channel)


class FakeSsh:
    def __init__(self, dev: FakeDevice) -> None:
        self.dev = dev
        self.device = "hub-01"
        self.connected = False
        self.connects = 0
        self.host_key_changed = False

    def connect(self) -> None:
        if self.host_key_changed:
            raise HostKeyMismatch("hub-01: host key changed")
        if not self.dev.ssh_ok():
            self.dev.clock.sleep(1.0)  # a failed connect takes time
            raise DeviceUnreachable("hub-01: connection refused")
        self.connected = True
        self.connects += 1

    def alive(self) -> bool:
        return self.connected and self.dev.ssh_ok()

    def close(self) -> None:
        self.connected = False

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None, check: bool = False) -> CommandResult:
        if not self.alive():
            raise DeviceUnreachable("hub-01: SSH dropped")
        return self.dev.answer(argv, "ssh")


class FakeConsole:
    def __init__(self, dev: FakeDevice) -> None:
        self.dev = dev
        self.device = "hub-01"
        self.logged_in = False
        self.opened = 0

    def _check(self) -> None:
        if not (self.dev.console_alive and self.dev.powered):
            raise DeviceUnreachable("hub-01: console silent")

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        pass

    def state(self, timeout: float | None = None, *, settle: bool = True) -> ConsoleState:
        self._check()
        return ConsoleState.SHELL if self.logged_in else ConsoleState.LOGIN_PROMPT

    def send(self, text: str) -> None:
        self._check()

    def login(self) -> None:
        self._check()
        self.logged_in = True

    def expect(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        if self.dev.powered and self.dev.console_alive:
            self.logged_in = False
            m = re.search(pattern, "\nlogin: ")
            assert m is not None
            return m
        self.dev.clock.sleep(timeout)
        raise DeviceUnreachable("hub-01: no login prompt")

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None, check: bool = False) -> CommandResult:
        self._check()
        return self.dev.answer(argv, "console")

    def captured(self) -> str:
        return "login: "


class FakePower:
    def __init__(self, dev: FakeDevice, dead: bool = False) -> None:
        self.dev = dev
        self.dead = dead
        self.calls: list[str] = []

    def _check(self) -> None:
        if self.dead:
            raise DeviceUnreachable("PDU does not answer")

    def on(self) -> None:
        self._check()
        self.calls.append("on")
        if not self.dev.powered:
            self.dev.powered = True
            self.dev.booted_at = self.dev.clock.now
            # a reboot fixes what a reboot fixes
            self.dev.sshd = True
            self.dev.console_alive = True
            self.dev.nucleus = True

    def off(self) -> None:
        self._check()
        self.calls.append("off")
        self.dev.powered = False

    def cycle(self, off_time: float = 2.0) -> None:
        self.off()
        self.on()

    def status(self) -> bool:
        self._check()
        return self.dev.powered


SERVICES = frozenset({Service.SSH, Service.GREENGRASS, Service.DOCKER})
ALL_STEPS = (RecoveryStep.SSH, RecoveryStep.CONSOLE, RecoveryStep.POWER)


def make(tmp_path: Path, *, console: bool = True, power: bool = True, dead_pdu: bool = False,
         recovery: float = 240.0, ready: float = 30.0,
         steps: tuple[RecoveryStep, ...] | None = None) -> tuple[Hub, FakeDevice, FakeSsh, FakePower | None]:
    clock = FakeClock()
    dev = FakeDevice(clock)
    ssh = FakeSsh(dev)
    pw = FakePower(dev, dead=dead_pdu) if power else None
    device = Device(name="hub-01", ssh=SshEndpoint(host="192.0.2.1", user="hil", key_file=tmp_path / "k",
                                                   known_hosts=tmp_path / "kh"),
                    expect=Expectations(services=SERVICES))
    timeouts = Timeouts(recovery=recovery, boot=60.0, ssh_connect=5.0, ready=ready)
    present = {RecoveryStep.SSH: True, RecoveryStep.CONSOLE: console, RecoveryStep.POWER: power}
    chosen = steps if steps is not None else tuple(s for s in ALL_STEPS if present[s])
    strategy = RecoveryStrategy.for_device(device.model_copy(update={"recovery": chosen}))
    channels = HubChannels("hub-01", ssh, console=(lambda: FakeConsole(dev)) if console else None, power=pw,
                           timeouts=timeouts)
    hub = Hub(device, channels, strategy, timeouts=timeouts, clock=clock, sleep=clock.sleep,
              wall_clock=lambda: 1700000000.2)
    return hub, dev, ssh, pw


def states(hub: Hub) -> list[str]:
    return [str(to) for _, to, _ in hub.history]


def test_healthy_hub_goes_straight_to_healthy(tmp_path: Path) -> None:
    hub, _, _, pw = make(tmp_path)
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY
    assert states(hub) == ["shell", "healthy"]
    assert pw is not None and pw.calls == []
    assert hub.last_health is not None and hub.last_health.os_version == "Debian GNU/Linux 12 (bookworm)"
    hub.ensure_ready()  # already healthy: no new transitions
    assert states(hub) == ["shell", "healthy"]


def test_dead_sshd_is_restarted_over_the_console_without_systemd(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path)
    dev.sshd = False
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY
    assert dev.sshd_restarts == [["/usr/sbin/sshd"]]
    assert pw is not None and pw.calls == []


def test_dead_sshd_is_restarted_with_systemctl_on_systemd(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path)
    dev.sshd = False
    dev.systemd = True
    hub.ensure_ready()
    assert dev.sshd_restarts == [["systemctl", "restart", "ssh"]]


def test_dead_console_and_ssh_lead_to_a_power_cycle(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path)
    dev.sshd = False
    dev.console_alive = False
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY
    assert pw is not None and pw.calls == ["off", "on"]
    assert states(hub) == ["off", "booted", "shell", "healthy"]


def test_powered_off_hub_is_powered_on_without_trying_the_console(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path)
    dev.powered = False
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY
    assert pw is not None and pw.calls == ["off", "on"]
    assert "booted" in states(hub)


def test_network_down_but_console_alive_falls_back_to_power_cycle(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path)
    dev.network = False

    orig_on = FakePower.on

    def on_fixes_network(self: FakePower) -> None:
        orig_on(self)
        dev.network = True

    assert pw is not None
    pw.on = on_fixes_network.__get__(pw)  # type: ignore[method-assign]
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY
    assert dev.sshd_restarts == [["/usr/sbin/sshd"]]  # console path was tried first
    assert pw.calls == ["off", "on"]


def test_unhealthy_nucleus_is_power_cycled(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path)
    dev.nucleus = False
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY
    assert pw is not None and pw.calls == ["off", "on"]


def test_full_disk_is_not_fixed_by_a_reboot_and_breaks_the_hub(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path)
    dev.disk_free_mb = 10
    with pytest.raises(HubBroken, match=r"disk: 10 MiB free"):
        hub.ensure_ready()
    assert hub.state is HubState.BROKEN


def test_dead_pdu_breaks_the_hub_with_a_reason(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path, dead_pdu=True)
    dev.sshd = False
    dev.console_alive = False
    with pytest.raises(HubBroken) as exc:
        hub.ensure_ready()
    assert "PDU does not answer" in str(exc.value) and "SSH" in str(exc.value)
    assert hub.state is HubState.BROKEN
    assert exc.value.failure_class == "infrastructure"
    # once broken, stays broken without touching the device again
    with pytest.raises(HubBroken, match="is broken"):
        hub.ensure_ready()


def test_a_declared_console_that_is_silent_makes_the_hub_unhealthy(tmp_path: Path) -> None:
    """The console is asked on its own thread beside the SSH questions; its answer still counts."""
    hub, dev, _, _ = make(tmp_path)
    hub.device = hub.device.model_copy(
        update={"expect": Expectations(services=SERVICES | {Service.CONSOLE})})
    hub.ssh.connect()
    rep = hub.health()
    assert rep.healthy, rep.summary()
    assert list(rep.services) == sorted(SERVICES | {Service.CONSOLE})
    dev.console_alive = False
    hub.channels.drop_console()
    rep = hub.health()
    assert not rep.healthy
    assert rep.silent == (Service.CONSOLE,)
    assert "console silent" in rep.summary()


def test_no_power_outlet_breaks_when_ssh_and_console_are_dead(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path, power=False)
    dev.sshd = False
    dev.console_alive = False
    with pytest.raises(HubBroken, match=r"no recovery step left \(recovery: ssh, console\)"):
        hub.ensure_ready()


def test_hub_that_never_boots_is_bounded_by_the_deadline(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path, recovery=30.0)
    dev.console_alive = False
    dev.sshd = False
    dev.boot_time = 10_000.0  # never comes up within the deadline
    clock = hub.now
    start = clock()
    with pytest.raises(HubBroken, match="SSH did not answer after the power cycle"):
        hub.ensure_ready()
    assert clock() - start <= 30.0 + 2.0  # one failed connect (1 s) + pause may overrun


def test_changed_host_key_is_never_recovered_by_power(tmp_path: Path) -> None:
    hub, _, ssh, pw = make(tmp_path)
    ssh.host_key_changed = True
    with pytest.raises(HostKeyMismatch):
        hub.ensure_ready()
    assert pw is not None and pw.calls == []


def test_shell_falls_back_to_the_console_when_ssh_is_down(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path)
    dev.network = False
    sh = hub.channels.shell()
    assert isinstance(sh, FakeConsole)
    assert sh.run(["date", "+%s"]).channel == "console"
    dev.network = True
    assert isinstance(hub.channels.shell(), FakeSsh)


def test_shell_without_console_raises_device_unreachable(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path, console=False)
    dev.network = False
    with pytest.raises(DeviceUnreachable, match="no console"):
        hub.channels.shell()


def test_mark_suspect_makes_the_next_ensure_ready_recheck(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path)
    hub.ensure_ready()
    dev.sshd = False
    hub.mark_suspect("test saw DeviceUnreachable")
    assert hub.state is HubState.UNKNOWN
    hub.ensure_ready()
    assert str(hub.state) == "healthy" and dev.sshd_restarts


def test_every_transition_is_a_step(tmp_path: Path) -> None:
    from hil import steps

    seen: list[str] = []

    def listener(event: str, st: steps.Step) -> None:
        if event == "stop":
            seen.append(st.title)

    steps.add_listener(listener)
    try:
        hub, dev, _, _ = make(tmp_path)
        dev.powered = False
        hub.ensure_ready()
    finally:
        steps.remove_listener(listener)
    assert "hub hub-01: unknown -> off" in seen
    assert "hub hub-01: off -> booted" in seen
    assert any(t == "hub hub-01: power cycle" for t in seen)
    assert seen[-1] == "hub hub-01: ensure ready"



# -- the recovery strategy comes from the inventory ---------------------------------------------

def _device(tmp_path: Path, **blocks: object) -> Device:
    ssh = {"host": "192.0.2.7", "user": "hil", "key_file": tmp_path / "k", "known_hosts": tmp_path / "kh"}
    return Device.model_validate({"name": "hub-07", "ssh": ssh, **blocks})


def test_a_hub_without_console_or_pdu_gets_a_strategy_without_those_steps(tmp_path: Path) -> None:
    bare = RecoveryStrategy.for_device(_device(tmp_path))
    assert bare.names == (RecoveryStep.SSH,) and repr(bare) == "RecoveryStrategy(ssh)"
    full = RecoveryStrategy.for_device(_device(
        tmp_path, console={"url": "socket://127.0.0.1:47101"},
        power={"driver": "tasmota", "url": "http://127.0.0.1:47080", "outlet": 7}))
    assert repr(full) == "RecoveryStrategy(ssh -> console -> power)"
    chosen = RecoveryStrategy.for_device(_device(
        tmp_path, console={"url": "socket://127.0.0.1:47101"},
        power={"driver": "tasmota", "url": "http://127.0.0.1:47080", "outlet": 7}, recovery=["power", "ssh"]))
    assert chosen.names == (RecoveryStep.POWER, RecoveryStep.SSH)


def test_ssh_only_strategy_breaks_without_touching_console_or_power(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path, steps=(RecoveryStep.SSH,))
    dev.sshd = False
    with pytest.raises(HubBroken, match=r"SSH: .*no recovery step left \(recovery: ssh\)"):
        hub.ensure_ready()
    assert dev.sshd_restarts == [] and pw is not None and pw.calls == []


def test_configured_order_skips_the_console(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path, steps=(RecoveryStep.SSH, RecoveryStep.POWER))
    dev.sshd = False
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY
    assert dev.sshd_restarts == [] and pw is not None and pw.calls == ["off", "on"]


# -- ready means the declared services answer ------------------------------------------------------

def test_a_starting_nucleus_is_waited_for_not_accepted_and_not_power_cycled_again(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path, ready=60.0)
    dev.powered = False
    dev.nucleus_start = 25.0  # its process runs at once; greengrass-cli answers 25 s after boot
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY and pw is not None and pw.calls == ["off", "on"]
    assert dev.booted_at is not None and hub.now() >= dev.booted_at + 25.0
    assert hub.last_health is not None and hub.last_health.services[Service.GREENGRASS].answers


def test_a_nucleus_process_without_an_answering_cli_is_not_healthy(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path, power=False, console=False, ready=5.0)
    dev.nucleus = False  # pgrep would find "42": health must not be fooled by it
    with pytest.raises(HubBroken, match="greengrass does not answer"):
        hub.ensure_ready()


def test_undeclared_services_are_not_asked(tmp_path: Path) -> None:
    hub, dev, _, _ = make(tmp_path)
    hub.device = hub.device.model_copy(update={"expect": Expectations(services=frozenset({Service.SSH}))})
    dev.nucleus = dev.engine = False
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY and set(hub.last_health.services) == {Service.SSH}  # type: ignore[union-attr]


# -- whose fault a silent service is ----------------------------------------------------------------

def test_before_the_candidate_a_dead_nucleus_is_the_hubs_problem(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path, ready=5.0)
    hub.ensure_ready()
    dev.nucleus = False
    orig_on = FakePower.on

    def on_keeps_it_dead(self: FakePower) -> None:
        orig_on(self)
        dev.nucleus = False

    assert pw is not None
    pw.on = on_keeps_it_dead.__get__(pw)  # type: ignore[method-assign]
    hub.mark_suspect("a test saw the nucleus fail")
    with pytest.raises(HubBroken) as exc:
        hub.ensure_ready()
    assert exc.value.failure_class is FailureClass.INFRASTRUCTURE
    assert pw.calls == ["off", "on"]  # recovery tried what it could first


def test_with_the_candidate_deployed_a_dead_nucleus_is_the_candidates_doing(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path, ready=5.0)
    hub.ensure_ready()
    hub.candidate = "run-1"
    dev.nucleus = False
    hub.mark_suspect("a test saw the nucleus fail")
    with pytest.raises(ServiceDown) as exc:
        hub.ensure_ready()
    assert exc.value.failure_class is FailureClass.PRODUCT and exc.value.services == ("greengrass",)
    assert pw is not None and pw.calls == []  # no power cycle hides what the candidate did
    assert hub.state is not HubState.BROKEN


def test_with_the_candidate_a_power_blip_is_recovered_when_services_come_back(tmp_path: Path) -> None:
    hub, dev, _, pw = make(tmp_path, ready=60.0)
    hub.ensure_ready()
    hub.candidate = "run-1"
    dev.powered = False  # the blip
    dev.nucleus_start = 20.0
    hub.mark_suspect("a test saw DeviceUnreachable")
    hub.ensure_ready()
    assert hub.state is HubState.HEALTHY and pw is not None and pw.calls == ["off", "on"]


def test_an_illegal_transition_is_a_harness_bug(tmp_path: Path) -> None:
    hub, _, _, _ = make(tmp_path)
    with pytest.raises(IllegalTransition):
        hub.to_state(HubState.HEALTHY, "skipping the checks")
