"""The Greengrass v2 CLI on a hub: pure parsers for what it prints, and a driver over a Shell.

Every format follows docs/greengrass.md (collected from the public CLI
sources, v2.0.3-v2.16.1). The parsers never trust an exit status alone: the CLI exits
0 on option parse errors, so success means "the expected line is there".
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hil.drivers.base import CommandResult, Shell
from hil.errors import HilError, ParseError, ProductError
from hil.inventory import GREENGRASS_ROOT
from hil.steps import step

DEFAULT_ROOT = GREENGRASS_ROOT
COMPONENT_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
"""Greengrass's ``^[a-zA-Z0-9-_.]+$`` (<= 128), starting with a letter or digit: a name is also one
folder name on the hub (packages/artifacts/<name>/) and an argument of greengrass-cli, so '.',
'..' and '-option' are refused."""

BUILTIN_COMPONENTS = frozenset({
    "aws.greengrass.Nucleus",
    "DeploymentService",
    "TelemetryAgent",
    "FleetStatusService",
    "UpdateSystemPolicyService",
})
"""Services the nucleus lists but nobody deploys: left out of snapshots and restores."""


class ComponentState(StrEnum):
    NEW = "NEW"
    INSTALLED = "INSTALLED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    FINISHED = "FINISHED"
    ERRORED = "ERRORED"
    BROKEN = "BROKEN"


STABLE_STATES = frozenset({ComponentState.RUNNING, ComponentState.FINISHED})


class DeploymentState(StrEnum):
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def terminal(self) -> bool:
        return self in (DeploymentState.SUCCEEDED, DeploymentState.FAILED, DeploymentState.CANCELED)


class FailurePolicy(StrEnum):
    """`--failure-handling-policy` values (case-sensitive on the CLI)."""

    ROLLBACK = "ROLLBACK"
    DO_NOTHING = "DO_NOTHING"


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    state: ComponentState
    configuration: Any = None
    """Parsed JSON (usually a dict), or None when the CLI printed ``null``."""

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_COMPONENTS


@dataclass(frozen=True)
class DeploymentStatus:
    id: str
    status: DeploymentState
    created: datetime | None = None
    """Absent on CLIs older than 2.11 (single-line status)."""
    detailed_status: str | None = None
    error_stack: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    failure_cause: str | None = None


# -- output cleaning ---------------------------------------------------------------

# CLIs < 2.10 print two java.util.logging lines per call on stderr; over a console
# (stdout and stderr merged) they land in the middle of what we parse.
_JUL_HEADER = re.compile(
    r"^[A-Z][a-z]{2} \d{1,2}, \d{4} \d{1,2}:\d{2}:\d{2} (?:AM|PM) \S+ \S+$"
)
_JUL_MESSAGE = re.compile(r"^(?:SEVERE|WARNING|INFO|CONFIG|FINE|FINER|FINEST): ")


def strip_jul_noise(text: str) -> str:
    """``text`` without java.util.logging records (header line + level line)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if (_JUL_HEADER.match(lines[i]) and i + 1 < len(lines)
                and _JUL_MESSAGE.match(lines[i + 1])):
            i += 2
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def _lines(text: str) -> list[str]:
    return [ln.rstrip("\r") for ln in strip_jul_noise(text).splitlines() if ln.strip()]


def _quote(text: str, limit: int = 600) -> str:
    t = text if len(text) <= limit else text[:limit] + "..."
    return repr(t)


# -- deployment create ---------------------------------------------------------------

# "has been submitted" is what early previews printed; released CLIs print the first form.
_SUBMITTED = re.compile(r"^Local deployment (?:has been )?submitted! Deployment Id: (\S+)$")


def parse_deployment_create(stdout: str) -> str:
    """The deployment id from `deployment create` output; ParseError when the line is missing."""
    for ln in _lines(stdout):
        if m := _SUBMITTED.match(ln.strip()):
            return m.group(1)
    raise ParseError(f"deployment create: no 'Local deployment submitted!' line in {_quote(stdout)}")


# -- deployment status -----------------------------------------------------------------

_STATUS_FIRST = re.compile(r"^(\S+): ([A-Z_]+)$")
_CREATED_FORMAT = "%d-%m-%Y %H:%M:%S"


def parse_created(raw: str) -> datetime:
    """``15-06-2023 18:34:30 UTC`` -> aware datetime (the CLI prints UTC)."""
    text = raw.strip()
    if not text.endswith(" UTC"):
        raise ParseError(f"deployment time {raw!r} is not 'dd-MM-yyyy HH:mm:ss UTC'")
    try:
        return datetime.strptime(text.removesuffix(" UTC"), _CREATED_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ParseError(f"deployment time {raw!r} is not 'dd-MM-yyyy HH:mm:ss UTC'") from None


def _deployment_state(raw: str, output: str) -> DeploymentState:
    try:
        return DeploymentState(raw)
    except ValueError:
        raise ParseError(f"unknown deployment status {raw!r} in {_quote(output)}") from None


_STATUS_FIELDS = {
    "Created on": "created",
    "Detailed Status": "detailed_status",
    "Deployment Error Stack": "error_stack",
    "Deployment Error Types": "error_types",
    "Deployment Failure Cause": "failure_cause",
}


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def parse_deployment_status(stdout: str) -> DeploymentStatus:
    """`deployment status -i ID` output, CLI 2.11+ (multi-line) or older (first line only)."""
    lines = _lines(stdout)
    if not lines or not (m := _STATUS_FIRST.match(lines[0].strip())):
        raise ParseError(f"deployment status: first line is not '<id>: <STATUS>' in {_quote(stdout)}")
    values: dict[str, str] = {}
    last: str | None = None
    for ln in lines[1:]:
        key, sep, value = ln.partition(": ")
        attr = _STATUS_FIELDS.get(key.strip()) if sep else None
        if attr is not None:
            values[attr] = value.strip()
            last = attr
        elif last == "failure_cause":
            # a failure cause is a free-text message and may span lines
            values[last] += "\n" + ln
        else:
            raise ParseError(f"deployment status: unexpected line {ln!r} in {_quote(stdout)}")
    return DeploymentStatus(
        id=m.group(1),
        status=_deployment_state(m.group(2), stdout),
        created=parse_created(values["created"]) if "created" in values else None,
        detailed_status=values.get("detailed_status") or None,
        error_stack=_split_list(values.get("error_stack", "")),
        error_types=_split_list(values.get("error_types", "")),
        failure_cause=values.get("failure_cause") or None,
    )


# -- component list / details ------------------------------------------------------------

LIST_HEADER = "Components currently running in Greengrass:"
_COMPONENT_KEYS = ("Component Name", "Version", "State", "Configuration")


def _component_block(block: Sequence[str], output: str) -> Component:
    values: dict[str, str] = {}
    for want, ln in zip(_COMPONENT_KEYS, block, strict=True):
        key, sep, value = ln.strip().partition(":")
        if not sep or key != want:
            raise ParseError(f"component output: expected '{want}: ...', got {ln!r} in {_quote(output)}")
        values[key] = value.strip()
    try:
        state = ComponentState(values["State"])
    except ValueError:
        raise ParseError(f"unknown component state {values['State']!r} in {_quote(output)}") from None
    try:
        config = json.loads(values["Configuration"])
    except json.JSONDecodeError:
        raise ParseError(f"component configuration is not JSON: {values['Configuration']!r}") from None
    if not values["Component Name"] or not values["Version"]:
        raise ParseError(f"component output: empty name or version in {_quote(output)}")
    return Component(values["Component Name"], values["Version"], state, config)


def _component_blocks(lines: list[str], output: str) -> list[Component]:
    out: list[Component] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("Component Name:"):
            raise ParseError(f"component output: expected 'Component Name: ...', got {lines[i]!r} "
                             f"in {_quote(output)}")
        block = lines[i:i + 4]
        if len(block) < 4:
            raise ParseError(f"component output: truncated block in {_quote(output)}")
        out.append(_component_block(block, output))
        i += 4
    return out


def parse_component_list(stdout: str) -> list[Component]:
    """`component list`: header line, then 4-line blocks (indent optional: pre-2.1.0 had none)."""
    lines = _lines(stdout)
    if not lines or lines[0].strip() != LIST_HEADER:
        raise ParseError(f"component list: missing header {LIST_HEADER!r} in {_quote(stdout)}")
    return _component_blocks(lines[1:], stdout)


def parse_component_details(stdout: str) -> Component:
    """`component details -n NAME`: one 4-line block; a leading list header is tolerated."""
    lines = _lines(stdout)
    if lines and lines[0].strip() == LIST_HEADER:
        lines = lines[1:]
    comps = _component_blocks(lines, stdout)
    if len(comps) != 1:
        raise ParseError(f"component details: expected one component, got {len(comps)} in {_quote(stdout)}")
    return comps[0]


# -- log files ------------------------------------------------------------------------------

_LOG_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) \[(?P<level>[A-Z]+)\] "
    r"\((?P<thread>[^)]*)\) (?P<logger>[^:\s]+): (?P<rest>.*)$"
)
_KV_TAIL = re.compile(r"^(?P<head>.*?)(?:\. )?\{(?P<kv>[^{}]*)\}$")


@dataclass(frozen=True)
class LogRecord:
    """One line of greengrass.log or <Component>.log."""

    timestamp: str
    level: str
    thread: str
    logger: str
    event: str
    message: str
    context: dict[str, str] = field(default_factory=dict)


def parse_log_line(line: str) -> LogRecord | None:
    """A structured record, or None for continuation lines (stack traces, multi-line output)."""
    m = _LOG_LINE.match(line.rstrip("\n"))
    if not m:
        return None
    rest = m.group("rest")
    ctx: dict[str, str] = {}
    if (kv := _KV_TAIL.match(rest)) and "=" in kv.group("kv"):
        rest = kv.group("head")
        for part in kv.group("kv").split(", "):
            k, _, v = part.partition("=")
            ctx[k] = v
    event, _, message = rest.partition(". ")
    return LogRecord(m.group("ts"), m.group("level"), m.group("thread"), m.group("logger"),
                     event.rstrip("."), message.rstrip("."), ctx)


@dataclass(frozen=True)
class StateEvent:
    """A `service-set-state` line: when, and from which state to which."""

    timestamp: datetime
    current: ComponentState
    new: ComponentState


def state_events(log_text: str, component: str) -> list[StateEvent]:
    """`service-set-state` events of ``component`` in greengrass.log, in log order."""
    out: list[StateEvent] = []
    for ln in log_text.splitlines():
        rec = parse_log_line(ln)
        if rec and rec.event == "service-set-state" and rec.context.get("serviceName") == component:
            try:
                out.append(StateEvent(datetime.fromisoformat(rec.timestamp.replace("Z", "+00:00")),
                                      ComponentState(rec.context["currentState"]),
                                      ComponentState(rec.context["newState"])))
            except (KeyError, ValueError):
                raise ParseError(f"service-set-state line without valid states: {ln!r}") from None
    return out


# -- the driver ---------------------------------------------------------------------------------


class GreengrassCommandFailed(ProductError):
    """The CLI reported a runtime error (IPC failure, rejected request)."""


class CliUsageError(HilError):
    """The CLI rejected our options (picocli usage on stderr, often with exit 0): a harness bug."""


class ComponentNotFound(GreengrassCommandFailed):
    pass


class DeploymentNotFound(GreengrassCommandFailed):
    pass


class StateTimeout(ProductError):
    """A component did not reach the wanted state before its deadline."""


def _check_name(name: str) -> str:
    if not COMPONENT_NAME_RE.match(name):
        raise ValueError(f"not a Greengrass component name: {name!r}")
    return name


class Greengrass:
    """The nucleus of one hub, driven through ``greengrass-cli`` (as root) and its log files."""

    def __init__(self, shell: Shell, *, root: str = DEFAULT_ROOT, cli: str | None = None,
                 timeout: float = 90.0, poll_interval: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.shell = shell
        self.root = root.rstrip("/") or "/"
        self.cli = cli or f"{self.root}/bin/greengrass-cli"
        # the CLI's own IPC timeout is 60 s; leave room for SSH and JVM start
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock

    @property
    def device(self) -> str:
        return self.shell.device

    # -- plumbing
    def argv(self, args: Sequence[str]) -> list[str]:
        """The full command line of a CLI call (for callers that want the raw output)."""
        argv = [self.cli]
        if self.root != DEFAULT_ROOT:  # --ggcRootPath goes before the group
            argv += ["--ggcRootPath", self.root]
        return argv + list(args)

    def _run(self, args: Sequence[str], title: str) -> CommandResult:
        argv = self.argv(args)
        with step(title, device=self.device, command=shlex.join(argv)) as st:
            res = st.record(self.shell.run(argv, timeout=self.timeout, sudo=True))
            st.attach("stdout", res.stdout)
            st.attach("stderr", strip_jul_noise(res.stderr))
        return res

    def _fail(self, res: CommandResult, what: str,
              cls: type[GreengrassCommandFailed] = GreengrassCommandFailed) -> HilError:
        tail = strip_jul_noise(res.stderr or "").strip().splitlines()
        if any(ln.startswith("Usage: ") for ln in tail):
            return CliUsageError(f"{self.device}: greengrass-cli rejected the options of {what}: "
                                 f"{tail[0] if tail else ''}")
        # the first line of a Java stack trace carries the message; the rest is frames
        msg = next((ln for ln in tail if ln.strip() and not ln.startswith(("\tat ", "    at "))), "")
        return cls(f"{self.device}: greengrass-cli {what} exited {res.exit_status}: "
                   f"{msg or res.stdout.strip()[:300] or '(no output)'}")

    # -- components
    def component_list(self) -> list[Component]:
        res = self._run(["component", "list"], "greengrass: component list")
        if res.exit_status != 0:
            raise self._fail(res, "component list")
        return parse_component_list(res.stdout)

    def component(self, name: str) -> Component:
        res = self._run(["component", "details", "-n", _check_name(name)], f"greengrass: details {name}")
        if res.exit_status != 0:
            cls = ComponentNotFound if "not found" in res.stderr + res.stdout else GreengrassCommandFailed
            raise self._fail(res, f"component details -n {name}", cls)
        return parse_component_details(res.stdout)

    def restart(self, name: str) -> None:
        """Ask for a restart. The CLI says nothing even when it fails: use wait_for_state."""
        res = self._run(["component", "restart", "-n", _check_name(name)], f"greengrass: restart {name}")
        if res.exit_status != 0:
            raise self._fail(res, f"component restart -n {name}")

    def stop(self, name: str) -> None:
        res = self._run(["component", "stop", "-n", _check_name(name)], f"greengrass: stop {name}")
        if res.exit_status != 0:
            raise self._fail(res, f"component stop -n {name}")

    def wait_for_state(self, name: str, states: Collection[ComponentState],
                       timeout: float) -> Component:
        """Poll `component details` until ``name`` is in one of ``states``."""
        deadline = self._clock() + timeout
        last: Component | None = None
        with step(f"greengrass: wait for {name} in {'/'.join(sorted(states))}", device=self.device):
            while True:
                try:
                    last = self.component(name)
                except ComponentNotFound:
                    last = None
                if last is not None and last.state in states:
                    return last
                if self._clock() >= deadline:
                    seen = last.state if last else "absent"
                    raise StateTimeout(f"{self.device}: {name} not in {sorted(states)} after {timeout:.0f}s "
                                       f"(last seen: {seen})")
                self._sleep(self.poll_interval)

    # -- deployments
    def create_deployment(self, recipe_dir: str | None = None, artifact_dir: str | None = None,
                          merge: Mapping[str, str] | None = None, remove: Sequence[str] = (),
                          policy: FailurePolicy | None = None) -> str:
        """Submit a local deployment; returns its id. No id line = failure, whatever the exit code."""
        args = ["deployment", "create"]
        if recipe_dir:
            args += ["--recipeDir", recipe_dir]
        if artifact_dir:
            args += ["--artifactDir", artifact_dir]
        for name, version in (merge or {}).items():
            args += ["--merge", f"{_check_name(name)}={version}"]
        for name in remove:  # one option per name: the CLI does not split on commas
            args += ["--remove", _check_name(name)]
        if policy is not None:
            args += ["--failure-handling-policy", policy.value]
        res = self._run(args, "greengrass: deployment create")
        try:
            return parse_deployment_create(res.stdout)
        except ParseError:
            raise self._fail(res, "deployment create (no deployment id)") from None

    def deployment_status(self, deployment_id: str) -> DeploymentStatus:
        res = self._run(["deployment", "status", "-i", deployment_id], "greengrass: deployment status")
        if res.exit_status != 0:
            cls = DeploymentNotFound if "Cannot find deployment" in res.stderr + res.stdout \
                else GreengrassCommandFailed
            raise self._fail(res, f"deployment status -i {deployment_id}", cls)
        return parse_deployment_status(res.stdout)

    # -- logs (read directly: more robust than `greengrass-cli logs`)
    def _read(self, path: str, tail: int | None) -> str:
        argv = ["tail", "-n", str(tail), path] if tail else ["cat", path]
        with step(f"greengrass: read {path}", device=self.device) as st:
            res = st.record(self.shell.run(argv, timeout=self.timeout, sudo=True))
        return res.check().stdout

    def logs(self, name: str, tail: int | None = None) -> str:
        return self._read(f"{self.root}/logs/{_check_name(name)}.log", tail)

    def nucleus_log(self, tail: int | None = None) -> str:
        return self._read(f"{self.root}/logs/greengrass.log", tail)
