"""Deployment state machine (submit, poll, settle, evidence, classify, restore) on a scripted hub.

The scripted hub answers the harness's commands with the CLI output formats of the facts
document (the text of tests/data/greengrass/), following a script each test sets:
deployment statuses in order, and component states per `component list` call. Pure
logic: the real nucleus is exercised by the lab tests.
"""

from __future__ import annotations

import json
import shlex
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fake_clock import FakeClock

from hil.deploy.candidate import load_candidate
from hil.deploy.deployment import Deployment
from hil.deploy.restore import plan_restore
from hil.deploy.snapshot import PendingDeployment
from hil.drivers.base import CommandResult
from hil.drivers.greengrass import ComponentState, DeploymentState, Greengrass
from hil.errors import DeviceUnreachable, FailureClass
from hil.timeouts import Timeouts

CLI = "/greengrass/v2/bin/greengrass-cli"
BUILTINS = {
    "aws.greengrass.Nucleus": ("2.12.0", "FINISHED"),
    "DeploymentService": ("0.0.0", "RUNNING"),
    "aws.greengrass.Cli": ("2.12.0", "RUNNING"),
    "aws.greengrass.DockerApplicationManager": ("2.0.11", "RUNNING"),
}


@dataclass
class Script:
    """What the next deployment does."""

    statuses: list[str] = field(default_factory=lambda: ["QUEUED", "IN_PROGRESS", "SUCCEEDED"])
    states: dict[str, list[str]] = field(default_factory=dict)
    """Per merged component: states of successive `component list` calls (last one repeats)."""
    failure: list[str] = field(default_factory=list)
    """Extra status lines when FAILED."""
    create_stdout: str | None = None
    create_stderr: str = ""


class FakeHub:
    def __init__(self, clock: FakeClock, components: dict[str, str] | None = None) -> None:
        self.device = "hub-fake"
        self.clock = clock
        self.components: dict[str, list[str]] = {n: [v, s] for n, (v, s) in BUILTINS.items()}
        for n, v in (components or {}).items():
            self.components[n] = [v, "RUNNING"]
        self.files: dict[str, bytes] = {}
        self.calls: list[tuple[str, ...]] = []
        self.scripts: list[Script] = []
        self.deployments: dict[str, tuple[Script, dict[str, str], list[str], list[str]]] = {}
        self.state_queues: dict[str, list[str]] = {}
        self.unreachable_on: str | None = None
        self.removed: list[str] = []
        self.nucleus_log = ""

    # -- Shell / FileTransfer
    def put(self, local: Path, remote: str, *, sudo: bool = False) -> None:
        self.files[remote] = Path(local).read_bytes()

    def get(self, remote: str, local: Path, *, sudo: bool = False) -> None:
        Path(local).write_bytes(self.files[remote])

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None) -> CommandResult:
        args = tuple(argv)
        self.calls.append(args)
        self.clock.now += 0.2  # every command costs a little time
        if self.unreachable_on and self.unreachable_on in shlex.join(args):
            raise DeviceUnreachable(f"{self.device}: connection refused")
        out, err, rc = self._answer(args)
        return CommandResult(args, rc, out, err, 0.2)

    def _answer(self, a: tuple[str, ...]) -> tuple[str, str, int]:
        if a[0] == CLI:
            return self._cli(list(a[1:]))
        if a[0] == "head":
            if a[-1] in self.files:
                return self.files[a[-1]].decode(), "", 0
            return "", f"head: cannot open '{a[-1]}' for reading: No such file or directory\n", 1
        if a[:2] == ("sh", "-c") and a[3] == "hil-staging":  # prepare_staging: a root-owned 0700 folder
            parts = a[4].split("/")[1:]
            folders = ["/" + "/".join(parts[:i]) for i in range(len(parts), 0, -1)] + ["/"]
            lines = [f"0 {0o40700 if i == 0 else 0o40755:x} {f}\n" for i, f in enumerate(folders)]
            return "".join(lines), "", 0
        if a[0] == "rm":
            for p in a[2:]:
                if p != "--":
                    self.removed.append(p)
                    for k in [k for k in self.files if k == p or k.startswith(p + "/")]:
                        del self.files[k]
            return "", "", 0
        if a[0] == "tail":
            if a[-1].endswith("/greengrass.log") and self.nucleus_log:
                return self.nucleus_log, "", 0
            return f"log of {a[-1]}\n", "", 0
        if a[:2] == ("docker", "ps"):
            return "CONTAINER ID   IMAGE   STATUS\n", "", 0
        if a[:2] == ("docker", "image"):
            return f"{a[-1].rsplit(':', 1)[0]}@sha256:{'ab' * 32}\n", "", 0
        return "", "", 0  # mkdir, cp, test, docker pull/load

    def _cli(self, a: list[str]) -> tuple[str, str, int]:
        if a[:2] == ["component", "list"]:
            return self._component_list(), "", 0
        if a[:2] == ["deployment", "create"]:
            return self._create(a[2:])
        if a[:2] == ["deployment", "status"]:
            return self._status(a[3])
        return "", f"unexpected {a}", 1

    def _component_list(self) -> str:
        lines = ["Components currently running in Greengrass:"]
        for name, (version, state) in self.components.items():
            q = self.state_queues.get(name)
            if q:
                state = q.pop(0) if len(q) > 1 else q[0]
                self.components[name][1] = state
            lines += [f"Component Name: {name}", f"    Version: {version}", f"    State: {state}",
                      "    Configuration: null"]
        return "\n".join(lines) + "\n"

    def _create(self, a: list[str]) -> tuple[str, str, int]:
        script = self.scripts.pop(0) if self.scripts else Script()
        merge: dict[str, str] = {}
        remove: list[str] = []
        for opt, val in zip(a[::2], a[1::2], strict=True):
            if opt == "--merge":
                n, _, v = val.partition("=")
                merge[n] = v
            elif opt == "--remove":
                remove.append(val)
        if script.create_stdout is not None:
            return script.create_stdout, script.create_stderr, 0
        dep_id = str(uuid.uuid4())
        self.deployments[dep_id] = (script, merge, remove, list(script.statuses))
        return f"Local deployment submitted! Deployment Id: {dep_id}\n", "", 0

    def _status(self, dep_id: str) -> tuple[str, str, int]:
        if dep_id not in self.deployments:
            return "", "Cannot find deployment\n", 1
        script, merge, remove, queue = self.deployments[dep_id]
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        if status in ("SUCCEEDED", "FAILED") and merge is not None:
            for n, v in merge.items():
                self.components[n] = [v, "RUNNING"]
                if n in script.states:
                    self.state_queues[n] = list(script.states[n])
                    self.components[n][1] = script.states[n][0]
            for n in remove:
                self.components.pop(n, None)
            self.deployments[dep_id] = (script, {}, [], queue)
        lines = [f"{dep_id}: {status}", "Created on: 15-06-2023 18:34:30 UTC"]
        if status == "FAILED":
            lines += script.failure
        return "\n".join(lines) + "\n", "", 0


CANDIDATES = Path(__file__).resolve().parents[2] / "candidates"
CONTAINER = "com.hbs.hub.Container"
BROKEN = "com.hbs.hub.Broken"
TIMEOUTS = Timeouts(deployment=60, settle=10)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(min_step=0.001)


def make(hub: FakeHub, clock: FakeClock, name: str = "good", run_id: str = "run-1") -> Deployment:
    gg = Greengrass(hub, poll_interval=1.0, sleep=clock.sleep, clock=clock)
    return Deployment(hub, hub, load_candidate(CANDIDATES / name), greengrass=gg, timeouts=TIMEOUTS,
                      run_id=run_id, clock=clock, sleep=clock.sleep)


def cli_calls(hub: FakeHub, *head: str) -> list[tuple[str, ...]]:
    return [c for c in hub.calls if c[:1] == (CLI,) and c[1:1 + len(head)] == head]


def test_good_candidate_deploys_and_settles(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    d = make(hub, clock)
    res = d.deploy()
    assert res.ok, res.problem
    assert res.status is not None and res.status.status is DeploymentState.SUCCEEDED
    assert res.components == {CONTAINER: ComponentState.RUNNING}
    # staged under the run's folder, with the CLI's layout
    assert "/var/lib/hil/staging/run-1/recipes/com.hbs.hub.Container-1.0.0.yaml" in hub.files
    assert "/var/lib/hil/staging/run-1/artifacts/com.hbs.hub.Container/1.0.0/docker-compose.yaml" in hub.files
    [create] = cli_calls(hub, "deployment", "create")
    assert create[3:] == ("--recipeDir", "/var/lib/hil/staging/run-1/recipes",
                          "--artifactDir", "/var/lib/hil/staging/run-1/artifacts",
                          "--merge", "com.hbs.hub.Container=1.0.0",
                          "--failure-handling-policy", "DO_NOTHING")
    # settle: watched for the whole settle period, several samples
    assert res.durations["settle"] >= TIMEOUTS.settle
    assert len(cli_calls(hub, "component", "list")) >= 1 + 10
    assert set(res.image_digests) == {f"registry.lab:5000/hil/{n}:1.0" for n in ("web", "app", "db")}
    assert [c for c in hub.calls if c[:2] == ("docker", "pull")]
    # snapshot saved on the hub for `hil rollback`, without the built-ins
    snap = json.loads(hub.files["/var/lib/hil/staging/snapshot.json"])
    assert snap["components"] == {"aws.greengrass.Cli": "2.12.0",
                                  "aws.greengrass.DockerApplicationManager": "2.0.11"}
    assert snap["candidate"] == {CONTAINER: "1.0.0"}
    assert res.attachments == {}
    assert res.durations["create_to_verified"] < res.durations["total"]


def test_broken_component_fails_with_evidence(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    hub.scripts.append(Script(
        statuses=["IN_PROGRESS", "IN_PROGRESS", "FAILED"], states={BROKEN: ["BROKEN"]},
        failure=["Detailed Status: FAILED_ROLLBACK_NOT_REQUESTED",
                 "Deployment Error Stack: DEPLOYMENT_FAILURE, COMPONENT_UPDATE_ERROR, COMPONENT_BROKEN",
                 "Deployment Error Types: USER_COMPONENT_ERROR",
                 f"Deployment Failure Cause: Service {BROKEN} in broken state after deployment"]))
    res = make(hub, clock, "bad").deploy()
    assert not res.ok
    assert res.failure_class is FailureClass.PRODUCT
    assert res.problem is not None and f"Service {BROKEN} in broken state" in res.problem
    assert res.components == {BROKEN: ComponentState.BROKEN}
    assert set(res.attachments) == {"greengrass.log", f"{BROKEN}.log", "component list", "docker ps -a",
                                    "deployment status"}
    assert "/greengrass/v2/logs/greengrass.log" in res.attachments["greengrass.log"]
    assert "BROKEN" in res.attachments["component list"]
    # the bad candidate's Startup script is an artifact (with its digest)
    [create] = cli_calls(hub, "deployment", "create")
    assert "--artifactDir" in create


def test_run_component_crashing_after_success_fails_settle(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    hub.scripts.append(Script(states={CONTAINER: ["RUNNING", "RUNNING", "RUNNING", "ERRORED"]}))
    res = make(hub, clock).deploy()
    assert not res.ok and res.failure_class is FailureClass.PRODUCT
    assert res.problem is not None and "went ERRORED while settling" in res.problem
    assert res.history[CONTAINER] == [ComponentState.RUNNING, ComponentState.ERRORED]
    assert "greengrass.log" in res.attachments


def _set_state(ts: str, name: str, a: str, b: str) -> str:
    return (f"{ts} [INFO] (pool-2-thread-3) com.aws.greengrass.lifecyclemanager.GenericExternalService: "
            f"service-set-state. {{serviceName={name}, currentState={a}, newState={b}}}\n")


def test_quick_relapse_between_samples_is_caught_in_the_log(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    # created on 15-06-2023 18:34:30 UTC (the fake's status); an older ERRORED does not count
    hub.nucleus_log = (_set_state("2023-06-15T18:30:00.000Z", CONTAINER, "RUNNING", "ERRORED")
                       + _set_state("2023-06-15T18:34:31.000Z", CONTAINER, "STARTING", "ERRORED")
                       + _set_state("2023-06-15T18:34:33.000Z", CONTAINER, "STARTING", "RUNNING"))
    assert make(hub, clock).deploy().ok  # errors before reaching RUNNING: Greengrass retried, fine
    hub2 = FakeHub(clock)
    hub2.nucleus_log = hub.nucleus_log + (
        _set_state("2023-06-15T18:34:35.100Z", CONTAINER, "RUNNING", "ERRORED")
        + _set_state("2023-06-15T18:34:35.300Z", CONTAINER, "ERRORED", "STARTING")
        + _set_state("2023-06-15T18:34:35.500Z", CONTAINER, "STARTING", "RUNNING"))
    res = make(hub2, clock).deploy()
    assert not res.ok and res.failure_class is FailureClass.PRODUCT
    assert res.problem is not None and "went ERRORED at 18:34:35.100000" in res.problem
    assert res.history[CONTAINER] == [ComponentState.RUNNING]  # the samples never saw it


def test_finished_counts_as_stable(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    hub.scripts.append(Script(states={CONTAINER: ["RUNNING", "FINISHED"]}))
    assert make(hub, clock).deploy().ok


def test_deployment_that_never_ends_times_out(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    hub.scripts.append(Script(statuses=["IN_PROGRESS"]))
    res = make(hub, clock).deploy()
    assert not res.ok and res.failure_class is FailureClass.PRODUCT
    assert res.problem is not None and "not finished after 60s (last status: IN_PROGRESS)" in res.problem
    assert 60 <= res.durations["deployment"] < 65


def test_missing_id_line_is_a_failure_despite_exit_0(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    hub.scripts.append(Script(create_stdout=""))
    res = make(hub, clock).deploy()
    assert not res.ok and res.failure_class is FailureClass.PRODUCT
    assert res.problem is not None and "no deployment id" in res.problem


def test_cli_usage_error_is_a_harness_failure(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    hub.scripts.append(Script(create_stdout="",
                              create_stderr="Unknown option: '--bogus'\nUsage: greengrass-cli"))
    res = make(hub, clock).deploy()
    assert not res.ok and res.failure_class is FailureClass.HARNESS


def test_unreachable_hub_is_infrastructure_and_collects_nothing(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    hub.unreachable_on = "deployment create"
    res = make(hub, clock).deploy()
    assert not res.ok and res.failure_class is FailureClass.INFRASTRUCTURE
    assert res.attachments == {}


def test_nucleus_down_before_deploy_is_infrastructure(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    original = hub._cli

    def down(a: list[str]) -> tuple[str, str, int]:
        if a[:2] == ["component", "list"]:
            return "", "java.io.IOException: Connection refused\n\tat x.y(Z.java:1)\n", 1
        return original(a)

    hub._cli = down  # type: ignore[method-assign]
    res = make(hub, clock).deploy()
    assert res.failure_class is FailureClass.INFRASTRUCTURE
    assert res.problem is not None and "Connection refused" in res.problem


def test_kept_deployment_blocks_the_next_one(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    assert make(hub, clock).deploy().ok
    with pytest.raises(PendingDeployment, match="hil rollback hub-fake"):
        make(hub, clock, run_id="run-2").deploy()


def test_restore_removes_an_added_component(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    d = make(hub, clock)
    assert d.deploy().ok
    r = d.restore()
    assert r.ok, r.problem
    assert r.plan.remove == (CONTAINER,) and r.plan.merge == {}
    [_, create] = cli_calls(hub, "deployment", "create")
    assert create[3:] == ("--remove", CONTAINER, "--failure-handling-policy", "DO_NOTHING")
    assert CONTAINER not in hub.components
    assert "/var/lib/hil/staging/run-1" in hub.removed
    assert not any(k.startswith("/var/lib/hil/staging/") for k in hub.files)  # snapshot forgotten too


def test_upgrade_restore_re_merges_previous_version_from_package_store(clock: FakeClock) -> None:
    hub = FakeHub(clock, components={CONTAINER: "1.0.0"})
    d = make(hub, clock, "upgrade")
    assert d.deploy().ok
    assert hub.components[CONTAINER][0] == "1.1.0"
    r = d.restore()
    assert r.ok, r.problem
    assert r.plan.remove == () and r.plan.merge == {CONTAINER: "1.0.0"}
    [_, create] = cli_calls(hub, "deployment", "create")
    staging = "/var/lib/hil/staging/run-1/restore"
    assert create[3:] == ("--recipeDir", f"{staging}/recipes", "--artifactDir", f"{staging}/artifacts",
                          "--merge", f"{CONTAINER}=1.0.0", "--failure-handling-policy", "DO_NOTHING")
    assert ("cp", "-a", "--", "/greengrass/v2/packages/recipes/.", f"{staging}/recipes") in hub.calls
    assert ("cp", "-a", "--", f"/greengrass/v2/packages/artifacts/{CONTAINER}/1.0.0",
            f"{staging}/artifacts/{CONTAINER}/") in hub.calls
    assert hub.components[CONTAINER][0] == "1.0.0"


def test_restore_after_failed_bad_candidate(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    hub.scripts.append(Script(statuses=["FAILED"], states={BROKEN: ["BROKEN"]}))
    d = make(hub, clock, "bad")
    assert not d.deploy().ok
    r = d.restore()
    assert r.ok and r.plan.remove == (BROKEN,)
    assert BROKEN not in hub.components


def test_restore_that_does_not_restore_keeps_the_snapshot(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    d = make(hub, clock)
    assert d.deploy().ok
    hub.scripts.append(Script(statuses=["FAILED"],
                              failure=["Deployment Failure Cause: something went wrong"]))
    # the nucleus "fails" the removal: the component stays
    original = hub._status

    def no_removal(dep_id: str) -> tuple[str, str, int]:
        script, _merge, _remove, queue = hub.deployments[dep_id]
        hub.deployments[dep_id] = (script, {}, [], queue)
        return original(dep_id)

    hub._status = no_removal  # type: ignore[method-assign]
    r = d.restore()
    assert not r.ok
    assert r.problem is not None and "FAILED: something went wrong" in r.problem
    assert f"{CONTAINER} 1.0.0 not expected" in r.problem
    assert "/var/lib/hil/staging/snapshot.json" in hub.files


def test_rollback_from_saved_snapshot_in_another_process(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    assert make(hub, clock).deploy().ok
    fresh = make(hub, clock, run_id="other")  # no snapshot in memory: reads the hub's
    r = fresh.restore()
    assert r.ok and r.plan.remove == (CONTAINER,)
    assert "/var/lib/hil/staging/run-1" in hub.removed


@pytest.mark.parametrize(("snap", "current", "remove", "merge"), [
    ({}, {"A": "1.0.0"}, ("A",), {}),
    ({"A": "1.0.0"}, {"A": "1.1.0"}, (), {"A": "1.0.0"}),
    ({"A": "1.0.0"}, {"A": "1.0.0"}, (), {}),  # FAILED_ROLLBACK_COMPLETE: nothing to do
    ({"A": "1.0.0"}, {}, (), {"A": "1.0.0"}),  # lost: re-merge it
    ({"A": "1.0.0"}, {"A": "1.1.0", "B": "2.0.0", "C": "1.0.0"}, ("B", "C"), {"A": "1.0.0"}),
    ({}, {}, (), {}),  # failed before the merge: nothing there to remove
])
def test_plan_restore(snap: dict[str, str], current: dict[str, str],
                      remove: tuple[str, ...], merge: dict[str, str]) -> None:
    plan = plan_restore(snap, current)
    assert plan.remove == remove and plan.merge == merge


def test_stacked_upgrade_restores_in_layers(clock: FakeClock) -> None:
    hub = FakeHub(clock)
    good = make(hub, clock, "good", run_id="g")
    assert good.deploy().ok
    up = Deployment(hub, hub, load_candidate(CANDIDATES / "upgrade"),
                    greengrass=Greengrass(hub, sleep=clock.sleep, clock=clock), timeouts=TIMEOUTS,
                    run_id="u", stack=True, clock=clock, sleep=clock.sleep)
    assert up.deploy().ok
    assert hub.components[CONTAINER][0] == "1.1.0"
    saved = json.loads(hub.files["/var/lib/hil/staging/snapshot.json"])
    assert saved["run_id"] == "g"  # the hub's saved snapshot is still the original state
    r = up.restore()
    assert r.ok and r.plan.merge == {CONTAINER: "1.0.0"}
    assert hub.components[CONTAINER][0] == "1.0.0"
    assert "/var/lib/hil/staging/snapshot.json" in hub.files  # not ours to forget
    assert good.restore().ok
    assert CONTAINER not in hub.components
    assert "/var/lib/hil/staging/snapshot.json" not in hub.files


def test_candidate_copy_without_pull(clock: FakeClock, tmp_path: Path) -> None:
    shutil.copytree(CANDIDATES / "good", tmp_path / "c")
    (tmp_path / "c/images").mkdir()
    (tmp_path / "c/images/web.tar").write_bytes(b"tar")
    hub = FakeHub(clock)
    gg = Greengrass(hub, sleep=clock.sleep, clock=clock)
    d = Deployment(hub, hub, load_candidate(tmp_path / "c"), greengrass=gg, timeouts=TIMEOUTS,
                   run_id="r", pull_images=False, clock=clock, sleep=clock.sleep)
    assert d.deploy().ok
    assert ("docker", "load", "-i", "/var/lib/hil/staging/r/images/web.tar") in hub.calls
    assert not [c for c in hub.calls if c[:2] == ("docker", "pull")]
