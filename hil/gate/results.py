"""The results of one run as the gate sees them, whatever file they were read from."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hil.errors import FailureClass

SUITE_NAMES = ("smoke", "functional", "latency", "security", "ml")
"""Suite markers the harness knows; a policy may name others (they are markers too)."""


class Outcome(StrEnum):
    """pytest's own outcome of a test (a not-applicable check is a pytest skip)."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Disposition(StrEnum):
    """What became of one check on one device: the gate's view of a result record.

    Carried by the record itself (results.jsonl ``disposition``, the Allure label or the
    JUnit property of that name); when a source has no such field, pytest's outcome
    gives passed / failed / skipped, and ``not_applicable`` cannot be guessed.
    """

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not_applicable"
    """The hub does not declare what the check is about (devices.yaml ``expect.services``)."""

    @property
    def outcome(self) -> Outcome:
        return {Disposition.PASSED: Outcome.PASSED, Disposition.FAILED: Outcome.FAILED}.get(
            self, Outcome.SKIPPED)

    @property
    def ran(self) -> bool:
        return self in (Disposition.PASSED, Disposition.FAILED)


@dataclass(frozen=True)
class TestRecord:
    """One test (one node id) of the run, with its disposition and its blame."""

    __test__ = False  # not a pytest test class

    nodeid: str
    disposition: Disposition
    failure_class: FailureClass | None = None
    """Who is to blame, as recorded with the result (from the exception's type); None for
    a pass, a plain skip or a not-applicable check."""
    message: str = ""
    """The failure message or the skip reason."""
    duration: float | None = None
    device: str | None = None
    model: str | None = None
    suites: frozenset[str] = frozenset()
    allure_uuid: str | None = None
    allure_name: str | None = None
    start_ms: int | None = None
    source: str = ""

    @property
    def outcome(self) -> Outcome:
        return self.disposition.outcome

    @property
    def is_problem(self) -> bool:
        """A failure of any class, or a skip because the lab or the harness failed."""
        return self.disposition is Disposition.FAILED or (
            not self.disposition.ran and self.failure_class in (FailureClass.INFRASTRUCTURE,
                                                                FailureClass.HARNESS))


@dataclass(frozen=True)
class LatencyFigure:
    metric: str
    device: str | None
    p95_ms: float | None
    p99_ms: float | None
    samples: int | None = None
    nodeid: str | None = None


@dataclass(frozen=True)
class MlFigure:
    """One ML figure of one device (reports/run/<id>/ml.jsonl): quality, agreement, drift, ..."""

    kind: str
    device: str | None
    values: dict[str, Any]
    nodeid: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    """The model the figure is about: name, version, sha256."""


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
    ml: list[MlFigure] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """Files and directories the results were read from (for the report)."""
    warnings: list[str] = field(default_factory=list)
    """Unreadable lines or files that were skipped."""
