"""The model card an ML candidate carries (candidate.yaml ``model_card``).

Written by the team that trained the model (ml/train.py for the example); the harness reads
what it declares: the component and artifact that hold the model, the model file's SHA-256,
the input and output topics, the decision threshold, the golden-set metrics the device must
reproduce, and how the component reports drift. A card is candidate input, so it is parsed
into a strict model; every error names the file and the field.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hil.errors import UserError

SHA256_HEX = r"^[0-9a-f]{64}$"
TOPIC = r"^[^#+\x00]{1,200}$"
"""A concrete MQTT topic (no wildcards)."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class InputSchema(_Part):
    topic: str = Field(pattern=TOPIC)
    fields: dict[str, str]


class Outputs(_Part):
    score_topic: str = Field(pattern=TOPIC)
    health_topic: str = Field(pattern=TOPIC)


class Confusion(_Part):
    tp: int = Field(ge=0)
    fp: int = Field(ge=0)
    fn: int = Field(ge=0)
    tn: int = Field(ge=0)


class GoldenMetrics(_Part):
    file: str
    sha256: str = Field(pattern=SHA256_HEX)
    rows: int = Field(gt=0)
    precision: float = Field(ge=0, le=1)
    recall: float = Field(ge=0, le=1)
    f1: float = Field(ge=0, le=1)
    confusion: Confusion | None = None


class DriftSpec(_Part):
    window: int = Field(gt=0)
    z_threshold: float = Field(gt=0)
    min_messages: int = Field(ge=0)


class ModelCard(_Part):
    model_card_version: int = Field(ge=1, le=1)
    name: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64)
    component: str = Field(pattern=r"^[a-zA-Z0-9-_.]{1,128}$")
    artifact: str = Field(pattern=r"^[A-Za-z0-9._-]{1,128}$")
    sha256: str = Field(pattern=SHA256_HEX)
    size_bytes: int = Field(gt=0)
    input_schema: InputSchema
    outputs: Outputs
    threshold: float = Field(ge=0, le=1)
    golden_set: GoldenMetrics
    drift: DriftSpec
    summary: str = ""

    @property
    def features(self) -> list[str]:
        """Numeric input fields in the card's order (``id`` is the message's own name)."""
        return [f for f in self.input_schema.fields if f != "id"]


def load_card(path: Path) -> ModelCard:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"model card unreadable: {str(exc).splitlines()[0]}", file=str(path)) from None
    try:
        return ModelCard.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise UserError(f"model card: {err['msg']}", file=str(path), field=field) from None
