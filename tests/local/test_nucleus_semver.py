"""npm-style version ranges of the nucleus stand-in (pure logic)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NUCLEUS_DIR = Path(__file__).resolve().parents[2] / "lab/hil_lab/hub/rootfs/opt/hil-lab/nucleus"
sys.path.insert(0, str(NUCLEUS_DIR))

from ggnucleus.recipe import RecipeError, parse_recipe, platform_matches  # noqa: E402
from ggnucleus.semver import Version, satisfies  # noqa: E402

RANGE_CASES = [
    ("2.0.5", "~2.0.0", True), ("2.1.0", "~2.0.0", False), ("1.3.9", "~1.3", True), ("2.0.0", "~1", False),
    ("1.9.0", "^1.2.3", True), ("2.0.0", "^1.2.3", False), ("0.2.9", "^0.2.3", True),
    ("0.3.0", "^0.2.3", False), ("0.0.3", "^0.0.3", True), ("0.0.4", "^0.0.3", False),
    ("1.2.3", "1.x", True), ("2.0.0", "1.x", False), ("1.2.9", "1.2.*", True), ("5.0.0", "*", True),
    ("1.5.0", ">=1.0.0 <2.0.0", True), ("2.0.0", ">=1.0.0 <2.0.0", False), ("1.0.0", ">= 1.0.0", True),
    ("3.0.0", "1.x || >=3", True), ("2.5.0", "1.x || >=3", False),
    ("1.0.0", "=1.0.0", True), ("1.0.1", "1.0.0", False), ("1.2.3", "1.2.3 - 2.3", True),
    ("2.4.0", "1.2.3 - 2.3", False), ("0.9.0", "<1", True), ("1.0.0", "<1", False), ("1.9.9", "<=1", True),
    ("2.0.0", ">1", True), ("1.5.0", ">1", False), ("2.0.0-rc.1", "^1.0.0", False),
    ("1.0.0-rc.2", ">=1.0.0-rc.1", True), ("1.0.1-rc.1", ">=1.0.0-rc.1", False),
]


@pytest.mark.parametrize(("version", "requirement", "expected"), RANGE_CASES)
def test_ranges(version: str, requirement: str, expected: bool) -> None:
    assert satisfies(version, requirement) is expected


def test_the_stand_in_copy_passes_the_shared_table() -> None:
    """The same table the harness's copy passes (tests/unit/test_semver_table.py)."""
    table = json.loads((Path(__file__).resolve().parents[1] / "data" / "semver" / "cases.json").read_text())
    wrong = [f"{v} in {r!r}: got {not e}" for v, r, e in table if satisfies(v, r) is not e]
    assert wrong == []


def test_version_order() -> None:
    assert Version.parse("1.0.0-alpha") < Version.parse("1.0.0-alpha.1") < Version.parse("1.0.0-beta.2")
    assert Version.parse("1.0.0-beta.11") > Version.parse("1.0.0-beta.2")
    assert Version.parse("1.0.0-rc.1") < Version.parse("1.0.0") < Version.parse("1.0.10")


@pytest.mark.parametrize(("spec", "expected"), [
    ({"os": "linux"}, True), ({"os": "Linux", "architecture": "x86_64"}, True), ({"os": "*"}, True),
    ({"os": "all", "architecture": "any"}, True), ({"os": "/lin.*/"}, True), ({"os": "windows"}, False),
    ({"architecture": "arm64"}, False), ({"architecture.detail": "armv8"}, False), (None, True),
])
def test_platform_matching_on_amd64(spec: object, expected: bool) -> None:
    assert platform_matches(spec, {"os": "linux", "architecture": "amd64"}) is expected


def test_first_matching_manifest_wins_and_empty_manifests_rejected() -> None:
    text = """
RecipeFormatVersion: '2020-01-25'
componentName: com.x.Y
ComponentVersion: 1.0.0
manifests:
  - platform: {os: linux, architecture: aarch64}
    lifecycle: {run: arm}
  - platform: {os: linux}
    lifecycle: {run: first}
  - lifecycle: {run: second}
"""
    recipe = parse_recipe(text, "yaml", {"os": "linux", "architecture": "amd64"})
    assert recipe.lifecycle == {"run": "first"}
    with pytest.raises(RecipeError, match="no manifests"):
        parse_recipe("ComponentName: a\nComponentVersion: 1.0.0\nManifests: []\n", "yaml")
    with pytest.raises(RecipeError, match="ComponentName"):
        parse_recipe('{"ComponentName": "bad name", "ComponentVersion": "1.0.0", "Manifests": [{}]}', "json")
