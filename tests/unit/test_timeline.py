"""The run's timeline: step and test lines written as the run goes, per-hub waits, critical path."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import pytest

from hil.report.timeline import KINDS, build, hub_table, kind_of, read_lines, summary, svg
from hil.steps import Step, add_listener, in_lane, remove_listener, step
from tests.unit.test_plugin import CONFTEST, INI, write_rack

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(("title", "explicit", "kind"), [
    ("lease hub-01", None, "lease"),
    ("hub hub-01: ensure ready", None, "ready"),
    ("hub hub-01: power cycle", None, "power"),
    ("deploy candidate {'a': '1'}", None, "deploy"),
    ("restore component set", None, "restore"),
    ("measure ssh_rtt", None, "sampling"),
    ("console default credentials", None, "console"),
    ("nmap TCP scan", None, "scan"),
    ("ssh: true", None, "ssh"),
    ("something new", None, "other"),
    ("ssh: true", "settle", "settle"),
    ("ssh: true", "no-such-kind", "ssh"),
])
def test_a_step_s_kind_comes_from_its_name_or_its_title(title: str, explicit: str | None, kind: str) -> None:
    assert kind_of(title, explicit) == kind


def _lines() -> list[dict[str, object]]:
    t = 1000.0
    test = "suites/x/test_a.py::test_one[hub-01]"
    other = "suites/x/test_a.py::test_two[hub-01]"
    return [
        {"type": "session", "worker": "main", "process_started": t, "session_started": t + 0.5},
        {"type": "session", "worker": "gw0", "process_started": t + 0.2, "session_started": t + 0.8},
        {"type": "test", "device": "hub-01", "nodeid": test, "when": "setup", "start": t + 1, "end": t + 3},
        {"type": "test", "device": "hub-01", "nodeid": test, "when": "call", "start": t + 3, "end": t + 9,
         "outcome": "failed"},
        {"type": "test", "device": "hub-01", "nodeid": test, "when": "teardown", "start": t + 9,
         "end": t + 10},
        {"type": "step", "device": "hub-01", "kind": "deploy", "title": "deploy candidate", "start": t + 1,
         "end": t + 3, "depth": 0, "nodeid": test, "when": "setup", "lane": "test"},
        {"type": "step", "device": "hub-01", "kind": "ssh", "title": "ssh: true", "start": t + 1.5,
         "end": t + 1.6, "depth": 1, "nodeid": test, "when": "setup", "lane": "test"},
        {"type": "step", "device": "hub-01", "kind": "sampling", "title": "measure", "start": t + 3,
         "end": t + 8, "depth": 0, "nodeid": test, "when": "call", "lane": "test"},
        {"type": "step", "device": "hub-01", "kind": "scan", "title": "nmap TCP scan", "start": t + 2,
         "end": t + 12, "depth": 0, "nodeid": None, "lane": "tcp_scan"},
        {"type": "test", "device": "hub-01", "nodeid": other, "when": "call", "start": t + 10, "end": t + 13},
        {"type": "test", "device": "hub-02", "nodeid": "suites/x/test_a.py::test_one[hub-02]", "when": "call",
         "start": t + 1.2, "end": t + 2},
    ]


def test_waits_per_test_count_only_outermost_steps_of_its_own_lane() -> None:
    run = build(_lines())
    hub = run.hubs["hub-01"]
    one = hub.tests[0]
    assert one.waits == {"deploy": 2.0, "sampling": 5.0}  # the nested ssh step is inside deploy
    assert one.outcome == "failed" and one.duration == 9.0 and one.unaccounted == pytest.approx(2.0)
    assert one.phases == {"setup": 2.0, "call": 6.0, "teardown": 1.0}
    assert hub.background_by_kind() == {"scan": 10.0}  # the background scan is not the test's wait
    assert hub.span == pytest.approx(12.0) and hub.busy == pytest.approx(12.0)


def test_the_critical_hub_ends_last_and_first_tests_count_from_the_controller_s_start() -> None:
    run = build(_lines())
    assert run.critical_hub() is run.hubs["hub-01"]
    assert run.first_test_after_start() == {"hub-01": 1.0, "hub-02": pytest.approx(1.2)}
    text = "\n".join(summary(run))
    assert "critical path: hub-01" in text and "first test on hub-02: 1.20 s" in text
    assert "background: scan 10.0" in text
    table = "\n".join(hub_table(run.hubs["hub-01"], run.origin))
    assert "test_a::test_one[hub-01]" in table and "sampling 5.0" in table and "tcp_scan" in table


def test_the_picture_is_svg_with_a_bar_per_test_and_a_legend() -> None:
    run = build(_lines())
    picture = svg(run.hubs["hub-01"], run.origin)
    assert picture.startswith("<svg") and picture.rstrip().endswith("</svg>")
    assert picture.count("<title>test_a::test_") >= 2 and all(k in picture for k in KINDS)


def test_cut_lines_are_skipped(tmp_path: Path) -> None:
    f = tmp_path / "timeline.jsonl"
    f.write_text(json.dumps(_lines()[2]) + "\n" + '{"type": "st', encoding="utf-8")
    assert len(read_lines(f)) == 1


def test_a_background_lane_names_its_steps_and_their_device() -> None:
    seen: list[Step] = []

    def listener(event: str, st: Step) -> None:
        if event == "stop":
            seen.append(st)

    def job() -> None:
        with in_lane("tcp_scan", device="hub-07"), step("nmap TCP scan"):
            pass

    add_listener(listener)
    try:
        t = threading.Thread(target=job)
        t.start()
        t.join()
        with step("ssh: true"):
            pass
    finally:
        remove_listener(listener)
    assert [(s.lane, s.device) for s in seen] == [("tcp_scan", "hub-07"), ("main", None)]


def test_the_plugin_writes_the_timeline_as_the_run_goes_and_a_page_per_hub(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(CONFTEST.replace('"hil_pytest.outcomes"]',
                                           '"hil_pytest.outcomes", "hil_pytest.timeline"]'))
    pytester.makeini(INI)
    monkeypatch.setenv("HIL_REPORTS_DIR", str(pytester.path / "reports"))
    monkeypatch.setenv("HIL_RUN_ID", "t1")
    inv = write_rack(pytester.path)
    pytester.makepyfile(textwrap.dedent("""\
        from hil.steps import step

        def test_x(_hil_device):
            with step("measure something"):
                pass
            with step("nmap TCP scan", device=None):
                pass
        """))
    res = pytester.runpytest("--devices", str(inv), "--device", "hub-a", "--alluredir",
                             str(pytester.path / "allure"))
    res.assert_outcomes(passed=1)
    lines = read_lines(pytester.path / "reports" / "run" / "t1" / "timeline.jsonl")
    steps = [d for d in lines if d["type"] == "step" and d.get("when") == "call"]
    assert [(d["title"], d["kind"], d["device"]) for d in steps] == [
        ("measure something", "sampling", "hub-a"), ("nmap TCP scan", "scan", "hub-a")]
    assert {d["when"] for d in lines if d["type"] == "test"} == {"setup", "call", "teardown"}
    assert any(d["type"] == "session" and d["worker"] == "main" for d in lines)
    results = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    page = next(r for r in results if r["name"] == "timeline hub-a")
    assert {a["type"] for a in page["attachments"]} == {"image/svg+xml", "text/plain"}
    assert (pytester.path / "reports" / "run" / "t1" / "critical-path.txt").is_file()
