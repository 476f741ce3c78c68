"""Child runs of the security suite for the lab tests: start one, read its JUnit XML.

A child is a real `pytest suites/security --device HUB` run with the hub_faults plugin
loaded (tests/lab/hub_faults.py), its own reports folder and JUnit/Allure output; its
outcomes are keyed ``module::function[param]`` without the hub's name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 900.0


@dataclass(frozen=True)
class Outcome:
    outcome: str
    """passed, failed, error or skipped."""
    message: str
    seconds: float


def _test_key(case: ET.Element, hub: str) -> str:
    module = case.attrib["classname"].rsplit(".", 1)[-1] + ".py"
    name = case.attrib["name"].replace(f"[{hub}]", "").replace(f"[{hub}-", "[")
    return f"{module}::{name}"


def parse_junit(path: Path, hub: str) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 - our own child's report
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (el.attrib.get("message") or "") + "\n" + (el.text or "")
        out[_test_key(case, hub)] = Outcome(outcome, message, float(case.attrib.get("time", 0)))
    return out


def start_security_run(inventory: Path, hub: str, tmp: Path, faults: str | None, candidate: str,
                       *select: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HIL_REPORTS_DIR": str(tmp / f"reports-{hub}"), "HIL_RUN_ID": hub,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests" / "lab"),
                                                        os.environ.get("PYTHONPATH")]))}
    if faults:
        env["HIL_HUB_FAULTS"] = f"{hub}={faults}"
        env["HIL_HUB_FAULTS_LOG"] = str(tmp / f"faults-{hub}.jsonl")
    argv = [sys.executable, "-m", "pytest", "-p", "hub_faults", "suites/security",
            "--devices", str(inventory), "--device", hub, "--alluredir", str(tmp / f"allure-{hub}"),
            "--junitxml", str(tmp / f"junit-{hub}.xml"), "-q", "-p", "no:randomly", "--candidate", candidate,
            *select]
    return subprocess.Popen(argv, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def finish_security_run(proc: subprocess.Popen[str], tmp: Path, hub: str) -> dict[str, Outcome]:
    """Wait for the child; its outcomes (an AssertionError with its output when it left none)."""
    out, _ = proc.communicate(timeout=CHILD_TIMEOUT)
    junit = tmp / f"junit-{hub}.xml"
    assert junit.exists(), f"no JUnit XML from the {hub} run:\n{out[-3000:]}"
    assert any((tmp / f"allure-{hub}").glob("*-result.json")), f"no Allure results for {hub}"
    return parse_junit(junit, hub)
