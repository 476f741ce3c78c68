"""Links from a gate finding to its test case in a generated Allure report."""

from __future__ import annotations

import json
from pathlib import Path

from hil.gate.results import TestRecord


class AllureLinks:
    """Link a record to its test case in a generated Allure report.

    Allure 2 gives each test case its own id when the report is built, so an exact
    ``#testresult/<uid>`` link exists only once a report has been generated from
    these results; before that the link is the report's categories page, where
    failures are grouped by class.
    """

    def __init__(self, report_dir: Path | None) -> None:
        self.report_dir = report_dir
        self._uids: dict[tuple[str, int], str] = {}
        cases = report_dir / "data" / "test-cases" if report_dir else None
        if cases and cases.is_dir():
            for path in cases.glob("*.json"):
                try:
                    doc = json.loads(path.read_text(encoding="utf-8"))
                    self._uids[(str(doc["name"]), int(doc["time"]["start"]))] = str(doc["uid"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue

    def link(self, rec: TestRecord) -> str | None:
        if self.report_dir is None:
            return None
        base = f"{self.report_dir}/index.html"
        if rec.allure_name and rec.start_ms is not None:
            uid = self._uids.get((rec.allure_name, rec.start_ms))
            if uid:
                return f"{base}#testresult/{uid}"
        return f"{base}#categories"
