"""Allure categories: product / infrastructure / harness, matched on the failure's class tag.

Allure's categories can only match a result's status and message, so the pytest
plugin writes ``[product]``, ``[infrastructure]`` or ``[harness]`` at the front of every
failure and classified skip message, from the exception's type (and a not-applicable
skip's reason starts with ``not applicable:``). The gate never reads these: it takes
``failure_class`` and ``disposition`` from results.jsonl and the Allure labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hil.errors import FailureClass


def class_tag(cls: FailureClass | str) -> str:
    return f"[{FailureClass(cls).value}]"


CATEGORIES: list[dict[str, Any]] = [
    {
        "name": "Infrastructure problems (lab could not do its part)",
        "matchedStatuses": ["failed", "broken", "skipped"],
        "messageRegex": r"(?s).*\[infrastructure\].*",
    },
    {
        "name": "Product defects",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?s).*\[product\].*",
    },
    {
        "name": "Harness problems (bug or misconfiguration in the harness)",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?s).*\[harness\].*",
    },
    {
        "name": "Not applicable (the hub does not declare what the check is about)",
        "matchedStatuses": ["skipped"],
        "messageRegex": r"(?s)(?:Skipped: )?not applicable:.*",
    },
    {
        "name": "Harness problems (unclassified errors)",
        "matchedStatuses": ["broken"],
    },
]


def write_categories(results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "categories.json"
    path.write_text(json.dumps(CATEGORIES, indent=2) + "\n")
    return path
