"""CI cancels a job with SIGTERM: the run stops, the hub is put back as it was within the grace
period, the lease is free, the result is inconclusive, and the next run starts cleanly.

Three ways in: a gated pytest run (SIGTERM to its process group, as GitLab and Jenkins do), the
same under xdist (SIGTERM to the controller only: it forwards to its worker), and `hil deploy`.
Each is signalled right after `deployment create`, i.e. with the candidate half-deployed.
Times are printed (`-s`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hil.deploy.snapshot import component_set, read_saved
from hil.drivers.greengrass import Greengrass
from hil.drivers.ssh import SshConnection
from hil.inventory import load_inventory
from hil.lease import make_lease_store
from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]
INVENTORY = lab_inventory_path()
INV = load_inventory(INVENTORY)
HIL = str(Path(sys.executable).with_name("hil"))
GOOD = ROOT / "candidates" / "good"
GRACE = INV.timeouts.cancel_grace
SLACK_S = 5.0
"""Process start-up and exit on two shared cores, on top of the grace period."""

MARK_DEPLOYING = textwrap.dedent("""
    import os, time
    import pytest
    from hil.steps import add_listener

    def _mark(event, st):
        if event == "stop" and st.title == "greengrass: deployment create":
            open(os.environ["MARKER"], "w").close()

    @pytest.fixture(scope="session", autouse=True)
    def _listen():
        add_listener(_mark)

    def test_with_candidate(deployed):
        time.sleep(120)
    """)


def hub_state(name: str) -> tuple[dict[str, str], bool]:
    """(deployed components, whether a snapshot is saved on the hub), read under the hub's lease."""
    lease = make_lease_store(INV).acquire(name, timeout=INV.timeouts.lease)
    try:
        with SshConnection(name, INV.devices[name].ssh, INV.timeouts) as ssh:
            return component_set(Greengrass(ssh).component_list()), read_saved(ssh) is not None
    finally:
        lease.release()


def lease_is_free(name: str) -> bool:
    lease = make_lease_store(INV).try_acquire(name)
    if lease is None:
        return False
    lease.release()
    return True


def pytest_child(folder: Path, source: str, *args: str,
                 env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (folder / "test_dut.py").write_text(source)
    run_env = {**os.environ, "HIL_REPORTS_DIR": str(folder / "reports"), "HIL_RUN_ID": "cancel",
               "PYTHONPATH": str(ROOT), **(env or {})}
    run_env.pop("HIL_CANDIDATE", None)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "--rootdir", str(folder),
            "--devices", str(INVENTORY), *args, str(folder / "test_dut.py")]
    return subprocess.Popen(argv, cwd=folder, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen[str], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the run ended before {what}:\n{out}")
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.1)


def stop_and_time(proc: subprocess.Popen[str], *, group: bool) -> tuple[float, str]:
    t0 = time.monotonic()
    if group:
        os.killpg(proc.pid, signal.SIGTERM)  # GitLab / Jenkins: the job's whole process group
    else:
        os.kill(proc.pid, signal.SIGTERM)  # only the main process: it must pass it on
    out, _ = proc.communicate(timeout=GRACE + 60)
    return time.monotonic() - t0, out


def check_next_run_starts_cleanly(folder: Path, name: str) -> None:
    nxt = pytest_child(folder, textwrap.dedent("""
        import hil_pytest.devices as fd

        def test_next(hub, request):
            pool = fd.device_session(request.config).pool
            assert pool.restored_on_acquire == {}, "the cancelled run left something behind"
        """), "--device", name)
    out, _ = nxt.communicate(timeout=600)
    assert nxt.returncode == 0, out


@pytest.mark.parametrize("xdist", [False, True], ids=["single", "xdist"])
def test_sigterm_mid_deployment_restores_the_hub_and_the_gate_is_inconclusive(tmp_path: Path,
                                                                               xdist: bool) -> None:
    name = "hub-02" if xdist else "hub-01"
    before, saved = hub_state(name)
    assert not saved
    marker = tmp_path / "deploying"
    gate = tmp_path / "gate.json"
    child = pytest_child(tmp_path / "run", MARK_DEPLOYING, "--device", name, "--candidate", str(GOOD),
                         "--gate", "--gate-out", str(gate), "--gate-policy", str(ROOT / "gate.yaml"),
                         *(["-n", "1"] if xdist else []),
                         env={"MARKER": str(marker)})
    wait_for(marker, child, "`deployment create`")
    took, out = stop_and_time(child, group=not xdist)
    freed = lease_is_free(name)
    print(f"\n[cancel] pytest{' -n 1' if xdist else ''}: SIGTERM mid-deployment -> exit {child.returncode} "
          f"after {took:.1f}s (grace {GRACE:g}s)")
    assert took <= GRACE + SLACK_S, out
    assert child.returncode == 2, out  # --gate: inconclusive
    decision = json.loads(gate.read_text())
    assert decision["decision"] == "inconclusive", decision
    assert freed, "the lease was still held after the run ended"
    after, saved = hub_state(name)
    assert after == before and not saved, (after, before, out)
    check_next_run_starts_cleanly(tmp_path / "next", name)


def test_sigterm_to_hil_deploy_mid_deployment_restores_the_hub(tmp_path: Path) -> None:
    name = "hub-03"
    before, saved = hub_state(name)
    assert not saved
    evidence = tmp_path / "evidence"
    proc = subprocess.Popen([HIL, "deploy", name, "--candidate", str(GOOD), "--devices", str(INVENTORY),
                             "--evidence", str(evidence)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    created = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "deployment create" in line and "✓" in line:
                created.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert created.wait(300), "".join(lines)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=GRACE + 60)
    took = time.monotonic() - t0
    reader.join(10)
    out = "".join(lines)
    freed = lease_is_free(name)
    print(f"\n[cancel] hil deploy: SIGTERM mid-deployment -> exit {proc.returncode} after {took:.1f}s "
          f"(grace {GRACE:g}s)")
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert took <= GRACE + SLACK_S, out
    assert "cancelled by SIGTERM" in out and "restored the previous component set" in out, out
    [result] = evidence.rglob("result.json")
    doc = json.loads(result.read_text())
    assert doc["outcome"] == "inconclusive" and doc["restored"] is True, doc
    assert freed
    after, saved = hub_state(name)
    assert after == before and not saved, (after, before, out)
    check_next_run_starts_cleanly(tmp_path / "next", name)
