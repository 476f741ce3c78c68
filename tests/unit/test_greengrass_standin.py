"""The deployment logic against the lab's nucleus stand-in, run as a local process on a temp root.

Not a mock: the stand-in (lab/hil_lab/hub/rootfs/opt/hil-lab/nucleus) runs lifecycle scripts for
real and prints the CLI formats of the facts document. It is started as a program (the
harness never imports lab). Docker-free components only; the docker-compose example
needs the virtual lab (tests/lab).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from hil.deploy.candidate import Candidate, load_candidate
from hil.deploy.deployment import Deployment
from hil.deploy.recipe import file_digest
from hil.drivers.base import CommandResult
from hil.drivers.greengrass import ComponentState, DeploymentState, Greengrass
from hil.errors import CommandTimeout, FailureClass
from hil.timeouts import Timeouts

REPO = Path(__file__).resolve().parents[2]
NUCLEUS = REPO / "lab/hil_lab/hub/rootfs/opt/hil-lab/nucleus"
CANDIDATES = REPO / "candidates"
TIMEOUTS = Timeouts(deployment=60, settle=2)
HELLO = "com.example.Hello"

pytestmark = pytest.mark.skipif(not (NUCLEUS / "ggnucleus").is_dir(), reason="nucleus stand-in not present")


class LocalShell:
    """Shell + file transfer on this machine (the stand-in's CLI needs root, as the real one)."""

    device = "local-nucleus"

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None) -> CommandResult:
        t = time.perf_counter()
        try:
            p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=stdin,
                               check=False)
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"{argv} timed out") from None
        return CommandResult(tuple(argv), p.returncode, p.stdout, p.stderr, time.perf_counter() - t, "local")

    def put(self, local: Path, remote: str, *, sudo: bool = False) -> None:
        shutil.copy(local, remote)

    def get(self, remote: str, local: Path, *, sudo: bool = False) -> None:
        shutil.copy(remote, local)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the nucleus stand-in runs lifecycle scripts as root")
    r = tmp_path_factory.mktemp("ggroot")
    env = {**os.environ, "HIL_NUCLEUS_POSIX_USER": "root:root"}  # no system user created on this host
    proc = subprocess.Popen([sys.executable, "-u", "-m", "ggnucleus.daemon", str(r)], cwd=NUCLEUS, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    cli = r / "bin/greengrass-cli"
    while True:
        if cli.exists() and subprocess.run([str(cli), "component", "list"], capture_output=True,
                                           check=False).returncode == 0:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("nucleus stand-in did not answer `component list` within 20s")
        time.sleep(0.2)
    yield r
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def hello(tmp: Path, version: str, run: str) -> Candidate:
    art = tmp / f"artifacts/{HELLO}/{version}"
    art.mkdir(parents=True, exist_ok=True)
    (art / "hello.txt").write_text(version)
    (tmp / "recipes").mkdir(parents=True, exist_ok=True)
    (tmp / f"recipes/{HELLO}-{version}.yaml").write_text(
        f"RecipeFormatVersion: '2020-01-25'\nComponentName: {HELLO}\nComponentVersion: '{version}'\n"
        f"Manifests:\n  - Platform: {{os: linux}}\n    Lifecycle:\n      Run: {run}\n"
        f"    Artifacts:\n      - URI: s3://bucket/hello.txt\n"
        f"        Digest: {file_digest(art / 'hello.txt')}\n        Algorithm: SHA-256\n")
    return load_candidate(tmp)


def deployment(root: Path, cand: Candidate, run_id: str, staging: Path, stack: bool = False) -> Deployment:
    shell = LocalShell()
    gg = Greengrass(shell, root=str(root), poll_interval=0.3)
    return Deployment(shell, shell, cand, greengrass=gg, timeouts=TIMEOUTS, staging_root=str(staging),
                      run_id=run_id, poll=0.3, stack=stack)


def test_bad_candidate_fails_broken_with_logs_and_is_removed(root: Path, tmp_path: Path) -> None:
    d = deployment(root, load_candidate(CANDIDATES / "bad"), "bad", tmp_path / "staging")
    res = d.deploy()
    assert not res.ok and res.failure_class is FailureClass.PRODUCT
    assert res.status is not None and res.status.status is DeploymentState.FAILED
    assert res.status.failure_cause == "Service com.hbs.hub.Broken in broken state after deployment"
    assert res.components == {"com.hbs.hub.Broken": ComponentState.BROKEN}
    assert "cannot start, exiting 1" in res.attachments["com.hbs.hub.Broken.log"]
    assert "service-set-state" in res.attachments["greengrass.log"]
    r = d.restore()
    assert r.ok, r.problem
    assert "com.hbs.hub.Broken" not in {c.name for c in d.gg.component_list()}
    assert not (tmp_path / "staging/bad").exists()


def test_upgrade_and_rollback_to_the_earlier_version(root: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    first = deployment(root, hello(tmp_path / "v1", "1.0.0", "sleep 600"), "v1", staging)
    assert first.deploy().ok
    up = deployment(root, hello(tmp_path / "v2", "1.1.0", "sleep 600"), "v2", staging, stack=True)
    res = up.deploy()
    assert res.ok, res.problem
    assert up.gg.component(HELLO).version == "1.1.0"
    r = up.restore()
    assert r.ok, r.problem
    assert r.plan.merge == {HELLO: "1.0.0"}
    back = up.gg.component(HELLO)
    assert (back.version, back.state) == ("1.0.0", ComponentState.RUNNING)
    assert first.restore().ok
    assert HELLO not in {c.name for c in up.gg.component_list()}


def test_run_component_that_crashes_after_success_is_caught_by_settle(root: Path, tmp_path: Path) -> None:
    d = deployment(root, hello(tmp_path / "c", "2.0.0", "sleep 1; exit 3"), "crash", tmp_path / "staging")
    res = d.deploy()
    assert not res.ok and res.failure_class is FailureClass.PRODUCT
    # the nucleus reported success; only watching afterwards shows the crash
    assert res.status is not None and res.status.status is DeploymentState.SUCCEEDED
    assert res.problem is not None and re.search(r"went (ERRORED|BROKEN)", res.problem)
    assert d.restore().ok
