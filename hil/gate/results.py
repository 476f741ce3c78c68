"""The results of one run as the gate sees them, whatever file they were read from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hil.errors import FailureClass

SUITE_NAMES = ("smoke", "functional", "latency", "security")
"""Suite markers the harness knows; a policy may name others (they are markers too)."""

# Exception names that mean "the lab could not do its part" when a record carries no
# explicit class (allure/JUnit written without the harness plugin, or a crash).
INFRASTRUCTURE_EXCEPTIONS = ("InfrastructureError", "DeviceUnreachable", "CommandTimeout",
                             "HostKeyMismatch", "LeaseNotGranted", "LeaseTimeout", "HubBroken",
                             "PowerError")
PRODUCT_EXCEPTIONS = ("AssertionError", "ProductError", "CommandFailed")


_INFRA_RE = re.compile(r"(?:[\w.]+\.)?(?:" + "|".join(INFRASTRUCTURE_EXCEPTIONS) + r")\b")


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class TestRecord:
    """One test (one node id) of the run, with its outcome and its blame."""

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: Outcome
    failure_class: FailureClass | None = None
    """None for a pass or a plain skip (e.g. a model the test does not apply to)."""
    message: str = ""
    duration: float | None = None
    device: str | None = None
    model: str | None = None
    suites: frozenset[str] = frozenset()
    allure_uuid: str | None = None
    allure_name: str | None = None
    start_ms: int | None = None
    source: str = ""

    @property
    def is_problem(self) -> bool:
        """A failure of any class, or a skip because the lab or the harness failed."""
        return self.outcome is Outcome.FAILED or (
            self.outcome is Outcome.SKIPPED and self.failure_class in (FailureClass.INFRASTRUCTURE,
                                                                       FailureClass.HARNESS))


@dataclass(frozen=True)
class LatencyFigure:
    metric: str
    device: str | None
    p95_ms: float | None
    p99_ms: float | None
    samples: int | None = None
    nodeid: str | None = None


@dataclass
class RunMetadata:
    """What the harness recorded about the run itself (reports/run/<run-id>/)."""

    run_id: str | None = None
    finished: bool | None = None
    """None: nobody said (results read from allure/JUnit alone)."""
    candidate: dict[str, Any] = field(default_factory=dict)
    git_revision: str | None = None
    inventory_sha256: str | None = None
    inventory_path: str | None = None
    devices: dict[str, str | None] = field(default_factory=dict)
    """Devices the run selected -> model (None if unknown)."""
    broken_devices: set[str] = field(default_factory=set)
    ci_job_url: str | None = None


@dataclass
class RunResults:
    records: list[TestRecord]
    metadata: RunMetadata
    latency: list[LatencyFigure] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """Files and directories the results were read from (for the report)."""
    warnings: list[str] = field(default_factory=list)
    """Unreadable lines or files that were skipped."""


def classify(outcome: Outcome, message: str, *, allure_status: str | None = None) -> FailureClass | None:
    """Blame a record that carries no explicit failure class.

    Assertion failures are the product's; known lab exceptions (and skips that say
    "infrastructure") are the lab's; any other error is the harness's own bug.
    """
    if outcome is Outcome.PASSED:
        return None
    text = message or ""
    if outcome is Outcome.SKIPPED:
        if "infrastructure" in text.lower():
            return FailureClass.INFRASTRUCTURE
        return FailureClass.HARNESS if "[harness]" in text else None
    # the exception's type starts the message ("DeviceUnreachable: ..."); a product
    # assertion may well *mention* a lab exception further on
    if _INFRA_RE.match(text) or text.lower().startswith(("[infrastructure]", "infrastructure:")):
        return FailureClass.INFRASTRUCTURE
    if allure_status == "failed" or any(text.startswith(n) or f"\n{n}" in text or f"E   {n}" in text
                                        for n in PRODUCT_EXCEPTIONS):
        return FailureClass.PRODUCT
    if text.lower().startswith(("[product]", "product:")):
        return FailureClass.PRODUCT
    return FailureClass.HARNESS
