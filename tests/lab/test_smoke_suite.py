"""The smoke suite passes on the hardened hubs (3 xdist workers) and fails its nucleus check
when the nucleus is down (stopped and restarted by the child run under its lease)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests_lab_junit import parse_junit

from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = lab_inventory_path()
if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]
HARDENED = ("hub-01", "hub-02", "hub-03")
VICTIM = "hub-03"


def _smoke(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run_env = {**os.environ, "HIL_REPORTS_DIR": str(tmp / "reports"), "HIL_RUN_ID": "smoke",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests" / "lab"),
                                                            os.environ.get("PYTHONPATH")])), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "hub_faults", "suites/smoke",
                           "--devices", str(INVENTORY), "--junitxml", str(tmp / "junit.xml"), "-q", *args],
                          cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=900, check=False)


def test_smoke_passes_on_hardened_hubs_in_parallel(tmp_path: Path) -> None:
    devices = [a for h in HARDENED for a in ("--device", h)]
    proc = _smoke(tmp_path, "-n", "3", *devices)
    outcomes = parse_junit(tmp_path / "junit.xml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert len(outcomes) == 8 * len(HARDENED), outcomes
    assert set(outcomes.values()) == {"passed"}, outcomes


def test_nucleus_check_fails_while_the_nucleus_is_down(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    proc = _smoke(tmp_path, "--device", VICTIM,
                  env={"HIL_HUB_FAULTS": f"{VICTIM}=nucleus-down", "HIL_HUB_FAULTS_LOG": str(log)})
    outcomes = parse_junit(tmp_path / "junit.xml")
    assert outcomes.pop(f"test_nucleus_healthy[{VICTIM}]") == "failed", proc.stdout[-3000:]
    assert set(outcomes.values()) == {"passed"}, outcomes  # the fault touched only its check
    events = [json.loads(x)["event"] for x in log.read_text().splitlines()]
    assert events == ["inject", "clear"]  # cleared: the nucleus answers greengrass-cli again
