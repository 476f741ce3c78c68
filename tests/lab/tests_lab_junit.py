"""JUnit XML of a child pytest run -> {test name: outcome} (for the lab tests of the suites)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def parse_junit(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 - our own child's report
        outcome = "passed"
        for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            if case.find(tag) is not None:
                outcome = name
        out[case.attrib["name"]] = outcome
    return out
