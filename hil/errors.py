"""The harness's own error types.

A ``UserError`` is something a person fixes (inventory, recipe, command line): the
CLI and the pytest plugin print its message alone, without a traceback, and exit
non-zero. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import StrEnum


class FailureClass(StrEnum):
    """Who is to blame for a failure (see docs/architecture: failure classes)."""

    PRODUCT = "product"
    INFRASTRUCTURE = "infrastructure"
    HARNESS = "harness"


class HilError(Exception):
    """Base of every error the harness raises on purpose."""

    failure_class: FailureClass = FailureClass.HARNESS


class UserError(HilError):
    """Bad input a person can fix. ``where`` names file, line, device and field."""

    def __init__(self, message: str, *, file: str | None = None, device: str | None = None,
                 field: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        self.device = device
        self.field = field
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = [f"{k} {v}" for k, v in (("file", self.file), ("line", self.line), ("device", self.device),
                                          ("field", self.field)) if v]
        prefix = ", ".join(where)
        return f"{prefix}: {self.detail}" if prefix else self.detail


class InventoryError(UserError):
    """devices.yaml is malformed or refers to something missing."""


class InventoryProblems(InventoryError):
    """Several things wrong with one inventory, reported together (one line each).

    ``file``/``line``/``device``/``field`` are the first problem's, for callers that show one.
    """

    SHOWN = 40

    def __init__(self, problems: list[InventoryError]) -> None:
        self.problems = problems
        first = problems[0]
        self.file, self.line, self.device, self.field = first.file, first.line, first.device, first.field
        self.detail = first.detail
        head = f"file {first.file}: " if first.file else ""
        shown = problems[:self.SHOWN]
        lines = [f"{head}{len(problems)} problems in the inventory:"] + [f"  {p}" for p in shown]
        if len(problems) > len(shown):
            lines.append(f"  ... and {len(problems) - len(shown)} more")
        HilError.__init__(self, "\n".join(lines))


class InfrastructureError(HilError):
    """The lab could not do its part: device unreachable, lease not granted, PDU down."""

    failure_class = FailureClass.INFRASTRUCTURE


class DeviceUnreachable(InfrastructureError):
    """A hub did not answer on the channel we asked for."""


class InconclusiveEvidence(InfrastructureError):
    """A probe saw no positive evidence either way (a timeout, a refused connect, a scan
    that saw nothing): the check could not judge the hub, so it neither passes nor fails it."""


class CommandTimeout(InfrastructureError):
    """A command did not finish before its deadline."""


class HostKeyMismatch(InfrastructureError):
    """The hub presented a host key that is not the pinned one. Never accepted."""


class ProductError(HilError):
    """The candidate or the device software is wrong."""

    failure_class = FailureClass.PRODUCT


class ParseError(HilError):
    """A device printed something the harness cannot parse (e.g. a CLI output)."""


class Phase(StrEnum):
    """Where a hub is in a run, as far as blame goes: has the candidate touched it yet?"""

    BEFORE_CANDIDATE = "before the candidate"
    WITH_CANDIDATE = "with the candidate deployed"


def blame_for_dead_service(phase: Phase) -> FailureClass:
    """Whose fault a declared service that does not answer is (docs/architecture.md):
    before the candidate touched the hub the hub was not fit for the run (infrastructure);
    once the candidate is deployed, a dead nucleus or engine is the candidate's doing."""
    return FailureClass.INFRASTRUCTURE if phase is Phase.BEFORE_CANDIDATE else FailureClass.PRODUCT


class ServiceDown(HilError):
    """Declared services of a hub do not answer; the class follows from ``phase``."""

    def __init__(self, message: str, *, device: str, services: tuple[str, ...], phase: Phase) -> None:
        super().__init__(message)
        self.device = device
        self.services = services
        self.phase = phase
        self.failure_class = blame_for_dead_service(phase)
