"""The installed plugin (entry point ``hil``): markers, no silent fixture clashes, testinfra's
``host`` never answering for a hub, and never green on a dead rack.

These run pytest in a subprocess with no conftest at all: what a user's repository gets
from ``pip install`` alone.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from test_plugin import write_rack

from hil.exitcodes import GateExit, RunExit
from hil.inventory import load_inventory
from hil.lease import make_lease_store

pytest_plugins = ["pytester"]


@pytest.fixture
def repo(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bare test repository: an inventory whose hubs are closed loopback ports, no conftest."""
    monkeypatch.setenv("HIL_REPORTS_DIR", str(pytester.path / "reports"))
    monkeypatch.setenv("HIL_RUN_ID", "entry")
    monkeypatch.delenv("HIL_DEVICES", raising=False)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:randomly\n")
    return write_rack(pytester.path)


def test_markers_are_registered_by_the_plugin(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makepyfile(textwrap.dedent("""\
        import pytest

        @pytest.mark.smoke
        @pytest.mark.security
        @pytest.mark.requires(model="pi4")
        @pytest.mark.needs_service("ssh")
        def test_marked():
            pass
        """))
    result = pytester.runpytest_subprocess("--strict-markers", "--devices", str(repo))
    result.assert_outcomes(passed=1)


def test_testinfra_host_never_answers_for_a_hub(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makepyfile("def test_on_which_machine(host):\n    assert host.file('/').is_directory\n")
    result = pytester.runpytest_subprocess("--devices", str(repo))
    assert result.ret != 0
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*'host' is testinfra's and would run commands on this machine*hub_host*"])
    # asked for on purpose, testinfra's own fixture is there
    result = pytester.runpytest_subprocess("--devices", str(repo), "--hosts", "local://")
    result.assert_outcomes(passed=1)


def test_another_plugin_defining_a_harness_fixture_is_refused(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makepyfile(other_plugin="import pytest\n\n@pytest.fixture\ndef hub():\n    return 'not a hub'\n")
    pytester.makepyfile("def test_x(hub):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "other_plugin", "--devices", str(repo))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*fixture 'hub' is defined by the hil harness*other_plugin.hub*"])


DEAD = textwrap.dedent("""\
    def test_reachable(hub):
        pass

    def test_without_a_device():
        pass
    """)


def test_a_run_on_an_unreachable_hub_is_not_green(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makepyfile(DEAD)
    result = pytester.runpytest_subprocess("--devices", str(repo), "--device", "hub-a")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == RunExit.DEVICES_UNAVAILABLE
    result.stdout.fnmatch_lines(["*devices not available (infrastructure)*", "hub-a: *",
                                 "exit status 6: a selected device was not available*"])


def test_with_the_gate_the_gate_decides(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makepyfile(DEAD)
    policy = pytester.path / "gate.yaml"
    policy.write_text("version: 1\nrequired_suites: []\n")
    result = pytester.runpytest_subprocess("--devices", str(repo), "--device", "hub-a", "--gate",
                                           "--gate-policy", str(policy))
    assert result.ret == GateExit.INCONCLUSIVE


def test_a_run_on_healthy_devices_only_is_untouched(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("--devices", str(repo))
    assert result.ret == pytest.ExitCode.OK


def test_a_lease_wait_says_who_holds_the_hub_and_for_how_long(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makepyfile("def test_x(hub):\n    pass\n")
    store = make_lease_store(load_inventory(repo))
    held = store.acquire("hub-a", timeout=1)  # another run holds hub-a
    try:
        result = pytester.runpytest_subprocess("--devices", str(repo), "--device", "hub-a",
                                               "--lease-timeout", "2")
    finally:
        held.release()
    result.stderr.fnmatch_lines(["hil: waiting for hub-a: held (hub-a by pid * on *); "
                                 "waiting up to * s more (until *, lease timeout 2 s)"])
    assert result.ret == RunExit.DEVICES_UNAVAILABLE


DOC = Path(__file__).resolve().parents[2] / "docs" / "use-from-your-repo.md"
OUR_GROUPS = ("hardware-in-the-loop devices", "promotion gate", "candidate deployment", "latency probes",
              "SBOMs and advisories (OWASP I5)", "ML model components")


def test_the_public_types_resolve() -> None:
    import hil_pytest

    assert sorted(hil_pytest.__all__) == sorted(hil_pytest._EXPORTS)
    for name in hil_pytest.__all__:
        assert getattr(hil_pytest, name) is not None


def test_the_docs_page_names_every_fixture_marker_and_option(pytester: pytest.Pytester) -> None:
    from hil_pytest.plugin import FIXTURES, MARKERS

    doc = DOC.read_text()
    for name in FIXTURES:
        assert f"| `{name}` |" in doc, f"fixture {name} is not in {DOC.name}"
    for marker in [*MARKERS, "needs_service(*services)"]:
        assert marker.split("(")[0] in doc
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    options = []
    for group in OUR_GROUPS:  # the option groups the plugin adds, as `pytest --help` shows them
        section = help_text.split(f"\n{group}:\n", 1)[1].split("\n\n", 1)[0]
        options += re.findall(r"^  (--[a-z-]+)", section, re.M)
    assert len(options) >= 12
    for opt in options:
        assert f"`{opt}" in doc, f"option {opt} is not in {DOC.name}"
