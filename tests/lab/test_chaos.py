"""Chaos against the virtual lab: power loss mid-deployment, cable pull, sshd killed, hang,
pytest SIGKILLed, concurrent runs, stale fencing tokens, results of a killed run.

Each scenario is a real child pytest session (the harness's plugins, real leases) or real
harness calls. Faults are injected by the child under the lease it holds, and every
scenario's teardown takes the hub's lease and puts it back (fault cleared, power on,
left-over candidate rolled back). Per-scenario times are printed (`-s`).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil.deploy.candidate import load_candidate
from hil.deploy.deployment import Deployment
from hil.deploy.restore import restore_snapshot
from hil.deploy.snapshot import component_set, read_saved
from hil.drivers.greengrass import Greengrass
from hil.drivers.power import make_power
from hil.drivers.ssh import SshConnection
from hil.errors import HilError
from hil.inventory import load_inventory
from hil.lease import LeaseLost, make_lease_store
from hil.lease.fencing import check_fence, write_fence
from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = lab_inventory_path()
if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]
INV = load_inventory(INVENTORY)
HIL = str(Path(sys.executable).with_name("hil"))
GOOD = ROOT / "candidates" / "good"
LEASE_TIMEOUT = 600.0
T0: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _timed(request: pytest.FixtureRequest) -> Iterator[None]:
    t = time.monotonic()
    yield
    print(f"\n[chaos] {request.node.name}: {time.monotonic() - t:.1f} s")


# -- helpers ------------------------------------------------------------------------------------

def components(name: str) -> dict[str, str]:
    """The hub's deployed component set, read under its lease."""
    lease = make_lease_store(INV).acquire(name, timeout=LEASE_TIMEOUT)
    try:
        with SshConnection(name, INV.devices[name].ssh, INV.timeouts) as ssh:
            return component_set(Greengrass(ssh).component_list())
    finally:
        lease.release()


def put_back(name: str) -> None:
    """Teardown of every scenario: under the lease, power on, fault cleared, candidate rolled back."""
    lease = make_lease_store(INV).acquire(name, timeout=LEASE_TIMEOUT)
    try:
        make_power(INV.devices[name], INV.timeouts).on()
        subprocess.run([HIL, "lab", "fault", name, "clear"], cwd=ROOT, capture_output=True, timeout=120,
                       check=False)
        deadline = time.monotonic() + INV.timeouts.boot
        while True:
            try:
                with SshConnection(name, INV.devices[name].ssh, INV.timeouts) as ssh:
                    snap = read_saved(ssh)
                    if snap is not None:
                        r = restore_snapshot(ssh, Greengrass(ssh), snap, timeouts=INV.timeouts)
                        assert r.ok, f"{name}: teardown rollback failed: {r.problem}"
                return
            except HilError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    finally:
        lease.release()


@pytest.fixture
def restored() -> Iterator[list[str]]:
    """Hubs named here are put back at teardown."""
    names: list[str] = []
    yield names
    for n in names:
        put_back(n)


@dataclass
class ChildRun:
    folder: Path
    proc: subprocess.Popen[str]

    @property
    def run_dir(self) -> Path:
        return self.folder / "reports" / "run" / "chaos"

    def rows(self) -> list[dict[str, Any]]:
        path = self.run_dir / "results.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def wait(self, timeout: float = 600) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        return out

    def by_test(self) -> dict[str, dict[str, Any]]:
        return {r["nodeid"].split("::")[-1]: r for r in self.rows()}


def start_child(folder: Path, tests: str | None, *args: str, env: dict[str, str] | None = None,
                targets: list[str] | None = None) -> ChildRun:
    """A child pytest session with the harness's plugins (the root conftest) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    if tests is not None:
        (folder / "test_dut.py").write_text(CHILD_HELPERS + textwrap.dedent(tests))
    run_env = {**os.environ, "HIL_REPORTS_DIR": str(folder / "reports"), "HIL_RUN_ID": "chaos",
               "HIL_BIN": HIL, "PYTHONPATH": str(ROOT), **(env or {})}
    run_env.pop("HIL_CANDIDATE", None)
    # -p no:randomly: the child's tests are steps of one scenario, in file order
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-rs",
            "--rootdir", str(folder),
            "--devices", str(INVENTORY), "--lease-timeout", str(LEASE_TIMEOUT), *args,
            *(targets or [str(folder / "test_dut.py")])]
    proc = subprocess.Popen(argv, cwd=folder, env=run_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return ChildRun(folder, proc)


# Child-side helpers, pasted into child test modules.
CHILD_HELPERS = """
import json, os, subprocess, threading, time
import pytest
from hil.errors import InfrastructureError

def fault(hub, *what):
    subprocess.run([os.environ["HIL_BIN"], "lab", "fault", hub, *what], check=True, capture_output=True,
                   timeout=120)

def history(hub):
    with open(os.environ["HISTORY"], "a") as f:
        f.write(json.dumps([[str(a), str(b), why] for a, b, why in hub.history]) + "\\n")

def lose(hub, argv=("true",)):
    try:
        hub.ssh.run(list(argv), timeout=5)
    except InfrastructureError:
        hub.mark_suspect("the test lost its hub")  # the next test's hub fixture recovers it
        raise
"""


# -- fencing ------------------------------------------------------------------------------------

def test_holder_with_a_stale_fencing_token_is_refused(restored: list[str]) -> None:
    """A's lease is force-released and B takes the hub: A's deployment stops before touching it."""
    name = "hub-01"
    restored.append(name)
    store = make_lease_store(INV)
    a = store.acquire(name, timeout=LEASE_TIMEOUT)
    b = None
    try:
        with SshConnection(name, INV.devices[name].ssh, INV.timeouts) as ssh:
            write_fence(ssh, a.fencing_token)
            before = component_set(Greengrass(ssh).component_list())
            store.force_release(name)  # an operator, or A's lease expiring while it stalled
            assert a.lost
            b = store.acquire(name, timeout=10)
            assert b.fencing_token > a.fencing_token
            write_fence(ssh, b.fencing_token)  # B's first destructive step
            d = Deployment(ssh, ssh, load_candidate(GOOD), greengrass=Greengrass(ssh), timeouts=INV.timeouts,
                           fence=lambda: check_fence(ssh, a.fencing_token))
            with pytest.raises(LeaseLost, match="newer than ours"):
                d.deploy()
            with pytest.raises(LeaseLost):
                write_fence(ssh, a.fencing_token)  # nor can A push its old token back
            assert read_saved(ssh) is None, "A saved a snapshot over B's hub"
            assert component_set(Greengrass(ssh).component_list()) == before
            check_fence(ssh, b.fencing_token)  # B is untouched
    finally:
        if b is not None:
            b.release()
        a.release()


# -- power, cable, sshd, hang ------------------------------------------------------------------

def test_power_loss_during_deployment_recovers_and_restores(tmp_path: Path, restored: list[str]) -> None:
    name = "hub-02"
    restored.append(name)
    before = components(name)
    child = start_child(tmp_path, """
        from hil.drivers.power import make_power
        from hil.steps import add_listener
        import hil_pytest.devices as fd

        @pytest.fixture(scope="module", autouse=True)
        def power_cut(request):
            ds = fd.device_session(request.config)
            dev = ds.inventory.devices[os.environ["VICTIM"]]
            pdu = make_power(dev, ds.inventory.timeouts)
            done = []
            def cut(event, st):
                if event == "stop" and st.title == "greengrass: deployment create" and not done:
                    done.append(time.time())
                    open(os.environ["CUT"], "w").close()
                    pdu.off()  # mid-deployment: the nucleus is applying it
                    threading.Timer(3.0, pdu.on).start()
            add_listener(cut)
            yield
            assert done, "the deployment never reached `deployment create`"

        def test_1_uses_candidate(deployed):
            assert deployed.result.ok

        def test_2_hub_is_back(hub):
            assert hub.ssh.run(["true"]).ok
        """, "--device", name, "--candidate", str(GOOD), env={"VICTIM": name, "CUT": str(tmp_path / "cut")})
    out = child.wait()
    by = child.by_test()
    first = by[f"test_1_uses_candidate[{name}]"]
    assert (tmp_path / "cut").is_file(), f"the power was never cut: {out}"
    assert by[f"test_2_hub_is_back[{name}]"]["outcome"] == "passed", out
    # Three honest outcomes: the nucleus resumed the deployment after the boot (passed, and the
    # fixture's teardown restored the hub), or infrastructure with the hub recovered and restored
    # at once, or infrastructure with the hub reported as needing attention.
    if first["outcome"] == "passed":
        outcome = "deployment survived the power loss; restored at teardown"
    else:
        assert first["failure_class"] == "infrastructure", out
        assert "previous component set restored" in first["message"] or "needs attention" in first["message"]
        outcome = first["message"]
    print(f"\n[chaos] power loss mid-deployment: {outcome}")
    if "needs attention" in outcome:
        put_back(name)  # what a person would do: `hil rollback`
    assert components(name) == before


def test_cable_pull_during_a_test_is_infrastructure_and_later_tests_pass(tmp_path: Path,
                                                                         restored: list[str]) -> None:
    name = "hub-03"
    restored.append(name)
    child = start_child(tmp_path, """
        def test_1_cable_pulled_half_way(hub):
            assert hub.ssh.run(["true"]).ok  # first half: fine
            threading.Timer(8.0, fault, (hub.name, "cable-plug")).start()
            fault(hub.name, "cable-pull")
            lose(hub, ["sleep", "1"])

        def test_2_recovered(hub):
            history(hub)
            assert hub.ssh.run(["hostname"]).stdout.strip() == hub.name

        def test_3_still_fine(hub):
            assert hub.channels.shell().run(["true"]).ok
        """, "--device", name, env={"HISTORY": str(tmp_path / "history.jsonl")})
    out = child.wait()
    by = child.by_test()
    assert by[f"test_1_cable_pulled_half_way[{name}]"]["failure_class"] == "infrastructure", out
    assert by[f"test_2_recovered[{name}]"]["outcome"] == "passed", out
    assert by[f"test_3_still_fine[{name}]"]["outcome"] == "passed", out


def _recovery_history(tmp_path: Path, name: str, what: str) -> tuple[list[list[str]], str]:
    child = start_child(tmp_path, f"""
        def test_1_fault(hub):
            assert hub.ssh.run(["true"]).ok
            fault(hub.name, "{what}")
            lose(hub)

        def test_2_recovered(hub):
            history(hub)
            assert hub.ssh.run(["true"]).ok

        @pytest.fixture(autouse=True, scope="module")
        def clear_fault(_hil_device):
            yield
            fault(_hil_device.name, "clear")  # under this session's lease
        """, "--device", name, env={"HISTORY": str(tmp_path / "history.jsonl")})
    out = child.wait()
    by = child.by_test()
    assert by[f"test_1_fault[{name}]"]["failure_class"] == "infrastructure", out
    assert by[f"test_2_recovered[{name}]"]["outcome"] == "passed", out
    [hist] = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    return hist, out


def test_sshd_killed_is_recovered_over_the_console(tmp_path: Path, restored: list[str]) -> None:
    restored.append("hub-01")
    hist, _out = _recovery_history(tmp_path, "hub-01", "kill-sshd")
    whys = [why for _a, _b, why in hist]
    assert "sshd restarted over the console" in whys, hist
    assert not any(b == "off" for _a, b, _w in hist), f"power path used: {hist}"


def test_hung_hub_is_power_cycled(tmp_path: Path, restored: list[str]) -> None:
    restored.append("hub-02")
    hist, _out = _recovery_history(tmp_path, "hub-02", "hang")
    whys = [why for _a, _b, why in hist]
    assert "power off" in whys and "SSH answers after the power cycle" in whys, hist
    assert "sshd restarted over the console" not in whys, hist


# -- SIGKILL mid-run: leases, teardown-on-acquire, results ------------------------------------

KILLED = "hub-03"


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A child run SIGKILLed inside the deployed fixture (after `deployment create`)."""
    tmp = tmp_path_factory.mktemp("killed")
    before = components(KILLED)
    marker = tmp / "deploying"
    child = start_child(tmp, """
        from hil.steps import add_listener

        def mark(event, st):
            if event == "stop" and st.title == "greengrass: deployment create":
                open(os.environ["MARKER"], "w").write(str(time.time()))
                time.sleep(60)  # the parent kills us here

        def test_0_console(hub, console):
            from hil.probes.console import console_logout
            console.login()
            try:
                assert console.run(["true"]).ok
            finally:
                console_logout(console)

        def test_1_ssh(hub):
            assert hub.ssh.run(["true"]).ok

        def test_2_deployed(deployed):
            pass

        @pytest.fixture(scope="session", autouse=True)
        def listen():
            add_listener(mark)
        """, "--device", KILLED, "--candidate", str(GOOD), "--alluredir", str(tmp / "allure-results"),
        env={"MARKER": str(marker)})
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert child.proc.poll() is None, child.wait()
        assert time.monotonic() < deadline, "the child never reached `deployment create`"
        time.sleep(0.2)
    os.killpg(child.proc.pid, signal.SIGKILL)
    child.proc.wait(timeout=30)
    killed_at = time.monotonic()
    lease = make_lease_store(INV).try_acquire(KILLED)
    freed_after = time.monotonic() - killed_at
    info: dict[str, Any] = {"child": child, "before": before, "freed_after": freed_after,
                            "lease_free": lease is not None, "tmp": tmp}
    if lease is not None:
        with SshConnection(KILLED, INV.devices[KILLED].ssh, INV.timeouts) as ssh:
            info["snapshot"] = read_saved(ssh)
        lease.release()
        # The next run comes at once, here: a random test order could otherwise put another test
        # that leases this hub (and restores what it finds) between the kill and the next run.
        nxt = start_child(tmp / "next", """
            import json, os
            import hil_pytest.devices as fd

            def test_next(hub, request):
                pool = fd.device_session(request.config).pool
                snap = pool.restored_on_acquire.get(hub.name)
                with open(os.environ["RESTORED"], "w") as f:
                    json.dump(snap.run_id if snap else None, f)
            """, "--device", KILLED, env={"RESTORED": str(tmp / "restored.json")})
        info["next_out"] = nxt.wait()
        info["next_outcome"] = nxt.by_test().get(f"test_next[{KILLED}]", {}).get("outcome")
        restored = tmp / "restored.json"
        info["restored"] = json.loads(restored.read_text()) if restored.is_file() else "no record"
        after = make_lease_store(INV).acquire(KILLED, timeout=LEASE_TIMEOUT)
        try:
            with SshConnection(KILLED, INV.devices[KILLED].ssh, INV.timeouts) as ssh:
                info["snapshot_after"] = read_saved(ssh)
                info["after"] = component_set(Greengrass(ssh).component_list())
        finally:
            after.release()
    try:
        yield info
    finally:
        put_back(KILLED)


def test_sigkill_frees_the_lease_and_the_next_run_restores_the_hub(killed_run: dict[str, Any]) -> None:
    assert killed_run["lease_free"], "lease still held after the holder was SIGKILLed"
    assert killed_run["freed_after"] < 2.0
    snap = killed_run["snapshot"]
    assert snap is not None, "the killed run left no snapshot: nothing was half-deployed"
    assert snap.components == killed_run["before"]
    out = killed_run["next_out"]
    assert killed_run["next_outcome"] == "passed", out
    assert killed_run["restored"] == snap.run_id, out
    assert killed_run["snapshot_after"] is None
    assert killed_run["after"] == killed_run["before"]


def test_killed_run_leaves_results_readable_and_the_gate_inconclusive(killed_run: dict[str, Any]) -> None:
    child: ChildRun = killed_run["child"]
    rows = child.rows()
    done = {r["nodeid"].split("::")[-1]: r["outcome"] for r in rows}
    assert done == {f"test_0_console[{KILLED}]": "passed", f"test_1_ssh[{KILLED}]": "passed"}, rows
    run = json.loads((child.run_dir / "run.json").read_text())
    assert run["finished"] is False
    allure = [json.loads(p.read_text()) for p in (killed_run["tmp"] / "allure-results").glob("*-result.json")]
    assert {a["status"] for a in allure if a["name"].startswith(("test_0", "test_1"))} == {"passed"}, allure
    capture = child.run_dir / "console" / f"{KILLED}.console.log"
    assert "login" in capture.read_text(errors="replace").lower()
    gate = subprocess.run([HIL, "gate", "--results", str(child.run_dir), "--out",
                           str(killed_run["tmp"] / "gate.json"), "--devices", str(INVENTORY)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert gate.returncode == 2, gate.stdout + gate.stderr
    assert "inconclusive" in (killed_run["tmp"] / "gate.json").read_text()


# -- concurrent runs ------------------------------------------------------------------------------

SPANS_PLUGIN = """
import json, os, time
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    t0 = time.time()
    try:
        return (yield)
    finally:
        hub = getattr(item, "funcargs", {}).get("hub")
        if hub is not None:
            with open(os.environ["SPANS"], "a") as f:
                f.write(json.dumps({"run": os.environ["RUN"], "hub": hub.name, "test": item.nodeid,
                                    "start": t0, "end": time.time()}) + "\\n")
"""


@pytest.mark.parametrize("runs", [2, 3])
def test_simultaneous_runs_share_three_hubs_one_at_a_time(tmp_path: Path, runs: int) -> None:
    (tmp_path / "chaos_spans.py").write_text(SPANS_PLUGIN)
    spans = tmp_path / "spans.jsonl"
    suite = str(ROOT / "bench" / "smoke_suite")
    children = [start_child(tmp_path / f"run{i}", None, "-p", "chaos_spans", "--device-tag", "hardened",
                            env={"SPANS": str(spans), "RUN": str(i),
                                 "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}, targets=[suite])
                for i in range(runs)]
    outs = [c.wait() for c in children]
    expected = None
    for c, out in zip(children, outs, strict=True):
        ids = [r["nodeid"] for r in c.rows()]
        assert len(ids) == len(set(ids)), f"a test ran twice: {out}"
        assert {r["outcome"] for r in c.rows()} == {"passed"}, out
        expected = expected or set(ids)
        assert set(ids) == expected and {r["device"] for r in c.rows()} == {"hub-01", "hub-02", "hub-03"}
    rows = [json.loads(x) for x in spans.read_text().splitlines()]
    blocks: dict[tuple[str, str], tuple[float, float]] = {}
    for r in rows:  # one block per (run, hub): the run holds the hub from first to last test
        a, b = blocks.get((r["run"], r["hub"]), (r["start"], r["end"]))
        blocks[(r["run"], r["hub"])] = (min(a, r["start"]), max(b, r["end"]))
    for hub in ("hub-01", "hub-02", "hub-03"):
        spans_ = sorted(v for (_run, h), v in blocks.items() if h == hub)
        assert len(spans_) == runs
        for (_a0, a1), (b0, _b1) in itertools.pairwise(spans_):
            assert a1 <= b0, f"{hub} used by two runs at once: {spans_}"
