"""The pytest plugin, run inside pytester: options, selection, leases, broken hubs, classes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from hil.inventory import load_inventory
from hil.lease import make_lease_store

pytest_plugins = ["pytester"]

CONFTEST = 'pytest_plugins = ["hil_pytest.run", "hil_pytest.devices", "hil_pytest.outcomes"]\n'
INI = textwrap.dedent("""\
    [pytest]
    addopts = -p no:cacheprovider
    markers =
        smoke: s
        functional: f
        latency: l
        security: s
        requires(model=None, tag=None): r
    """)


def _pubkey() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def write_rack(root: Path, *, extra_device: str = "") -> Path:
    """A valid inventory whose hubs are closed loopback ports (unreachable, fast)."""
    (root / "keys").mkdir(exist_ok=True)
    (root / "keys" / "id").write_text("not used: nothing connects\n")
    pub = _pubkey()
    (root / "known_hosts").write_text(
        f"[127.0.0.1]:9 {pub}\n[127.0.0.1]:10 {pub}\n[127.0.0.1]:11 {pub}\n")
    inv = root / "rack.yaml"
    inv.write_text(textwrap.dedent(f"""\
        lab: plugin-test
        defaults:
          ssh: {{user: hil, key_file: keys/id, known_hosts: known_hosts}}
        lease: {{directory: {root / "leases"}}}
        timeouts: {{ssh_connect: 1, recovery: 5, boot: 2}}
        selection: {{exclude_tags: [vulnerable]}}
        devices:
          hub-a: {{model: pi4, tags: [fast], ssh: {{host: 127.0.0.1, port: 9}}}}
          hub-b: {{model: pi5, tags: [fast, big], ssh: {{host: 127.0.0.1, port: 10}}}}
          hub-v: {{model: pi4, tags: [vulnerable], ssh: {{host: 127.0.0.1, port: 11}}}}
        {extra_device}"""))
    return inv


@pytest.fixture
def rack(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    monkeypatch.setenv("HIL_REPORTS_DIR", str(pytester.path / "reports"))
    monkeypatch.setenv("HIL_RUN_ID", "t1")
    return write_rack(pytester.path)


SELECTION_TESTS = textwrap.dedent("""\
    import pytest

    def test_any(_hil_device):
        pass

    @pytest.mark.requires(model="pi5")
    def test_pi5(_hil_device):
        pass

    def test_no_device():
        pass
    """)


def _ids(result: pytest.RunResult) -> list[str]:
    return sorted(line.split(" ")[0].split("::")[-1] for line in result.outlines
                  if "::" in line and (" PASSED" in line or " SKIPPED" in line))


def test_default_selection_excludes_excluded_tags(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(SELECTION_TESTS)
    result = pytester.runpytest("--devices", str(rack), "-v")
    result.assert_outcomes(passed=4)
    assert _ids(result) == ["test_any[hub-a]", "test_any[hub-b]", "test_no_device", "test_pi5[hub-b]"]


def test_device_by_name_and_tag(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(SELECTION_TESTS)
    result = pytester.runpytest("--devices", str(rack), "-v", "--device", "hub-v", "--device-tag", "big")
    assert _ids(result) == ["test_any[hub-b]", "test_any[hub-v]", "test_no_device", "test_pi5[hub-b]"]


def test_requires_without_match_skips_with_a_reason(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(SELECTION_TESTS)
    result = pytester.runpytest("--devices", str(rack), "-rs", "--device", "hub-a")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*no selected device matches requires(model=pi5)*"])


def test_unknown_device_is_a_usage_error(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(SELECTION_TESTS)
    result = pytester.runpytest("--devices", str(rack), "--device", "hub-zz")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*file {rack}*unknown device hub-zz*"])


def test_bad_inventory_stops_before_anything_runs(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(SELECTION_TESTS)
    rack.write_text(rack.read_text().replace("port: 10}", "port: 70000}"))
    result = pytester.runpytest_subprocess("--devices", str(rack))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "device hub-b" in err and "field ssh.port" in err and str(rack) in err
    assert "Traceback" not in err + result.stdout.str()
    assert "passed" not in result.stdout.str()


def test_missing_known_hosts_entry_stops_the_run(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(SELECTION_TESTS)
    (rack.parent / "known_hosts").write_text("")
    result = pytester.runpytest_subprocess("--devices", str(rack))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "field ssh.known_hosts" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_lease_timeout_skips_as_infrastructure(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile("def test_x(_hil_device):\n    pass\n")
    store = make_lease_store(load_inventory(rack))
    held = store.acquire("hub-a", timeout=1)  # another "run" holds hub-a
    try:
        result = pytester.runpytest("--devices", str(rack), "--lease-timeout", "0.3", "-rs")
    finally:
        held.release()
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*[[]infrastructure[]] hub-a: no free device among hub-a within 0.3s*"])


def test_unreachable_hub_is_broken_and_its_tests_skip(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(textwrap.dedent("""\
        def test_one(hub):
            raise AssertionError("must not run on a broken hub")

        def test_two(hub):
            raise AssertionError("must not run on a broken hub")
        """))
    result = pytester.runpytest("--devices", str(rack), "--device", "hub-a", "-rs")
    result.assert_outcomes(skipped=2)
    out = result.stdout.str()
    assert "[infrastructure] hub-a could not be recovered" in out and "(recovery: ssh)" in out
    assert "[infrastructure] hub-a is broken" in out
    lines = [json.loads(x) for x in
             (pytester.path / "reports/run/t1/results.jsonl").read_text().splitlines()]
    assert [(r["device"], r["outcome"], r["failure_class"], r["disposition"]) for r in lines] == \
        [("hub-a", "skipped", "infrastructure", "skipped")] * 2


FAILURES = textwrap.dedent("""\
    from hil.errors import DeviceUnreachable

    def test_product():
        assert 1 + 1 == 3

    def test_harness():
        {}["missing"]

    def test_infra():
        raise DeviceUnreachable("hub gone")

    def test_ok(record_property):
        record_property("x", "1")
    """)


def test_failure_classes_reach_message_junit_and_results(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(FAILURES)
    result = pytester.runpytest("--devices", str(rack), "--junitxml", "junit.xml")
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    assert "AssertionError: [product] assert (1 + 1) == 3" in out
    assert "KeyError: '[harness] missing'" in out
    assert "DeviceUnreachable: [infrastructure] hub gone" in out
    junit = (pytester.path / "junit.xml").read_text()
    for cls in ("product", "harness", "infrastructure"):
        assert f'<property name="failure_class" value="{cls}" />' in junit
    rows = {r["nodeid"].split("::")[1]: r for r in map(json.loads, (
        pytester.path / "reports/run/t1/results.jsonl").read_text().splitlines())}
    assert {k: v["failure_class"] for k, v in rows.items()} == {
        "test_product": "product", "test_harness": "harness", "test_infra": "infrastructure", "test_ok": None}
    assert rows["test_product"]["message"].startswith("AssertionError: [product]")
    assert {k: v["disposition"] for k, v in rows.items()} == {
        "test_product": "failed", "test_harness": "failed", "test_infra": "failed", "test_ok": "passed"}


PROFILE_TESTS = textwrap.dedent("""\
    import pytest

    @pytest.mark.needs_service("docker")
    def test_docker(_hil_device):
        pass

    @pytest.mark.needs_service("console", "greengrass")
    def test_console_and_nucleus(hub):
        raise AssertionError("must not run: no hub declares these")

    @pytest.mark.needs_service("ssh")
    def test_ssh(_hil_device):
        pass

    def test_plain_skip(_hil_device):
        pytest.skip("nothing to see")
    """)


def test_a_service_the_hub_does_not_declare_is_not_applicable(pytester: pytest.Pytester,
                                                              rack: Path) -> None:
    rack.write_text(rack.read_text().replace("ssh: {host: 127.0.0.1, port: 10}}",
                                             "ssh: {host: 127.0.0.1, port: 10}, "
                                             "expect: {services: [ssh, docker]}}"))
    pytester.makepyfile(PROFILE_TESTS)
    store = make_lease_store(load_inventory(rack))
    held = store.acquire("hub-a", timeout=1)  # a not-applicable test must not even wait for a lease
    try:
        result = pytester.runpytest("--devices", str(rack), "-rs", "--lease-timeout", "0.2",
                                    "-k", "not test_ssh and not test_plain_skip")
    finally:
        held.release()
    result.assert_outcomes(passed=1, skipped=3)
    out = result.stdout.str()
    for reason in ("hub-a does not declare service 'docker' (expect.services)",
                   "hub-a does not declare services 'console', 'greengrass' (expect.services)",
                   "hub-b does not declare services 'console', 'greengrass' (expect.services)"):
        assert f"not applicable: {reason}" in out
    rows = {r["nodeid"].split("::")[1]: r for r in map(json.loads, (
        pytester.path / "reports/run/t1/results.jsonl").read_text().splitlines())}
    assert {k: (v["outcome"], v["disposition"], v["failure_class"]) for k, v in rows.items()} == {
        "test_docker[hub-a]": ("skipped", "not_applicable", None),
        "test_docker[hub-b]": ("passed", "passed", None),
        "test_console_and_nucleus[hub-a]": ("skipped", "not_applicable", None),
        "test_console_and_nucleus[hub-b]": ("skipped", "not_applicable", None),
    }


def test_plain_and_classified_skips_keep_their_disposition(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(PROFILE_TESTS)
    result = pytester.runpytest("--devices", str(rack), "--device", "hub-a",
                                "-k", "test_ssh or test_plain_skip")
    result.assert_outcomes(passed=1, skipped=1)
    rows = {r["nodeid"].split("::")[1]: r for r in map(json.loads, (
        pytester.path / "reports/run/t1/results.jsonl").read_text().splitlines())}
    assert {k: (v["disposition"], v["failure_class"]) for k, v in rows.items()} == {
        "test_ssh[hub-a]": ("passed", None), "test_plain_skip[hub-a]": ("skipped", None)}


def test_unknown_service_in_the_marker_is_a_usage_error(pytester: pytest.Pytester, rack: Path) -> None:
    pytester.makepyfile(textwrap.dedent("""\
        import pytest

        @pytest.mark.needs_service("dockr")
        def test_x(_hil_device):
            pass
        """))
    result = pytester.runpytest("--devices", str(rack))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_x*needs_service('dockr'): unknown service; known: ssh, console,*"])


def test_allure_results_carry_labels_categories_and_environment(pytester: pytest.Pytester,
                                                               rack: Path) -> None:
    pytester.makepyfile(textwrap.dedent("""\
        import pytest
        from hil.steps import step

        @pytest.mark.smoke
        def test_step(_hil_device):
            with step("ssh: true", device=_hil_device.name) as st:
                st.attach("stdout", "hello")
            assert False, "device said no"
        """))
    result = pytester.runpytest("--devices", str(rack), "--device", "hub-b", "--alluredir", "allure")
    result.assert_outcomes(failed=1)
    res_dir = pytester.path / "allure"
    cats = json.loads((res_dir / "categories.json").read_text())
    assert {c["name"].split(" ")[0] for c in cats} == {"Infrastructure", "Product", "Harness", "Not"}
    env = (res_dir / "environment.properties").read_text()
    assert "inventory.sha256=" in env and "devices=hub-b" in env and "harness.revision=" in env
    results = [json.loads(p.read_text()) for p in res_dir.glob("*-result.json")]
    (res,) = [r for r in results if not r["fullName"].startswith("hil.timeline#")]  # not the hub's timeline
    labels = {(lb["name"], lb["value"]) for lb in res["labels"]}
    assert {("device", "hub-b"), ("model", "pi5"), ("suite", "smoke"),
            ("failure_class", "product"), ("disposition", "failed")} <= labels
    assert res["statusDetails"]["message"].startswith("AssertionError: [product] device said no")
    (st,) = res["steps"]
    assert st["name"] == "ssh: true"
    assert {"name": "exit status", "value": "0"} in st["parameters"]
    assert [a["name"] for a in st["attachments"]] == ["stdout"]


def test_xdist_keeps_each_device_on_one_worker(pytester: pytest.Pytester, rack: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIDS_FILE", str(pytester.path / "pids.txt"))
    pytester.makepyfile(textwrap.dedent("""\
        import os
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_x(_hil_device, i):
            with open(os.environ["PIDS_FILE"], "a") as f:
                f.write(f"{_hil_device.name} {os.getpid()}\\n")
        """))
    result = pytester.runpytest_subprocess("--devices", str(rack), "-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=8)
    pids: dict[str, set[str]] = {}
    for line in (pytester.path / "pids.txt").read_text().splitlines():
        dev, pid = line.split()
        pids.setdefault(dev, set()).add(pid)
    assert set(pids) == {"hub-a", "hub-b"}
    assert all(len(p) == 1 for p in pids.values())  # one worker per device
    rows = (pytester.path / "reports/run/t1/results.jsonl").read_text().splitlines()
    assert len(rows) == 8  # the controller wrote every worker's results once


def test_device_of_node_id_prefers_the_longest_bounded_name() -> None:
    from hil_pytest.xdist_scheduling import device_of

    devs = ["hub", "hub-01", "hub-0", "hub-01-b"]
    assert device_of("t.py::test_x[hub-01]", devs) == "hub-01"
    assert device_of("t.py::test_x[hub-01-3]", devs) == "hub-01"
    assert device_of("t.py::test_x[3-hub-0]", devs) == "hub-0"
    assert device_of("t.py::test_x[hub-01-b-2]", devs) == "hub-01-b"
    assert device_of("t.py::test_x[nohub]", devs) is None
    assert device_of("t.py::test_x", devs) is None


def test_hostile_candidate_is_a_usage_error_before_any_lease(pytester: pytest.Pytester, rack: Path,
                                                             tmp_path: Path) -> None:
    import shutil

    plugins = CONFTEST.replace('"hil_pytest.outcomes"]', '"hil_pytest.outcomes", "hil_pytest.deploy"]')
    pytester.makeconftest(plugins)
    pytester.makepyfile("def test_deployed(deployed):\n    pass\n")
    cand = tmp_path / "cand"
    shutil.copytree(Path(__file__).resolve().parents[2] / "candidates" / "good", cand)
    (tmp_path / "ci_key").write_text("secret\n")
    link = cand / "recipes" / "key.yaml"
    link.symlink_to(tmp_path / "ci_key")
    result = pytester.runpytest_subprocess("--devices", str(rack), "--candidate", str(cand))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"file {link}" in err and "outside the candidate folder" in err, err
    assert "Traceback" not in err + result.stdout.str()
    assert not list((rack.parent / "leases").glob("*.lock"))  # no hub was even leased


def test_one_label_decorator_gives_allure_its_labels_tags_and_links(pytester: pytest.Pytester,
                                                                   rack: Path) -> None:
    pytester.makepyfile(textwrap.dedent("""\
        from hil_pytest.allure_labels import BLOCKER, labels

        @labels("Security", "I1 passwords", BLOCKER, tags=["I1"], extra={"owasp_iot": "I1"},
                links=[("https://owasp.org/x", "OWASP I1")])
        def test_x():
            pass
        """))
    result = pytester.runpytest("--devices", str(rack), "--alluredir", "allure")
    result.assert_outcomes(passed=1)
    (res,) = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    got = {(lb["name"], lb["value"]) for lb in res["labels"]}
    assert {("feature", "Security"), ("story", "I1 passwords"), ("severity", "blocker"), ("tag", "I1"),
            ("owasp_iot", "I1")} <= got
    assert {"url": "https://owasp.org/x", "name": "OWASP I1", "type": "link"} in res["links"]


def _call_order(config: pytest.Config, hook: str) -> list[str]:
    impls = getattr(config.pluginmanager.hook, hook).get_hookimpls()
    return [impl.plugin_name for impl in reversed(impls)]  # pluggy calls the last one first


def test_hook_order_is_what_hook_order_says(pytester: pytest.Pytester, rack: Path) -> None:
    config = pytester.parseconfigure("--devices", str(rack))
    finish = _call_order(config, "pytest_sessionfinish")
    writers = [finish.index(n) for n in ("hil_pytest.run_meta", "hil_pytest.latency", "hil_pytest.deploy")]
    runner, pool, gate = (finish.index(n) for n in ("runner", "hil_pytest.devices", "hil_pytest.gate"))
    assert max(writers) < runner < pool, finish  # files first; leases go back after fixture teardown
    assert max(writers) < gate, finish  # the gate reads what the writers wrote
    setup = _call_order(config, "pytest_runtest_setup")
    assert setup.index("hil_pytest.devices") < setup.index("runner"), setup  # before any fixture
