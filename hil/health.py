"""Hub health: is this hub fit to be handed to a test?

``check_health`` runs a handful of read-only commands over the hub's SSH session and asks
each service the hub DECLARES (``expect.services``) whether it answers: the nucleus
through greengrass-cli (which must reach its IPC socket), the engine through ``docker
info``, the broker by accepting the harness's own mTLS identity with CONNACK 0, the
console by printing a prompt. A process that exists is not an answer (a nucleus still
starting has one, and its CLI fails). Services the hub does not declare are not asked.

It returns evidence (``HealthReport``) and never asserts; waiting for services to come up
is the recovery strategy's job (hil/recovery.py). The parsers are pure functions, tested
on recorded outputs.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from hil.drivers.base import CommandResult, Console, ConsoleState, Shell
from hil.drivers.greengrass import Greengrass
from hil.errors import HilError
from hil.inventory import Device, Expectations, Service
from hil.probes.mqtt import harness_connect
from hil.steps import step

MAX_CLOCK_SKEW_S = 5.0
"""How far the hub's clock may be from the harness's before the hub counts as unhealthy."""


@dataclass(frozen=True)
class ServiceCheck:
    """Did one declared service answer, and what it said."""

    service: Service
    answers: bool
    detail: str


@dataclass
class HealthReport:
    """Evidence about one hub: healthy when it has headroom and every declared service answers."""

    device: str
    channel: str = "ssh"
    clock_skew_s: float | None = None
    free_disk_mb: int | None = None
    free_mem_mb: int | None = None
    os_release: dict[str, str] = field(default_factory=dict)
    services: dict[Service, ServiceCheck] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    """What is wrong with the hub itself (clock, disk, memory): waiting does not fix these."""

    @property
    def silent(self) -> tuple[Service, ...]:
        """Declared services that did not answer (they may still be starting)."""
        return tuple(s for s, c in self.services.items() if not c.answers)

    @property
    def healthy(self) -> bool:
        return not self.problems and not self.silent

    @property
    def ok(self) -> bool:
        return self.healthy

    @property
    def os_version(self) -> str | None:
        return self.os_release.get("PRETTY_NAME")

    def summary(self) -> str:
        if self.healthy:
            return "healthy"
        silent = [f"{c.service} does not answer ({c.detail})"
                  for c in self.services.values() if not c.answers]
        return "; ".join([*self.problems, *silent])


# -- parsers (pure) -------------------------------------------------------------

def parse_epoch(stdout: str) -> float:
    text = stdout.strip()
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise ValueError(f"not an epoch time: {text[:60]!r}")
    return float(text)


def parse_df_free_mb(stdout: str) -> int:
    """Available MiB of the first filesystem in ``df -Pm`` output."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ValueError(f"unexpected df output: {stdout[:80]!r}")
    cols = lines[1].split()
    # POSIX format: Filesystem 1M-blocks Used Available Capacity Mounted-on
    if len(cols) < 6 or not cols[3].isdigit():
        raise ValueError(f"unexpected df line: {lines[1]!r}")
    return int(cols[3])


def parse_meminfo_available_mb(stdout: str) -> int:
    m = re.search(r"^MemAvailable:\s+(\d+)\s+kB", stdout, re.M)
    if not m:
        raise ValueError("no MemAvailable in /proc/meminfo")
    return int(m.group(1)) // 1024


def parse_os_release(stdout: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip('"').strip("'")
    return out


# -- asking the declared services -----------------------------------------------------

@dataclass(frozen=True)
class ProbeContext:
    """What a service probe may use: the hub's record, its SSH session, its console."""

    device: Device
    shell: Shell
    console: Callable[[], Console] | None
    timeout: float


ServiceProbe = Callable[[ProbeContext], ServiceCheck]


def _tail(res: CommandResult) -> str:
    lines = (res.stderr or res.stdout).strip().splitlines()
    return lines[-1][:200] if lines else f"exit {res.exit_status}"


def _ssh_answers(ctx: ProbeContext) -> ServiceCheck:
    res = ctx.shell.run(["true"], timeout=ctx.timeout)
    return ServiceCheck(Service.SSH, res.ok and res.channel == "ssh",
                        f"over {res.channel}, exit {res.exit_status}")


def _console_answers(ctx: ProbeContext) -> ServiceCheck:
    if ctx.console is None:
        return ServiceCheck(Service.CONSOLE, False, "no console channel")
    state = ctx.console().state(ctx.timeout, settle=False)  # a prompt is an answer
    return ServiceCheck(Service.CONSOLE, state is not ConsoleState.SILENT, f"a newline gives {state}")


def _nucleus_answers(ctx: ProbeContext) -> ServiceCheck:
    gg = Greengrass(ctx.shell, root=ctx.device.expect.greengrass_root, timeout=ctx.timeout)
    components = gg.component_list()  # the CLI reaches the nucleus over its IPC socket, or raises
    return ServiceCheck(Service.GREENGRASS, True, f"greengrass-cli lists {len(components)} components")


def _engine_answers(ctx: ProbeContext) -> ServiceCheck:
    res = ctx.shell.run(["docker", "info", "--format", "{{.ServerVersion}}"], sudo=True,
                        timeout=ctx.timeout)
    version = res.stdout.strip()
    ok = res.ok and bool(version) and "error" not in version.lower()
    return ServiceCheck(Service.DOCKER, ok, f"engine {version}" if ok else f"docker info: {_tail(res)}")


def _broker_answers(ctx: ProbeContext) -> ServiceCheck:
    broker = ctx.device.expect.broker
    if broker is None:
        return ServiceCheck(Service.MQTT_BROKER, False, "no expect.broker")
    att = harness_connect(broker, ctx.device.ssh.host, timeout=ctx.timeout)
    return ServiceCheck(Service.MQTT_BROKER, att.accepted,
                        "CONNACK 0 for the harness's certificate" if att.accepted else str(att.error))


SERVICE_PROBES: dict[Service, ServiceProbe] = {
    Service.SSH: _ssh_answers,
    Service.CONSOLE: _console_answers,
    Service.GREENGRASS: _nucleus_answers,
    Service.DOCKER: _engine_answers,
    Service.MQTT_BROKER: _broker_answers,
}
"""How each service is asked whether it answers (a registry: one entry per Service)."""

ASKED_ASIDE = frozenset({Service.CONSOLE})
"""Services asked on a thread of their own, beside the SSH questions (their own channel)."""


def ask_service(service: Service, ctx: ProbeContext) -> ServiceCheck:
    try:
        return SERVICE_PROBES[service](ctx)
    except HilError as exc:
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return ServiceCheck(service, False, detail)


# -- headroom -----------------------------------------------------------------------

def _disk(stdout: str, rep: HealthReport, expect: Expectations) -> str | None:
    rep.free_disk_mb = parse_df_free_mb(stdout)
    if rep.free_disk_mb < expect.min_free_disk_mb:
        return f"disk: {rep.free_disk_mb} MiB free on / (need {expect.min_free_disk_mb})"
    return None


def _memory(stdout: str, rep: HealthReport, expect: Expectations) -> str | None:
    rep.free_mem_mb = parse_meminfo_available_mb(stdout)
    rep.os_release = parse_os_release(stdout)  # meminfo lines have no "="
    if rep.free_mem_mb < expect.min_free_mem_mb:
        return f"memory: {rep.free_mem_mb} MiB available (need {expect.min_free_mem_mb})"
    return None


HEADROOM: tuple[tuple[str, list[str], Callable[[str, HealthReport, Expectations], str | None]], ...] = (
    ("disk", ["df", "-Pm", "/"], _disk),
    ("memory", ["cat", "/proc/meminfo", "/etc/os-release"], _memory),
)
"""What a hub needs room for, read with one command each: (label, argv, judge)."""


# -- the check ---------------------------------------------------------------------

def _run(shell: Shell, argv: list[str], timeout: float) -> CommandResult | None:
    try:
        return shell.run(argv, timeout=timeout)
    except HilError:
        return None


def check_health(shell: Shell, device: Device, *, timeout: float,
                 console: Callable[[], Console] | None = None, max_clock_skew: float = MAX_CLOCK_SKEW_S,
                 wall_clock: Callable[[], float] = time.time) -> HealthReport:
    """Clock, disk and memory of one hub, and an answer from each service it declares."""
    expect = device.expect
    rep = HealthReport(device=device.name)
    ctx = ProbeContext(device, shell, console, timeout)
    with step("health check", device=device.name) as st, ThreadPoolExecutor(1) as aside:
        # The console answers on a channel of its own and slowly (a prompt must stay quiet
        # for a moment): it is asked while the questions over SSH run, not after them.
        asked_aside = {s: aside.submit(ask_service, s, ctx) for s in device.services & ASKED_ASIDE}
        before = wall_clock()
        res = _run(shell, ["date", "+%s"], timeout)
        after = wall_clock()
        if res is not None:
            rep.channel = res.channel  # which path served the check: SSH, or the console
        try:
            if res is None or not res.ok:
                raise ValueError("`date +%s` failed")
            rep.clock_skew_s = parse_epoch(res.stdout) - (before + after) / 2
            # `date +%s` truncates to whole seconds: allow one second of it
            if abs(rep.clock_skew_s) > max_clock_skew + 1.0:
                rep.problems.append(f"clock is {rep.clock_skew_s:+.0f}s off the harness clock "
                                    f"(allowed {max_clock_skew:.0f}s)")
        except ValueError as exc:
            rep.problems.append(f"clock: {exc}")

        for label, argv, judge in HEADROOM:
            res = _run(shell, argv, timeout)
            try:
                if res is None or not res.ok:
                    raise ValueError(f"`{shlex.join(argv)}` failed")
                problem = judge(res.stdout, rep, expect)
            except ValueError as exc:
                problem = f"{label}: {exc}"
            if problem:
                rep.problems.append(problem)

        answers = {s: ask_service(s, ctx) for s in device.services - asked_aside.keys()}
        answers.update((s, answer.result()) for s, answer in asked_aside.items())
        rep.services = {s: answers[s] for s in sorted(answers)}
        st.attach("health", rep.summary())
        st.record(rep.healthy)
    return rep
