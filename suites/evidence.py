"""Attach a probe's evidence record to the report (Allure when present)."""

from __future__ import annotations

from hil.probes.evidence import to_json
from hil.redact import redact


def attach_evidence(name: str, record: object) -> None:
    """The record as JSON, redacted, on the current test (a no-op without allure-pytest)."""
    import allure

    allure.attach(redact(to_json(record)), name=name,
                  attachment_type=allure.attachment_type.JSON)
