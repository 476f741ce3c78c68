"""The harness's semver copy on the shared table of cases, and the table against node-semver.

tests/data/semver/cases.json ([version, range, satisfied] rows, written by make_cases.py)
is the one definition of "right" for both copies: this one (hil/deploy/semver.py) and the
nucleus stand-in's (tests/local/test_nucleus_semver.py runs the same table on it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nodesemver

from hil.deploy.semver import Range

CASES: list[list[object]] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "semver" / "cases.json").read_text(encoding="utf-8"))


def _wrong(judge: Callable[[str, str], bool]) -> list[str]:
    out = []
    for version, rng, expected in CASES:
        got = judge(str(version), str(rng))
        if got is not expected:
            out.append(f"{version} in {rng!r}: got {got}, table says {expected}")
    return out


def test_the_table_is_a_few_hundred_distinct_cases() -> None:
    pairs = {(v, r) for v, r, _ in CASES}
    assert len(pairs) == len(CASES) >= 300
    assert {e for _, _, e in CASES} == {True, False}


def test_the_harness_copy_passes_the_table() -> None:
    assert _wrong(lambda v, r: Range.parse(r).satisfied_by(v)) == []


def test_the_table_says_what_node_semver_says() -> None:
    assert _wrong(lambda v, r: bool(nodesemver.satisfies(v, r, loose=False))) == []


def test_the_table_holds_the_case_the_copies_once_disagreed_on() -> None:
    assert ["2.0.0-rc.1", ">1", False] in CASES and ["2.0.0-0", ">1", False] in CASES
