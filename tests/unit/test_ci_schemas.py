"""ci/ validates against the published GitLab CI and GitHub workflow schemas (check-jsonschema
ships them: no network), and every template takes the candidate from the pipeline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = Path(sys.executable).parent / "check-jsonschema"
TEMPLATES = {"vendor.gitlab-ci": ROOT / "ci" / "gitlab-ci.yml",
             "vendor.github-workflows": ROOT / "ci" / "github-workflow.yml"}

needs_check = pytest.mark.skipif(not CHECK.exists(), reason="check-jsonschema (dev extra) is not installed")


def _check(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK), "--builtin-schema", schema, str(path)], capture_output=True,
                          text=True, timeout=120, check=False)


@needs_check
@pytest.mark.parametrize("schema", sorted(TEMPLATES))
def test_template_validates_against_its_published_schema(schema: str) -> None:
    res = _check(schema, TEMPLATES[schema])
    assert res.returncode == 0, res.stdout + res.stderr


@needs_check
def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    """The mistake this check caught in the GitLab template: an unquoted `: ` in a script line."""
    bad = tmp_path / "gitlab-ci.yml"
    bad.write_text(TEMPLATES["vendor.gitlab-ci"].read_text().replace(
        "    - mkdir -p reports\n", '    - echo "hil-gate: starting"\n    - mkdir -p reports\n'))
    res = _check("vendor.gitlab-ci", bad)
    assert res.returncode == 1 and "is not of type 'string'" in res.stdout


@pytest.mark.parametrize("path", [*TEMPLATES.values(), ROOT / "ci" / "Jenkinsfile"], ids=lambda p: p.name)
def test_every_template_takes_the_candidate_from_the_pipeline_and_fails_without(path: Path) -> None:
    text = path.read_text()
    assert "HIL_CANDIDATE" in text and '--candidate "$HIL_CANDIDATE"' in text
    assert re.search(r'if \[ ! -d "\$HIL_CANDIDATE/recipes" \]; then', text)
    assert "exit 3" in text
    assert "--gate" in text and "hil report" in text and "'.[all]'" in text
