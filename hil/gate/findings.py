"""What the gate's passes find, and the per-suite, per-device records gate.json carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Effect(StrEnum):
    """What one finding does to the decision."""

    REJECT = "reject"
    INCONCLUSIVE = "inconclusive"
    NONE = "none"


@dataclass(frozen=True)
class Finding:
    """One reason for the decision, found by one pass (``NONE``: reported, not deciding)."""

    effect: Effect
    reason: str


@dataclass(frozen=True)
class GateFailure:
    test: str
    device: str | None
    model: str | None
    failure_class: str
    message: str
    suites: list[str]
    effect: Effect
    why: str
    """Why it blocks or why not (quarantined until ..., suite not required, ...)."""
    allure_uuid: str | None = None
    allure_link: str | None = None


@dataclass(frozen=True)
class CheckGap:
    """A check that did not run on a device: skipped or not applicable, and what that means."""

    check: str
    disposition: str
    """skipped | not_applicable"""
    reason: str
    """The skip reason as recorded (a not-applicable one names the missing declaration)."""
    required: bool
    """In a suite the policy requires."""
    effect: Effect
    why: str
    """Waived until ..., waiver expired on ..., not required, counted as an infrastructure failure ..."""
    failure_class: str | None = None
    waiver: dict[str, str] | None = None
    """The matching gate.yaml waiver: check, model, reason, expires (also when expired)."""


@dataclass
class DeviceChecks:
    """Per device: which checks ran, which failed, which did not run and why."""

    passed: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    """{check, failure_class}"""
    skipped: list[CheckGap] = field(default_factory=list)
    not_applicable: list[CheckGap] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return len(self.passed) + len(self.failed)


@dataclass
class SuiteOutcome:
    outcome: str = "not run"
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    not_applicable: int = 0
    devices_passed: dict[str, list[str]] = field(default_factory=dict)
    """model -> devices that passed every test of this suite they ran."""
    required: bool = False


@dataclass
class DeviceOutcome:
    model: str | None
    healthy: bool
    outcome: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    not_applicable: int = 0
    note: str = ""
    checks: DeviceChecks = field(default_factory=DeviceChecks)
