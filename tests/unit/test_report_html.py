"""`hil report`: executor/categories/history wiring, and the real Allure generator end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gate_recording import RUN_TIMEOUT, record

from hil.exitcodes import ExitCode
from hil.gate.ci import ci_job
from hil.gate.decision import decide
from hil.gate.policy import GatePolicy
from hil.gate.readers import ResultFiles, read_run
from hil.report.html import carry_history, categories, executor

HIL = [sys.executable, "-c", "from hil.cli import main; main()"]
DEVICES = {"hub-01": "virtual-pi4", "hub-02": "virtual-pi4"}


def test_executor_names_the_ci_job() -> None:
    gl = ci_job({"GITLAB_CI": "true", "CI_JOB_NAME": "hil-gate", "CI_JOB_URL": "https://gl/j/7",
                 "CI_PIPELINE_ID": "42", "CI_PIPELINE_URL": "https://gl/p/42"})
    assert executor(gl) == {"name": "GitLab CI", "type": "gitlab", "buildName": "hil-gate (pipeline 42)",
                            "buildUrl": "https://gl/j/7", "url": "https://gl/j/7",
                            "reportName": "HIL gate report"}
    gh = ci_job({"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com",
                 "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "9", "GITHUB_RUN_NUMBER": "3"})
    assert gh.url == "https://github.com/o/r/actions/runs/9"
    assert ci_job({"BUILD_URL": "https://j/b/5/", "JOB_NAME": "hil"}).system == "jenkins"
    assert executor(ci_job({}))["type"] == "local"


def test_categories_keep_the_catch_all_last() -> None:
    cats = categories()
    assert "messageRegex" not in cats[-1] and "traceRegex" not in cats[-1]
    names = [c["name"] for c in cats]
    assert any("Infrastructure" in n for n in names) and "Product defects" in names


def test_history_is_carried(tmp_path: Path) -> None:
    (tmp_path / "old" / "history").mkdir(parents=True)
    (tmp_path / "old" / "history" / "history-trend.json").write_text("[]")
    (tmp_path / "results").mkdir()
    assert carry_history(tmp_path / "results", tmp_path / "old")
    assert (tmp_path / "results" / "history" / "history-trend.json").is_file()
    assert not carry_history(tmp_path / "results", tmp_path / "none")


def test_report_without_results_is_bad_input(tmp_path: Path) -> None:
    proc = subprocess.run([*HIL, "report", "--results", str(tmp_path), "--report", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == ExitCode.BAD_INPUT and "no allure results here" in proc.stderr


needs_tools = pytest.mark.skipif(shutil.which("npm") is None or shutil.which("java") is None,
                                 reason="npm and java are needed for the Allure report generator")


@needs_tools
def test_hil_report_end_to_end(tmp_path: Path) -> None:
    """Real allure-pytest results -> real `allure generate`; twice, so the history trend grows.

    (An end-to-end browser check of the page – headless Chromium screenshot – comes later.)
    """
    rec = record(tmp_path / "run", "bad")
    out = tmp_path / "allure-report"
    for n in (1, 2):
        proc = subprocess.run([*HIL, "report", "--results", str(rec.allure), "--report", str(out)],
                              capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.splitlines()[-1] == f"HTML report: {(out / 'index.html').resolve()}"
        trend = json.loads((out / "history" / "history-trend.json").read_text())
        assert len(trend) == n
    cases = [json.loads(p.read_text()) for p in (out / "data" / "test-cases").glob("*.json")]
    assert len(cases) == 14  # 7 checks of tests/data/gate x 2 hubs
    assert {c["status"] for c in cases} == {"passed", "failed"}
    cats = json.loads((out / "data" / "categories.json").read_text())
    assert [c["name"] for c in cats["children"]] == ["Product defects"]
    execs = json.loads((out / "widgets" / "executors.json").read_text())
    assert execs and execs[0]["reportName"] == "HIL gate report"

    # with the report in place, the gate links a failure to its exact test case page
    d = decide(read_run(ResultFiles(None, rec.allure, []), inventory_devices=DEVICES), GatePolicy(),
               selected_devices=DEVICES, report_dir=out)
    [f] = d.blocking_failures
    assert f.allure_link and "#testresult/" in f.allure_link
    uid = f.allure_link.rsplit("/", 1)[1]
    case = json.loads((out / "data" / "test-cases" / f"{uid}.json").read_text())
    assert case["name"] == "test_component_running[hub-01]"
