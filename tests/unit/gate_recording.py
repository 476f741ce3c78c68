"""Record real pytest runs of tests/data/gate for the gate's unit tests.

Each scenario is a real `pytest -p allure_pytest --alluredir ... --junitxml ...` run of
the throwaway suites in a temporary rootdir, without the harness's conftest (`-c
/dev/null`) but with the harness's result plugins (run folder, devices, outcomes), so
that the readers are tested on what allure-pytest, pytest and the harness really
write: the failure class and disposition come from the plugin, as in a real run.
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


RECORDED_RUN_ID = "recorded"
"""The harness's run folder of a recording: reports/run/recorded/results.jsonl."""
RESULT_PLUGINS = ("hil_pytest.run", "hil_pytest.devices", "hil_pytest.outcomes")


def pytest_argv(root: Path, *extra: str) -> list[str]:
    plugins = [arg for name in RESULT_PLUGINS for arg in ("-p", name)]
    return [sys.executable, "-m", "pytest", "-c", "/dev/null", "--rootdir", str(root),
            # the installed plugin (entry point hil) off: these runs load the parts they record
            "-p", "no:cacheprovider", "-p", "no:hil", "-p", "allure_pytest", *plugins, "-q",
            "-W", "ignore::pytest.PytestUnknownMarkWarning", *extra, "suites"]


def recording_env(root: Path, scenario: str, run_id: str = RECORDED_RUN_ID) -> dict[str, str]:
    """No inventory of the caller's (the throwaway suites name their devices themselves)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HIL_DEVICES", "HIL_REPORTS_DIR", "HIL_RUN_ID", "PYTEST_XDIST",
                                "PYTEST_CURRENT_TEST", "HIL_CANDIDATE"))}
    env.update({"GATE_SCENARIO": scenario, "HIL_REPORTS_DIR": str(root / "reports"), "HIL_RUN_ID": run_id})
    return env


def record(root: Path, scenario: str, *extra: str) -> Recorded:
    copy_suites(root)
    allure, junit = root / "reports" / "allure-results", root / "reports" / "junit.xml"
    env = recording_env(root, scenario)
    proc = subprocess.run(pytest_argv(root, "--alluredir", str(allure), "--junitxml", str(junit), *extra),
                          cwd=root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)
    if not junit.is_file():
        raise AssertionError(f"the recording run wrote no JUnit XML:\n{proc.stdout}\n{proc.stderr}")
    return Recorded(root, allure, junit, proc.returncode)
