"""The ``ml:`` section of gate.yaml: what a model release must show on the device.

Kept beside the other gate policy models (hil.gate.policy imports it); the suite reads the
same values the gate judges with (hil.ml.judge), so a test and the gate never disagree.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QualityFloors(_Strict):
    """Minimum precision/recall/F1 on the golden set, measured on the device."""

    min_precision: float | None = Field(default=None, ge=0, le=1)
    min_recall: float | None = Field(default=None, ge=0, le=1)
    min_f1: float | None = Field(default=None, ge=0, le=1)


class DriftPolicy(_Strict):
    raise_within_s: PositiveFloat = 30.0
    """The drifted set must raise the component's drift signal this soon after it starts."""


class FootprintBudget(_Strict):
    max_rss_mib: PositiveFloat | None = None
    """Peak resident (anonymous) memory of the component's container during the replay."""
    max_mean_cpu_percent: PositiveFloat | None = None
    """Mean CPU of the container during the replay, in % of one core."""
    max_model_bytes: int | None = Field(default=None, gt=0)
    max_start_to_first_score_s: PositiveFloat | None = None
    """Container start -> first score received (model load, broker connect)."""


class MlPolicy(_Strict):
    required_suites: list[str] = Field(default_factory=lambda: ["smoke", "ml"])
    """The suites a candidate with a model card is judged on (instead of required_suites)."""
    replay_rate_hz: PositiveFloat = 200.0
    """Golden and drifted sets are published at this fixed rate."""
    quality: QualityFloors = Field(default_factory=QualityFloors)
    card_tolerance: float = Field(default=0.02, ge=0, le=1)
    """|device metric - model card metric| allowed for precision, recall and F1."""
    min_agreement: float = Field(default=0.99, ge=0, le=1)
    """Share of golden rows where the device's label equals the harness host's reference inference."""
    max_missing: int = Field(default=0, ge=0)
    """Golden rows the component may leave unscored."""
    champion: Path | None = None
    """The model release the fleet runs now (a candidate folder, relative to gate.yaml)."""
    max_regression: float = Field(default=0.02, ge=0, le=1)
    """How much precision, recall or F1 the candidate may lose against the champion."""
    drift: DriftPolicy = Field(default_factory=DriftPolicy)
    footprint: FootprintBudget = Field(default_factory=FootprintBudget)
