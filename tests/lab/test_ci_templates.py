"""ci/gitlab-ci.yml as copied into a project, run by gitlab-ci-local against the virtual lab.

gitlab-ci-local (npm; tests/tools/gitlab-ci-local pins it) runs the file with the shell
executor and ``--shell-isolation``: every run starts from a fresh copy of the tracked
files (like a runner's clean workspace), restores and saves the job's ``cache:`` and
collects its ``artifacts:``. The project is a throwaway git repository outside the
checkout holding the tracked files, with the template copied to .gitlab-ci.yml.

Lean on purpose (about 40 s a run): the smoke suite on one hub, a policy that requires
only smoke. The lab plays a real rack (HIL_VIRTUAL_LAB=0, HIL_DEVICES = its inventory).
Two runs: the second report has a two-point trend, from the cache alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hil.inventory import Inventory
from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = lab_inventory_path()
TOOL_SPEC = ROOT / "tests" / "tools" / "gitlab-ci-local"
JOB = "hil-gate"
JOB_URL = "https://gitlab.example/hil/rack/-/jobs/4711"
RUN_TIMEOUT = 600
NPM_TIMEOUT = 300


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hil-harness"


@pytest.fixture(scope="module")
def gitlab_ci_local() -> Path:
    """gitlab-ci-local installed from the pinned lockfile (npm ci, no install scripts), cached by hash."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (gitlab-ci-local comes from the npm registry)")
    digest = hashlib.sha256(b"".join((TOOL_SPEC / f).read_bytes()
                                     for f in ("package.json", "package-lock.json"))).hexdigest()[:16]
    home = _cache_home() / f"gitlab-ci-local-{digest}"
    exe = home / "node_modules" / ".bin" / "gitlab-ci-local"
    if not exe.exists():
        home.mkdir(parents=True, exist_ok=True)
        for f in ("package.json", "package-lock.json"):
            shutil.copyfile(TOOL_SPEC / f, home / f)
        proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=home, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False)
        assert proc.returncode == 0 and exe.exists(), proc.stdout + proc.stderr
    return exe


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway git repository: the tracked files, ci/gitlab-ci.yml as its .gitlab-ci.yml."""
    repo = tmp_path_factory.mktemp("gitlab-project")
    # what a commit of this working tree would hold: tracked and new files, not ignored ones
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True,
                           timeout=60).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    shutil.copyfile(ROOT / "ci" / "gitlab-ci.yml", repo / ".gitlab-ci.yml")
    git = ["git", "-C", str(repo), "-c", "user.name=hil", "-c", "user.email=hil@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True, timeout=60)
    subprocess.run([*git, "add", "-A"], check=True, timeout=60)
    subprocess.run([*git, "commit", "-q", "-m", "project"], check=True, timeout=60)
    (repo.parent / "policy.yaml").write_text(textwrap.dedent("""\
        version: 1
        required_suites: [smoke]
        min_devices_per_model: {default: 1}
        min_healthy_devices: all
        infrastructure: requeue
        harness: requeue
        ledger: ledger.jsonl
        """))
    return repo


def _run(exe: Path, repo: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    base = {"HIL_CANDIDATE": "candidates/good", "HIL_VIRTUAL_LAB": "0", "HIL_DEVICES": str(INVENTORY),
            "HIL_SUITES": "suites/smoke", "HIL_WORKERS": "0", "HIL_PYTEST_ARGS": "--device hub-01",
            "HIL_GATE_POLICY": str(repo.parent / "policy.yaml"), "CI_JOB_URL": JOB_URL}
    argv = [str(exe), "--shell-isolation", "--no-color", JOB]
    for key, value in {**base, **variables}.items():
        argv += ["--variable", f"{key}={value}"]
    # the job's own environment: this machine's, as a runner's shell executor would have
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HIL_RUN", "HIL_REPORTS"))}
    return subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env,
                          check=False)


def _artifact(repo: Path, rel: str) -> Any:
    return json.loads((repo / ".gitlab-ci-local" / "artifacts" / JOB / rel).read_text())


pytestmark = [pytest.mark.lab]


def test_gitlab_template_runs_green_under_a_local_runner_and_keeps_the_trend(
        lab_inventory: Inventory, gitlab_ci_local: Path, project: Path) -> None:
    first = _run(gitlab_ci_local, project)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    assert "PASS  hil-gate" in first.stdout and "GATE: PROMOTE" in first.stdout
    cached = project / ".gitlab-ci-local" / "cache" / "hil-allure-history" / "reports" / "allure-report"
    assert (cached / "history/history-trend.json").is_file(), "no history cached\n" + first.stdout[-4000:]
    # nothing of the first run is left in the project itself: only the cache can carry history
    shutil.rmtree(project / "reports", ignore_errors=True)

    second = _run(gitlab_ci_local, project)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    assert "imported cache 'hil-allure-history'" in second.stdout
    trend = _artifact(project, "reports/allure-report/widgets/history-trend.json")
    assert len(trend) == 2 and all(t["data"]["passed"] >= 1 for t in trend)

    # the report states the verdict: title, executor entry (linking to the CI job), environment, a result
    gate = _artifact(project, "reports/gate.json")
    assert gate["decision"] == "promote"
    [entry] = _artifact(project, "reports/allure-report/widgets/executors.json")
    assert entry["buildUrl"] == JOB_URL and "PROMOTE: com.hbs.hub.Container 1.0.0" in entry["buildName"]
    assert entry["reportName"].startswith("HIL gate: PROMOTE")
    widgets = "reports/allure-report/widgets"
    env = {e["name"]: e["values"][0] for e in _artifact(project, f"{widgets}/environment.json")}
    assert env["gate.decision"] == "PROMOTE" and env["candidate"] == "com.hbs.hub.Container 1.0.0"
    suites = json.dumps(_artifact(project, "reports/allure-report/widgets/suites.json"))
    assert "promotion gate" in suites

    # the job's result is the gate's: a gate that cannot decide (no policy file) fails the job
    third = _run(gitlab_ci_local, project, HIL_GATE_POLICY=str(project.parent / "no-such-policy.yaml"))
    assert third.returncode != 0 and "FAIL  hil-gate" in third.stdout
    assert "hil-gate exit status 3" in third.stdout


def test_gitlab_template_without_a_candidate_fails_loudly(gitlab_ci_local: Path, project: Path) -> None:
    res = _run(gitlab_ci_local, project, HIL_CANDIDATE="build/candidate")
    assert res.returncode != 0
    assert "no candidate at 'build/candidate'" in res.stdout + res.stderr
    assert "python3 -m venv" not in res.stdout  # it stopped before doing anything else
