"""Record real pytest runs of tests/data/gate for the gate's unit tests.

Each scenario is a real `pytest -p allure_pytest --alluredir ... --junitxml ...` run of
the throwaway suites in a temporary rootdir, without the harness's conftest (`-c
/dev/null`), so that the readers are tested on what allure-pytest and pytest really
write.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "gate"
REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Recorded:
    root: Path
    allure: Path
    junit: Path
    exit_code: int


def copy_suites(root: Path) -> None:
    """tests/data/gate/suites/<s>/case_x.py -> <root>/suites/<s>/test_x.py"""
    for src in (DATA / "suites").rglob("case_*.py"):
        dst = root / src.relative_to(DATA).with_name("test_" + src.name.removeprefix("case_"))
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def pytest_argv(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-c", "/dev/null", "--rootdir", str(root),
            "-p", "no:cacheprovider", "-p", "allure_pytest", "-q",
            "-W", "ignore::pytest.PytestUnknownMarkWarning", *extra, "suites"]


def record(root: Path, scenario: str, *extra: str) -> Recorded:
    copy_suites(root)
    allure, junit = root / "reports" / "allure-results", root / "reports" / "junit.xml"
    env = {**os.environ, "GATE_SCENARIO": scenario}
    proc = subprocess.run(pytest_argv(root, "--alluredir", str(allure), "--junitxml", str(junit), *extra),
                          cwd=root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)
    if not junit.is_file():
        raise AssertionError(f"the recording run wrote no JUnit XML:\n{proc.stdout}\n{proc.stderr}")
    return Recorded(root, allure, junit, proc.returncode)
