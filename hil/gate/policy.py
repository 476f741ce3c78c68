"""gate.yaml -> GatePolicy: what a candidate must show before it is promoted.

Every validation error names the policy file and the offending field, so a release
manager can fix the file without reading a traceback.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

from hil.errors import UserError
from hil.ml.policy import MlPolicy

DEFAULT_POLICY_FILE = "gate.yaml"


class OnFailure(StrEnum):
    """What an infrastructure or harness failure does to the decision."""

    BLOCK = "block"
    """The candidate is rejected (exit 1)."""
    REQUEUE = "requeue"
    """The run proves nothing: inconclusive (exit 2), run it again."""
    TOLERATE = "tolerate"
    """The device is left out of the count; the device minimums decide."""


class LatencyBudget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    p95_ms: PositiveFloat | None = None
    p99_ms: PositiveFloat | None = None
    min_samples: int = Field(default=0, ge=0)
    """Fewer samples than this and the figure does not count (p99 wants >= 1000)."""


class Quarantine(BaseModel):
    """A known-flaky test: its failures are reported but do not block until ``expires``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test: str = Field(min_length=1)
    """A pytest node id or an fnmatch pattern over node ids (``*`` matches anything)."""
    reason: str = Field(min_length=1)
    expires: dt.date

    def matches(self, nodeid: str) -> bool:
        return nodeid == self.test or fnmatch.fnmatchcase(nodeid, self.test)

    def expired(self, today: dt.date) -> bool:
        return today > self.expires


class Waiver(BaseModel):
    """A required check that may stay unrun (skipped or not applicable) on one device model.

    Like a quarantine it names a reason and an expiry: an expired waiver blocks again
    and is named in the decision. It never excuses a failure, only a check that did not run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str = Field(min_length=1)
    """A pytest node id or an fnmatch pattern over node ids."""
    model: str = Field(min_length=1)
    """The device model (devices.yaml ``model``) it applies to; an fnmatch pattern (``*``: every model)."""
    reason: str = Field(min_length=1)
    expires: dt.date

    def matches(self, nodeid: str, model: str | None) -> bool:
        check_ok = nodeid == self.check or fnmatch.fnmatchcase(nodeid, self.check)
        m = model or ""
        return check_ok and (m == self.model or fnmatch.fnmatchcase(m, self.model))

    def expired(self, today: dt.date) -> bool:
        return today > self.expires


class GatePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    required_suites: list[str] = Field(default_factory=lambda: ["smoke", "functional", "security",
                                                                 "latency"])
    min_devices_per_model: dict[str, int] = Field(default_factory=lambda: {"default": 1})
    """Devices of each model that must pass every required suite; ``default`` for unnamed models."""
    min_healthy_devices: int | Literal["all"] = 1
    """Devices that must finish the run healthy; ``all``: every device the run selected."""
    infrastructure: OnFailure = OnFailure.REQUEUE
    harness: OnFailure = OnFailure.REQUEUE
    latency_budgets: dict[str, LatencyBudget] = Field(default_factory=dict)
    quarantine: list[Quarantine] = Field(default_factory=list)
    waivers: list[Waiver] = Field(default_factory=list)
    """Required checks allowed not to run on a device model (coverage); see docs/ci.md."""
    ml: MlPolicy | None = None
    """ML model releases (candidates with a model card): quality, drift, footprint, champion."""
    ledger: Path = Path("reports/ledger.jsonl")
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check(self) -> GatePolicy:
        bad = {m: n for m, n in self.min_devices_per_model.items() if n < 0}
        if bad:
            raise ValueError(f"min_devices_per_model must be >= 0, got {bad}")
        if isinstance(self.min_healthy_devices, int) and self.min_healthy_devices < 0:
            raise ValueError("min_healthy_devices must be >= 0 or 'all'")
        if self.harness is OnFailure.TOLERATE:
            raise ValueError("harness: 'tolerate' is not allowed (a broken harness proves nothing)")
        return self

    def min_devices_for(self, model: str) -> int:
        return self.min_devices_per_model.get(model, self.min_devices_per_model.get("default", 1))

    def quarantine_for(self, nodeid: str) -> Quarantine | None:
        return next((q for q in self.quarantine if q.matches(nodeid)), None)

    def waiver_for(self, nodeid: str, model: str | None, today: dt.date) -> Waiver | None:
        """A valid waiver of this check on this model, else an expired one (the caller names it)."""
        found = [w for w in self.waivers if w.matches(nodeid, model)]
        return next((w for w in found if not w.expired(today)), found[0] if found else None)

    def required_for(self, candidate: dict[str, object]) -> list[str]:
        """The required suites for this candidate: ``ml.required_suites`` for one with a model card."""
        if self.ml is not None and candidate.get("model_card"):
            return list(self.ml.required_suites)
        return list(self.required_suites)

    def latency_budget(self, metric: str) -> LatencyBudget | None:
        """The budget a latency test asserts against (suites read it from here too)."""
        return self.latency_budgets.get(metric)


def load_policy(path: str | os.PathLike[str] = DEFAULT_POLICY_FILE) -> GatePolicy:
    """Parse and validate a gate policy; raise ``UserError`` naming file and field."""
    p = Path(path)
    fname = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("gate policy file not found", file=fname) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read gate policy: {exc}", file=fname) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"not valid YAML{where}: {problem}", file=fname) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise UserError("top level must be a mapping (required_suites:, quarantine:, ...)", file=fname)
    if "path" in doc:
        raise UserError("unknown field (typo?)", file=fname, field="path")
    try:
        policy = GatePolicy.model_validate(doc)
    except ValidationError as exc:
        raise _from_validation(exc, fname) from None
    # a relative ledger path is relative to the policy file, like inventory paths
    ledger = policy.ledger if policy.ledger.is_absolute() else p.resolve().parent / policy.ledger
    update: dict[str, object] = {"path": p.resolve(), "ledger": ledger}
    if policy.ml is not None and policy.ml.champion is not None and not policy.ml.champion.is_absolute():
        # like the ledger: relative to the policy file
        update["ml"] = policy.ml.model_copy(update={"champion": p.resolve().parent / policy.ml.champion})
    return policy.model_copy(update=update)


_UNION_TAGS = {"int", "str", "float", "bool", "date", "list", "dict", "none"}


def _field_path(loc: tuple[int | str, ...]) -> str:
    # pydantic adds the union branch ("int", "literal['all']") to the location: not a field
    parts = [str(p) for p in loc if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p))]
    return ".".join(parts) or "(top level)"


def _from_validation(exc: ValidationError, fname: str) -> UserError:
    errors = exc.errors()
    field = _field_path(errors[0]["loc"])
    same = [e for e in errors if _field_path(e["loc"]) == field]
    msgs = list(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in same))
    msg = " or ".join(msgs)
    if errors[0]["type"] == "extra_forbidden":
        msg = "unknown field (typo?)"
    elif errors[0]["type"] == "missing":
        msg = "required field is missing"
    rest = len(errors) - len(same)
    more = f" (and {rest} more problem(s))" if rest else ""
    return UserError(msg + more, file=fname, field=field)
