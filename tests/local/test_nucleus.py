"""The hub's Greengrass nucleus stand-in and greengrass-cli, run for real on this host in a temporary root.

Every output format is compared with the samples in docs/greengrass.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTFS = REPO / "lab" / "hil_lab" / "hub" / "rootfs"
NUCLEUS_DIR = ROOTFS / "opt" / "hil-lab" / "nucleus"
START = NUCLEUS_DIR / "start"
CLI = ROOTFS / "greengrass" / "v2" / "bin" / "greengrass-cli"
SUBMITTED = re.compile(r"^Local deployment submitted! Deployment Id: ([0-9a-f-]{36})$")
STATUS_LINE = re.compile(r"^(\S+): ([A-Z_]+)$")


def hub_python() -> str:
    """The Debian python3 (as in the hub) when it has PyYAML, else this interpreter."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import yaml"], capture_output=True, check=False)
    return "/usr/bin/python3" if probe.returncode == 0 else sys.executable


PYTHON = hub_python()


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def write_recipe(directory: Path, name: str, version: str, lifecycle: dict[str, Any], *,
                 deps: dict[str, dict[str, str]] | None = None, config: dict[str, Any] | None = None,
                 artifacts: list[dict[str, Any]] | None = None) -> Path:
    doc: dict[str, Any] = {"RecipeFormatVersion": "2020-01-25", "ComponentName": name,
                           "ComponentVersion": version}
    if config is not None:
        doc["ComponentConfiguration"] = {"DefaultConfiguration": config}
    if deps:
        doc["ComponentDependencies"] = deps
    manifest: dict[str, Any] = {"Platform": {"os": "linux"}, "Lifecycle": lifecycle}
    if artifacts:
        manifest["Artifacts"] = artifacts
    doc["Manifests"] = [manifest]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}.yaml"
    path.write_text(json.dumps(doc, indent=2))  # JSON text is valid YAML
    return path


class NucleusProcess:
    def __init__(self, root: Path, posix_user: str = "nobody:nogroup") -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "HIL_NUCLEUS_PYTHON": PYTHON, "HIL_NUCLEUS_POSIX_USER": posix_user,
                    "AWS_IOT_THING_NAME": "test-thing"}
        self.env.pop("GGC_ROOT_PATH", None)

    def start(self) -> None:
        token = self.root / "cli_ipc_info" / f"user-{os.geteuid()}"
        token.unlink(missing_ok=True)
        self.proc = subprocess.Popen([str(START), str(self.root)], env=self.env, start_new_session=True)
        wait_for("the nucleus to write its CLI token", token.exists, timeout=15)

    def kill(self) -> None:
        """A power cut: SIGKILL, no Shutdown scripts."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cli(self, *args: str, root_option: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        prefix = ["--ggcRootPath", str(self.root)] if root_option else []
        return subprocess.run([PYTHON, str(CLI), *prefix, *args], capture_output=True, text=True, timeout=90,
                              check=False, **kwargs)

    def deploy(self, *args: str) -> str:
        result = self.cli("deployment", "create", *args)
        assert result.returncode == 0, result.stderr
        match = SUBMITTED.match(result.stdout.strip())
        assert match and result.stdout.count("\n") == 1, result.stdout
        return match.group(1)

    def status(self, deployment_id: str) -> list[str]:
        result = self.cli("deployment", "status", "-i", deployment_id)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    def wait_done(self, deployment_id: str, timeout: float = 30.0) -> list[str]:
        def done() -> list[str] | None:
            lines = self.status(deployment_id)
            m = STATUS_LINE.match(lines[0])
            assert m, lines
            return lines if m.group(2) in ("SUCCEEDED", "FAILED", "CANCELED") else None

        return wait_for(f"deployment {deployment_id} to finish", done, timeout)  # type: ignore[no-any-return]

    def components(self) -> dict[str, dict[str, str]]:
        result = self.cli("component", "list")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "Components currently running in Greengrass:"
        out: dict[str, dict[str, str]] = {}
        for i in range(1, len(lines), 4):
            name = lines[i].removeprefix("Component Name: ")
            out[name] = {k: lines[i + j].removeprefix(f"    {k}: ")
                         for j, k in ((1, "Version"), (2, "State"), (3, "Configuration"))}
        return out

    def log(self, name: str = "greengrass") -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text() if path.exists() else ""


def make_root() -> Path:
    # Components run as 'nobody', so the path down to the root must be traversable.
    base = Path(tempfile.mkdtemp(prefix="gg-nucleus-"))
    base.chmod(0o755)
    return base


def remove_root(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)


DAM = "aws.greengrass.DockerApplicationManager"
CREATED_ON = re.compile(r"^Created on: \d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2} UTC$")
LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z \[(INFO|WARN|ERROR|DEBUG)\] \([^)]+\) [\w.$-]+: .*$")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="components switch users: run as root")


@pytest.fixture
def base() -> Iterator[Path]:
    path = make_root()
    yield path
    remove_root(path)


@pytest.fixture
def gg(base: Path) -> Iterator[NucleusProcess]:
    nucleus = NucleusProcess(base / "root")
    nucleus.start()
    yield nucleus
    nucleus.stop()


def transitions(log: str, name: str) -> list[tuple[str, str]]:
    pattern = re.compile(r"service-set-state\. \{serviceName=" + re.escape(name)
                         + r", currentState=(\w+), newState=(\w+)\}")
    return pattern.findall(log)


# ---- CLI parsing and exit codes -------------------------------------------------------------------


@pytest.fixture
def idle(base: Path) -> NucleusProcess:
    """A root without a running nucleus: option parsing never reaches the IPC socket."""
    return NucleusProcess(base / "root")


def test_no_arguments_exits_2_with_usage(idle: NucleusProcess) -> None:
    result = idle.cli(root_option=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Usage: greengrass-cli" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["deployment", "create", "--bogus"], "Unknown option: '--bogus'"),
    (["deployment", "create", "-fp", "rollback"], "expected one of [ROLLBACK, DO_NOTHING] (case-sensitive)"),
    (["deployment", "create", "-m", "NoVersion"], "should be in KEY=VALUE format"),
    (["deployment", "create", "--recipeDir"], "Missing required parameter for option '--recipeDir'"),
    (["deployment", "status"], "Missing required option: '--deploymentId=<deploymentId>'"),
    (["component", "details"], "Missing required option: '--name=<componentName>'"),
    (["deployment", "frobnicate"], "Unmatched argument"),
])
def test_parse_errors_exit_0_with_usage_on_stderr(idle: NucleusProcess, args: list[str],
                                                   message: str) -> None:
    result = idle.cli(*args)
    assert result.returncode == 0
    assert result.stdout == ""
    assert message in result.stderr
    assert "Usage: greengrass-cli" in result.stderr


def test_unknown_ids_and_names_exit_1(gg: NucleusProcess) -> None:
    status = gg.cli("deployment", "status", "-i", "8c9b3fb4-5d0a-4e0e-9b0f-1d2a3b4c5d6e")
    assert status.returncode == 1 and status.stdout == ""
    assert "Cannot find deployment" in status.stderr
    details = gg.cli("component", "details", "-n", "com.example.Missing")
    assert details.returncode == 1
    assert "Component with name com.example.Missing not found in Greengrass" in details.stderr


def test_cli_needs_the_token_of_its_user(gg: NucleusProcess) -> None:
    token = gg.root / "cli_ipc_info" / "user-0"
    assert token.stat().st_mode & 0o777 == 0o600
    assert (gg.root / "ipc" / "cli.socket").stat().st_mode & 0o777 == 0o600
    result = subprocess.run([PYTHON, str(CLI), "--ggcRootPath", str(gg.root), "component", "list"],
                            capture_output=True, text=True, user="nobody", group="nogroup", extra_groups=[],
                            timeout=60, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "auth token" in result.stderr


def test_root_from_environment(gg: NucleusProcess) -> None:
    result = subprocess.run([PYTHON, str(CLI), "deployment", "list"], capture_output=True, text=True,
                            env={**os.environ, "GGC_ROOT_PATH": str(gg.root)}, timeout=60, check=False)
    assert result.returncode == 0 and result.stdout == ""  # nothing printed when empty


# ---- deployments ----------------------------------------------------------------------------------


def test_startup_component_runs_with_interpolation_and_logs(gg: NucleusProcess, base: Path) -> None:
    recipes, artifacts = base / "recipes", base / "artifacts"
    (artifacts / "com.hbs.Good" / "1.0.0").mkdir(parents=True)
    (artifacts / "com.hbs.Good" / "1.0.0" / "hello.txt").write_text("artifact says hi\n")
    write_recipe(recipes, "com.hbs.Good", "1.0.0", {
        "Setenv": {"GREETING": "{configuration:/greeting}"},
        "Install": {"Script": "id -u > {work:path}/install-uid", "RequiresPrivilege": True},
        "Startup": "echo \"$GREETING $(id -un) $(pwd)\"; cat {artifacts:path}/hello.txt; "
                   "echo root={kernel:rootPath} thing={iot:thingName} keep={unknown:thing}; echo oops >&2",
    }, deps={DAM: {"VersionRequirement": "~2.0.0"}}, config={"greeting": "hello", "nested": {"n": 1}},
        artifacts=[{"URI": "s3://bucket/hello.txt"}])
    dep_id = gg.deploy("--recipeDir", str(recipes), "--artifactDir", str(artifacts),
                       "--merge", "com.hbs.Good=1.0.0")
    lines = gg.wait_done(dep_id)
    assert lines == [f"{dep_id}: SUCCEEDED", lines[1]] and CREATED_ON.match(lines[1])

    listing = gg.cli("component", "list").stdout.splitlines()
    i = listing.index("Component Name: com.hbs.Good")
    assert listing[0] == "Components currently running in Greengrass:"
    assert listing[i + 1:i + 4] == ["    Version: 1.0.0", "    State: RUNNING",
                                    '    Configuration: {"greeting":"hello","nested":{"n":1}}']
    comps = gg.components()
    assert comps["aws.greengrass.Nucleus"]["State"] == "FINISHED"
    assert comps[DAM]["Version"].startswith("2.0.")
    for builtin in ("aws.greengrass.Cli", "DeploymentService", "TelemetryAgent", "FleetStatusService",
                    "UpdateSystemPolicyService"):
        assert builtin in comps
    assert comps["UpdateSystemPolicyService"]["Version"] == "0.0.0"
    details = gg.cli("component", "details", "-n", "com.hbs.Good")
    assert details.returncode == 0 and details.stdout.splitlines() == listing[i:i + 4]

    work = gg.root / "work" / "com.hbs.Good"
    assert (work / "install-uid").read_text().strip() == "0"  # RequiresPrivilege
    log = gg.log("com.hbs.Good")
    assert all(LOG_LINE.match(line) for line in log.splitlines()), log
    startup_ctx = "{scriptName=services.com.hbs.Good.lifecycle.Startup"
    assert f"[INFO] (Copier) com.hbs.Good: stdout. hello nobody {work}. {startup_ctx}" in log
    assert "stdout. artifact says hi." in log
    assert f"stdout. root={gg.root} thing=test-thing keep={{unknown:thing}}." in log
    assert f"[WARN] (Copier) com.hbs.Good: stderr. oops. {startup_ctx}" in log
    assert "com.hbs.Good: shell-runner-start. {scriptName=services.com.hbs.Good.lifecycle.Install" in log
    assert transitions(gg.log(), "com.hbs.Good") == [("NEW", "INSTALLED"), ("INSTALLED", "STARTING"),
                                                    ("STARTING", "RUNNING")]
    assert all(LOG_LINE.match(line) for line in gg.log().splitlines())
    assert (gg.root / "packages" / "recipes" / "com.hbs.Good-1.0.0.yaml").exists()
    assert (gg.root / "packages" / "artifacts" / "com.hbs.Good" / "1.0.0" / "hello.txt").exists()

    listing_out = gg.cli("deployment", "list").stdout.splitlines()
    assert listing_out[0] == f"Deployment ID: {dep_id}" and CREATED_ON.match(listing_out[1])
    assert listing_out[2] == "Status: SUCCEEDED"


def _b64_sha256(data: bytes) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_artifact_digest_is_verified_and_one_changed_byte_fails_the_deployment(
        gg: NucleusProcess, base: Path) -> None:
    """OWASP I4 on the hub: the recipe's Digest is checked before anything changes."""
    name = "com.hbs.Digested"
    body = b"#!/bin/sh\necho version-1\n"

    def deploy(version: str, payload: bytes, digest: str) -> list[str]:
        recipes, artifacts = base / f"r{version}", base / f"a{version}"
        (artifacts / name / version).mkdir(parents=True)
        (artifacts / name / version / "run.sh").write_bytes(payload)
        write_recipe(recipes, name, version, {"Startup": "sh {artifacts:path}/run.sh"},
                     artifacts=[{"URI": "s3://bucket/run.sh", "Digest": digest, "Algorithm": "SHA-256"}])
        return gg.wait_done(gg.deploy("--recipeDir", str(recipes), "--artifactDir", str(artifacts),
                                      "--merge", f"{name}={version}"))

    assert deploy("1.0.0", body, _b64_sha256(body))[0].endswith(": SUCCEEDED")
    tampered = bytearray(body.replace(b"version-1", b"version-2"))
    good_digest = _b64_sha256(bytes(tampered))
    tampered[-2] ^= 0x01  # one byte changed after the recipe was made
    lines = deploy("2.0.0", bytes(tampered), good_digest)
    assert lines[0].endswith(": FAILED"), lines
    assert "Detailed Status: FAILED_NO_STATE_CHANGE" in lines
    stack = "DEPLOYMENT_FAILURE, ARTIFACT_DOWNLOAD_ERROR, ARTIFACT_CHECKSUM_MISMATCH"
    assert f"Deployment Error Stack: {stack}" in lines
    assert any(ln.startswith("Deployment Failure Cause: Integrity check for downloaded artifact failed")
               for ln in lines), lines
    assert gg.components()[name]["Version"] == "1.0.0" and gg.components()[name]["State"] == "RUNNING"
    assert "the digest on disk does not match the digest in the recipe" in gg.log()
    assert not (gg.root / "packages" / "artifacts" / name / "2.0.0").exists()


def test_run_component_finishes(gg: NucleusProcess, base: Path) -> None:
    write_recipe(base / "r", "com.hbs.OneShot", "1.0.0", {"Run": "echo done"})
    dep_id = gg.deploy("-r", str(base / "r"), "-m", "com.hbs.OneShot=1.0.0")
    assert gg.wait_done(dep_id)[0] == f"{dep_id}: SUCCEEDED"
    wait_for("OneShot FINISHED", lambda: gg.components()["com.hbs.OneShot"]["State"] == "FINISHED")
    exited = "com.hbs.OneShot: Run script exited. {exitCode=0, serviceName=com.hbs.OneShot"
    assert exited in gg.log("com.hbs.OneShot")
    assert transitions(gg.log(), "com.hbs.OneShot")[-2:] == [("STARTING", "RUNNING"), ("RUNNING", "FINISHED")]


def test_failing_startup_goes_broken_and_do_nothing_leaves_it(gg: NucleusProcess, base: Path) -> None:
    write_recipe(base / "r", "com.hbs.Bad", "1.0.0",
                 {"Startup": "echo starting; exit 3", "Recover": "echo recover"})
    dep_id = gg.deploy("-r", str(base / "r"), "-m", "com.hbs.Bad=1.0.0")
    lines = gg.wait_done(dep_id)
    assert lines[0] == f"{dep_id}: FAILED" and CREATED_ON.match(lines[1])
    assert lines[2:] == ["Detailed Status: FAILED_ROLLBACK_NOT_REQUESTED",
                         "Deployment Error Stack: DEPLOYMENT_FAILURE, COMPONENT_UPDATE_ERROR, "
                         "COMPONENT_BROKEN",
                         "Deployment Error Types: USER_COMPONENT_ERROR",
                         "Deployment Failure Cause: Service com.hbs.Bad in broken state after deployment"]
    assert gg.components()["com.hbs.Bad"]["State"] == "BROKEN"
    errored_from = [t for t in transitions(gg.log(), "com.hbs.Bad") if t[1] in ("ERRORED", "BROKEN")]
    assert errored_from == [("STARTING", "ERRORED"), ("STARTING", "ERRORED"), ("STARTING", "BROKEN")]
    assert gg.log("com.hbs.Bad").count("stdout. recover.") == 2


def test_upgrade_then_failed_upgrade_rolls_back(gg: NucleusProcess, base: Path) -> None:
    r = base / "r"
    write_recipe(r, "com.hbs.App", "1.0.0", {"Startup": "echo v1", "Shutdown": "echo bye v1"})
    write_recipe(r, "com.hbs.App", "1.1.0", {"Startup": "echo v1.1", "Shutdown": "echo bye v1.1"})
    write_recipe(r, "com.hbs.App", "1.2.0", {"Startup": "exit 1"})
    first = gg.deploy("-r", str(r), "-m", "com.hbs.App=1.0.0")
    assert gg.wait_done(first)[0].endswith("SUCCEEDED")
    upgrade = gg.deploy("-r", str(r), "-m", "com.hbs.App=1.1.0")
    assert gg.wait_done(upgrade)[0].endswith("SUCCEEDED")
    assert gg.components()["com.hbs.App"]["Version"] == "1.1.0"
    assert "stdout. bye v1." in gg.log("com.hbs.App")

    bad = gg.deploy("-r", str(r), "-m", "com.hbs.App=1.2.0", "-fp", "ROLLBACK")
    lines = gg.wait_done(bad)
    assert lines[0].endswith("FAILED") and lines[2] == "Detailed Status: FAILED_ROLLBACK_COMPLETE"
    app = gg.components()["com.hbs.App"]
    assert (app["Version"], app["State"]) == ("1.1.0", "RUNNING")


def test_remove_stops_and_drops_component(gg: NucleusProcess, base: Path) -> None:
    r = base / "r"
    write_recipe(r, "com.hbs.A", "1.0.0", {"Startup": "true", "Shutdown": "echo shutting down"})
    write_recipe(r, "com.hbs.B", "1.0.0", {"Startup": "true"})
    gg.wait_done(gg.deploy("-r", str(r), "-m", "com.hbs.A=1.0.0", "-m", "com.hbs.B=1.0.0"))
    dep_id = gg.deploy("--remove", "com.hbs.A")
    assert gg.wait_done(dep_id)[0].endswith("SUCCEEDED")
    comps = gg.components()
    assert "com.hbs.A" not in comps and comps["com.hbs.B"]["State"] == "RUNNING"  # previous roots - removed
    assert "stdout. shutting down." in gg.log("com.hbs.A")


def test_dependency_ranges_and_unresolvable_dependency(gg: NucleusProcess, base: Path) -> None:
    r = base / "r"
    for version in ("1.0.0", "1.4.2", "2.0.0"):
        write_recipe(r, "com.hbs.Lib", version, {"Startup": f"echo lib {version}"})
    write_recipe(r, "com.hbs.User", "1.0.0", {"Startup": "echo user"},
                 deps={"com.hbs.Lib": {"VersionRequirement": ">=1.0.0 <2.0.0", "DependencyType": "HARD"}})
    dep_id = gg.deploy("-r", str(r), "-m", "com.hbs.User=1.0.0")
    assert gg.wait_done(dep_id)[0].endswith("SUCCEEDED")
    comps = gg.components()
    assert comps["com.hbs.Lib"]["Version"] == "1.4.2"
    main_log = gg.log()
    assert main_log.index("serviceName=com.hbs.Lib, currentState=STARTING, newState=RUNNING") < \
        main_log.index("serviceName=com.hbs.User, currentState=INSTALLED, newState=STARTING")

    write_recipe(base / "r2", "com.hbs.NeedsNewDocker", "1.0.0", {"Startup": "true"},
                 deps={DAM: {"VersionRequirement": "~3.0.0"}})
    bad = gg.deploy("-r", str(base / "r2"), "-m", "com.hbs.NeedsNewDocker=1.0.0")
    lines = gg.wait_done(bad)
    assert lines[0].endswith("FAILED") and lines[2] == "Detailed Status: FAILED_NO_STATE_CHANGE"
    assert any(line.startswith("Deployment Failure Cause: No local or cloud component version satisfies") and
               f"Component {DAM} version constraints: com.hbs.NeedsNewDocker requires ~3.0.0" in line
               for line in lines)
    assert gg.components() == comps


def test_bad_recipe_is_reported_by_status_not_by_create(gg: NucleusProcess, base: Path) -> None:
    r = base / "r"
    r.mkdir()
    (r / "broken.yaml").write_text("RecipeFormatVersion: '2020-01-25'\nComponentName: com.hbs.X\n"
                                   "ComponentVersion: 1.0.0\n")  # no manifests
    dep_id = gg.deploy("-r", str(r), "-m", "com.hbs.X=1.0.0")
    lines = gg.wait_done(dep_id)
    assert lines[0].endswith("FAILED") and lines[2] == "Detailed Status: FAILED_NO_STATE_CHANGE"
    assert "no manifests" in lines[-1]


def test_json_recipe_case_insensitive_keys_and_platform_choice(gg: NucleusProcess, base: Path) -> None:
    r = base / "r"
    r.mkdir()
    (r / "com.hbs.Json-1.0.0.json").write_text("""{
      "recipeformatversion": "2020-01-25", "componentname": "com.hbs.Json", "COMPONENTVERSION": "1.0.0",
      "manifests": [
        {"platform": {"os": "windows"}, "lifecycle": {"run": "exit 9"}},
        {"platform": {"os": "linux", "architecture": "/amd64|aarch64|arm|x86/"},
         "lifecycle": {"startup": {"script": "echo picked", "skipif": "exists /nonexistent/file"}}},
        {"platform": {"os": "*"}, "lifecycle": {"run": "exit 8"}}
      ]}""")
    dep_id = gg.deploy("-r", str(r), "-m", "com.hbs.Json=1.0.0")
    assert gg.wait_done(dep_id)[0].endswith("SUCCEEDED")
    assert gg.components()["com.hbs.Json"]["State"] == "RUNNING"
    assert "stdout. picked." in gg.log("com.hbs.Json")


def test_deployments_run_one_at_a_time(gg: NucleusProcess, base: Path) -> None:
    r = base / "r"
    write_recipe(r, "com.hbs.Slow", "1.0.0", {"Startup": "sleep 1"})
    write_recipe(r, "com.hbs.Fast", "1.0.0", {"Startup": "true"})
    first = gg.deploy("-r", str(r), "-m", "com.hbs.Slow=1.0.0")
    second = gg.deploy("-r", str(r), "-m", "com.hbs.Fast=1.0.0")
    assert gg.status(second)[0] == f"{second}: QUEUED"
    assert gg.wait_done(first)[0].endswith("SUCCEEDED")
    assert gg.wait_done(second)[0].endswith("SUCCEEDED")
    comps = gg.components()
    assert comps["com.hbs.Slow"]["State"] == comps["com.hbs.Fast"]["State"] == "RUNNING"
    listing = gg.cli("deployment", "list").stdout
    assert listing.count("Deployment ID: ") == 2 and "\n\nDeployment ID: " in listing


def test_restart_and_stop(gg: NucleusProcess, base: Path) -> None:
    r = base / "r"
    write_recipe(r, "com.hbs.Svc", "1.0.0", {"Startup": "echo started", "Shutdown": "echo stopped"})
    gg.wait_done(gg.deploy("-r", str(r), "-m", "com.hbs.Svc=1.0.0"))
    result = gg.cli("component", "restart", "-n", "com.hbs.Svc")
    assert (result.returncode, result.stdout) == (0, "")
    wait_for("a second Startup", lambda: gg.log("com.hbs.Svc").count("stdout. started.") == 2)
    wait_for("RUNNING after restart", lambda: gg.components()["com.hbs.Svc"]["State"] == "RUNNING")
    result = gg.cli("component", "stop", "--names", "com.hbs.Svc")
    assert (result.returncode, result.stdout) == (0, "")
    wait_for("FINISHED after stop", lambda: gg.components()["com.hbs.Svc"]["State"] == "FINISHED")
    assert gg.log("com.hbs.Svc").count("stdout. stopped.") == 2


def test_power_cycle_brings_components_back(gg: NucleusProcess, base: Path) -> None:
    r = base / "r"
    write_recipe(r, "com.hbs.Persist", "1.0.0", {"Install": "echo install", "Startup": "echo up"},
                 config={"k": "v"})
    dep_id = gg.deploy("-r", str(r), "-m", "com.hbs.Persist=1.0.0")
    gg.wait_done(dep_id)
    gg.kill()
    gg.start()
    wait_for("Persist RUNNING after reboot",
             lambda: gg.components().get("com.hbs.Persist", {}).get("State") == "RUNNING")
    assert gg.components()["com.hbs.Persist"]["Configuration"] == '{"k":"v"}'
    assert gg.log("com.hbs.Persist").count("stdout. up.") == 2
    assert gg.log("com.hbs.Persist").count("stdout. install.") == 2  # Install re-runs at every start
    assert STATUS_LINE.match(gg.status(dep_id)[0]).group(2) == "SUCCEEDED"  # type: ignore[union-attr]


def test_run_component_that_crashes_succeeds_first_then_goes_broken(gg: NucleusProcess, base: Path) -> None:
    write_recipe(base / "r", "com.hbs.Crash", "1.0.0", {"Run": "sleep 0.3; exit 2"})
    dep_id = gg.deploy("-r", str(base / "r"), "-m", "com.hbs.Crash=1.0.0")
    # RUNNING as soon as spawned, so the deployment succeeds: checks must keep watching.
    assert gg.wait_done(dep_id)[0].endswith("SUCCEEDED")
    wait_for("Crash BROKEN", lambda: gg.components()["com.hbs.Crash"]["State"] == "BROKEN")
    errored = [t for t in transitions(gg.log(), "com.hbs.Crash") if t[1] in ("ERRORED", "BROKEN")]
    assert errored == [("RUNNING", "ERRORED"), ("RUNNING", "ERRORED"), ("RUNNING", "BROKEN")]
    assert "Run script exited. {exitCode=2" in gg.log("com.hbs.Crash")


def test_startup_timeout_counts_as_an_error(gg: NucleusProcess, base: Path) -> None:
    write_recipe(base / "r", "com.hbs.Hang", "1.0.0", {"Startup": {"Script": "sleep 30", "Timeout": 1}})
    dep_id = gg.deploy("-r", str(base / "r"), "-m", "com.hbs.Hang=1.0.0", "-fp", "ROLLBACK")
    lines = gg.wait_done(dep_id)
    assert lines[0].endswith("FAILED") and lines[2] == "Detailed Status: FAILED_ROLLBACK_COMPLETE"
    assert "com.hbs.Hang" not in gg.components()  # rolled back to the empty set
    assert gg.log("com.hbs.Hang").count("Startup script timed out") == 3
