"""`hil gate` and `pytest --gate` exit codes on real recorded runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gate_recording import RUN_TIMEOUT, copy_suites, pytest_argv, record, recording_env

HIL = [sys.executable, "-c", "from hil.cli import main; main()"]


def policy_file(d: Path, **over: object) -> Path:
    doc = {"required_suites": ["smoke", "functional", "security", "latency"], "min_healthy_devices": "all",
           "ledger": "ledger.jsonl", **over}
    f = d / "gate.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f


def run_metadata(reports: Path, run_id: str = "gate-test") -> None:
    """What the harness's run plugin records: the devices the run selected (no finish flag)."""
    run = reports / "run" / run_id
    run.mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps({"run_id": run_id, "devices": [
        {"name": "hub-01", "model": "virtual-pi4"}, {"name": "hub-02", "model": "virtual-pi4"}]}))


def hil_gate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIL, "gate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)


@pytest.mark.parametrize(("scenario", "code"), [("good", 0), ("bad", 1), ("infra", 2)])
def test_hil_gate_exit_codes(tmp_path: Path, scenario: str, code: int) -> None:
    rec = record(tmp_path / "run", scenario)
    run_metadata(rec.root / "reports")
    pol = policy_file(tmp_path)
    proc = hil_gate("--results", str(rec.root / "reports"), "--policy", str(pol),
                    "--out", str(tmp_path / "gate.json"), "--devices", str(tmp_path / "none.yaml"),
                    cwd=tmp_path)
    assert proc.returncode == code, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "gate.json").read_text())
    assert doc["exit_code"] == code
    assert f"GATE: {doc['decision'].upper()}" in proc.stdout
    assert (tmp_path / "ledger.jsonl").exists() == (code == 0)


def test_hil_gate_bad_input_exits_3(tmp_path: Path) -> None:
    bad = tmp_path / "gate.yaml"
    bad.write_text("infrastructure: sometimes\n")
    proc = hil_gate("--policy", str(bad), "--results", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 3
    assert f"file {bad}, field infrastructure" in proc.stderr and "Traceback" not in proc.stderr
    pol = str(policy_file(tmp_path))
    proc = hil_gate("--results", str(tmp_path / "missing"), "--policy", pol, cwd=tmp_path)
    assert proc.returncode == 3 and "results directory not found" in proc.stderr
    assert hil_gate("--no-such-option", cwd=tmp_path).returncode == 3


def pytest_gate(root: Path, scenario: str, policy: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    copy_suites(root)
    run_metadata(root / "reports")
    env = recording_env(root, scenario, "gate-test")
    argv = pytest_argv(root, "-p", "hil_pytest.gate", "--gate", "--gate-policy", str(policy),
                       "--alluredir", str(root / "reports" / "allure-results"),
                       "--junitxml", str(root / "reports" / "junit.xml"), *extra)
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)


@pytest.mark.parametrize(("scenario", "code", "extra"), [
    ("good", 0, ()), ("bad", 1, ()), ("infra", 2, ()), ("good", 0, ("-n", "2")), ("bad", 1, ("-n", "2")),
])
def test_pytest_gate_exit_status(tmp_path: Path, scenario: str, code: int, extra: tuple[str, ...]) -> None:
    proc = pytest_gate(tmp_path / "root", scenario, policy_file(tmp_path), *extra)
    assert proc.returncode == code, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "promotion gate" in proc.stdout and "GATE: " in proc.stdout
    doc = json.loads((tmp_path / "root" / "reports" / "gate.json").read_text())
    assert doc["exit_code"] == code
    if scenario == "bad":
        [f] = doc["blocking_failures"]
        assert f["failure_class"] == "product" and "com.example.Telemetry" in f["message"]


def test_pytest_gate_bad_policy_exits_3(tmp_path: Path) -> None:
    bad = tmp_path / "gate.yaml"
    bad.write_text("quarantine: [{test: x}]\n")
    proc = pytest_gate(tmp_path / "root", "good", bad)
    assert proc.returncode == 3
    assert f"file {bad}, field quarantine.0.reason" in proc.stdout


def test_without_gate_option_pytest_exit_status_is_untouched(tmp_path: Path) -> None:
    root = tmp_path / "root"
    copy_suites(root)
    proc = subprocess.run(pytest_argv(root, "-p", "hil_pytest.gate"), cwd=root, capture_output=True,
                          text=True,
                          env={**os.environ, "GATE_SCENARIO": "infra"}, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == 1  # a plain pytest failure (the DeviceUnreachable), not the gate's 2
    assert not (root / "reports" / "gate.json").exists()
