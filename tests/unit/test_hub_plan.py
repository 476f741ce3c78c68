"""Which tests of a hub run when (hil_pytest.plan) and the hub's background lane (hil.lane)."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

import pytest

from hil.lane import Lane
from tests.unit.test_plugin import CONFTEST, INI, write_rack

pytest_plugins = ["pytester"]


# -- the lane --------------------------------------------------------------------------------------

def test_jobs_run_in_order_beside_the_caller_and_hand_back_values_and_errors() -> None:
    lane = Lane("hub-01", "console lane")
    seen: list[str] = []

    def boom() -> None:
        raise ValueError("no console")

    lane.submit("a", lambda: seen.append("a") or 1)
    lane.submit("b", boom)
    lane.submit("a", lambda: seen.append("again") or 2)  # a key is gathered once
    assert lane.result("a", lambda: 99) == 1
    with pytest.raises(ValueError, match="no console"):
        lane.result("b", lambda: None)
    assert lane.result("never submitted", lambda: "inline") == "inline"
    lane.close()
    assert seen == ["a"]


def test_quiet_waits_for_the_running_step_and_holds_the_lane_until_it_ends() -> None:
    lane = Lane("hub-01", "console lane")
    log: list[tuple[str, float]] = []
    step_done = threading.Event()

    def job() -> None:
        time.sleep(0.2)  # a step that loads the hub
        log.append(("step 1 done", time.monotonic()))
        step_done.set()
        lane.checkpoint()
        log.append(("step 2", time.monotonic()))

    lane.submit("job", job)
    time.sleep(0.05)
    with lane.quiet():
        assert step_done.is_set()  # quiet began only once the step was over
        entered = time.monotonic()
        time.sleep(0.2)
        left = time.monotonic()
    lane.result("job", lambda: None)
    names = [n for n, _t in log]
    assert names == ["step 1 done", "step 2"]
    assert log[0][1] <= entered and log[1][1] >= left  # nothing of the lane ran inside the block


def test_an_idle_wait_lets_a_quiet_measurement_start_at_once() -> None:
    lane = Lane("hub-01", "console lane")
    waiting = threading.Event()
    after: list[float] = []

    def job() -> None:
        with lane.idle():  # login's fail delay: nothing loads the hub
            waiting.set()
            time.sleep(0.3)
        after.append(time.monotonic())

    lane.submit("job", job)
    waiting.wait(2)
    t0 = time.monotonic()
    with lane.quiet():
        assert time.monotonic() - t0 < 0.15  # did not wait for the fail delay
        time.sleep(0.4)
        left = time.monotonic()
    lane.result("job", lambda: None)
    assert after[0] >= left  # the job went on only after the measurement


# -- the plan ---------------------------------------------------------------------------------------

PLAN_TESTS = textwrap.dedent("""\
    import pytest

    @pytest.mark.hub_stage("console")
    def test_a_console(_hil_device):
        pass

    def test_b_bare(_hil_device):
        pass

    @pytest.mark.hub_stage("restart")
    def test_c_restart(_hil_device):
        pass

    @pytest.mark.hub_stage("restarted")
    def test_d_indifferent(_hil_device):
        pass

    @pytest.mark.hub_stage("power")
    def test_e_power(_hil_device):
        pass

    @pytest.mark.hub_stage("settled")
    def test_f_settled(_hil_device):
        pass

    def test_g_no_device():
        pass
    """)


PLAN_CONFTEST = CONFTEST.replace('"hil_pytest.outcomes"]', '"hil_pytest.outcomes", "hil_pytest.plan"]')


def test_each_hub_s_tests_run_by_stage(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(PLAN_CONFTEST)
    pytester.makeini(INI)
    monkeypatch.setenv("HIL_REPORTS_DIR", str(pytester.path / "reports"))
    inv: Path = write_rack(pytester.path)
    pytester.makepyfile(PLAN_TESTS)
    res = pytester.runpytest("--devices", str(inv), "--device", "hub-a", "--device", "hub-b",
                             "-p", "no:randomly", "--collect-only", "-q")
    ids = [ln.split("::")[1] for ln in res.stdout.lines if "::" in ln]
    for hub in ("hub-a", "hub-b"):
        order = [i.split("[")[0] for i in ids if i.endswith(f"[{hub}]")]
        assert order == ["test_e_power", "test_b_bare", "test_f_settled", "test_c_restart",
                         "test_d_indifferent", "test_a_console"], order
    assert "test_g_no_device" in ids


def test_an_unknown_stage_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PLAN_CONFTEST)
    pytester.makeini(INI)
    inv = write_rack(pytester.path)
    pytester.makepyfile("import pytest\n\n@pytest.mark.hub_stage('later')\ndef test_x(_hil_device):\n"
                        "    pass\n")
    res = pytester.runpytest("--devices", str(inv), "--device", "hub-a")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*hub_stage('later'): unknown stage; known: power, bare,*"])
