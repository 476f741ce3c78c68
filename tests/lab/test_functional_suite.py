"""The functional suite as a whole pytest run on the lab: good candidate on 3 hubs with -n 3,
the bad candidate failing as product with the component named, a broken candidate folder
refused before any hub is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]
HUBS = ["hub-01", "hub-02", "hub-03"]


def run_functional(tmp: Path, candidate: str, hubs: list[str], *extra: str
                   ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]], Path]:
    env = {**os.environ, "HIL_REPORTS_DIR": str(tmp / "reports"), "HIL_RUN_ID": "fn"}
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", "suites/functional",
            "--devices", str(lab_inventory_path()), "--candidate", candidate, *extra]
    for h in hubs:
        args += ["--device", h]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    run = tmp / "reports" / "run" / "fn"
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()] \
        if (run / "results.jsonl").exists() else []
    return proc, rows, run


def test_functional_suite_passes_on_three_hubs_in_parallel(tmp_path: Path) -> None:
    proc, rows, run = run_functional(tmp_path, "candidates/good", HUBS, "-n", "3")
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert {r["device"] for r in rows} == set(HUBS)
    assert rows and all(r["outcome"] == "passed" for r in rows), [r for r in rows if r["outcome"] != "passed"]
    meta = json.loads((run / "run.json").read_text())
    assert meta["finished"] is True and {d["name"] for d in meta["devices"]} == set(HUBS)
    assert meta["broken_devices"] == [] and len(meta["inventory_sha256"]) == 64
    cand = json.loads((run / "candidate.json").read_text())
    assert cand["components"] == {"com.hbs.hub.Container": "1.0.0"}
    assert all(str(d).startswith("sha256:") for d in cand["images"].values()), cand["images"]
    deployments = [json.loads(p.read_text()) for p in (run / "deployments").glob("*.json")]
    for d in deployments:
        print(f"{d['device']}: create->verified {d['durations']['create_to_verified']:.1f}s")


def test_functional_suite_fails_as_product_with_the_bad_candidate(tmp_path: Path) -> None:
    proc, rows, _run = run_functional(tmp_path, "candidates/bad", ["hub-01"])
    assert proc.returncode == 1, proc.stdout[-5000:]
    failed = [r for r in rows if r["outcome"] == "failed"]
    assert failed and len(failed) == len(rows)
    for r in failed:
        assert r["failure_class"] == "product", r
        assert "com.hbs.hub.Broken BROKEN" in r["message"], r["message"]


def test_a_broken_candidate_folder_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "cand"
    (bad / "recipes").mkdir(parents=True)
    (bad / "recipes" / "com.x.Y-1.0.0.yaml").write_text("ComponentName: com.x.Y\n")
    proc, rows, _run = run_functional(tmp_path, str(bad), ["hub-01"])
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "com.x.Y-1.0.0.yaml" in proc.stderr, proc.stderr
    assert rows == []
