"""Deploy a candidate to one hub the way production does, verify it, and undo it.

Phases: snapshot -> upload (SFTP as root into /var/lib/hil/staging/<run-id>/) -> images
(`docker load` of archives, `docker pull` of references) -> `deployment create`
-> wait for a terminal status -> settle (every candidate component stays
RUNNING/FINISHED) . On failure the evidence (nucleus log, component logs,
component list, `docker ps -a`) is attached to the result, and the failure is
classed: product unless the hub itself could not be reached.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath

from pydantic import ValidationError

from hil import cancel
from hil.deploy.candidate import Candidate
from hil.deploy.follow import NucleusLog, StabilityWindow
from hil.deploy.restore import RestoreResult, restore_snapshot
from hil.deploy.snapshot import (
    RUN_ID_RE,
    STAGING_ROOT,
    FileTransfer,
    NothingToRestore,
    PendingDeployment,
    Snapshot,
    UnsafeSnapshot,
    component_set,
    prepare_staging,
    read_saved,
    save,
    staging_path,
)
from hil.deploy.watch import Clock, Sleep, Stability, wait_for_terminal, watch_stable
from hil.drivers.base import CommandResult, Shell
from hil.drivers.greengrass import (
    STABLE_STATES,
    ComponentState,
    DeploymentState,
    DeploymentStatus,
    FailurePolicy,
    Greengrass,
    state_events,
)
from hil.errors import FailureClass, HilError, Phase, ServiceDown
from hil.lease import LeaseLost
from hil.redact import redact
from hil.steps import step
from hil.timeouts import DEFAULT_TIMEOUTS, Timeouts

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 2000
"""How much of each log a failure attaches (logs of a long-lived hub can be large)."""


@dataclass
class DeploymentResult:
    device: str
    run_id: str
    ok: bool = False
    deployment_id: str | None = None
    status: DeploymentStatus | None = None
    components: dict[str, ComponentState | None] = field(default_factory=dict)
    """Last state seen per candidate component (None: not listed)."""
    history: dict[str, list[ComponentState | None]] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    """Seconds per phase, plus "create_to_verified" and "total"."""
    problem: str | None = None
    failure_class: FailureClass | None = None
    attachments: dict[str, str] = field(default_factory=dict)
    image_digests: dict[str, str] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    window: StabilityWindow | None = None
    """The stability window after the deployment when it runs beside the tests (``settle_beside``):
    whoever judges stability joins it (``settled``)."""

    def settled(self) -> Stability:
        """Join the window that runs beside the tests; its length becomes the settle phase."""
        if self.window is None:
            raise RuntimeError(f"{self.device}: no stability window runs beside this deployment")
        stab = self.window.result()
        if "settle" not in self.durations or not self.durations["settle"]:
            self.durations["settle"] = self.window.seconds or 0.0
            if stab.ok:
                self.durations["create_to_verified"] = (self.durations["submit"]
                                                        + self.durations["deployment"]
                                                        + self.durations["settle"])
        return stab

    def summary(self) -> str:
        if self.ok:
            states = ", ".join(f"{n} {s.value if s else '-'}" for n, s in self.components.items())
            return f"{self.device}: deployed ({states}) in {self.durations.get('total', 0):.1f}s"
        return f"{self.device}: deployment failed [{self.failure_class}]: {self.problem}"


class _Failed(Exception):
    """Internal: ends the phases with a product failure already described on the result."""


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class Deployment:
    """One candidate on one hub: ``deploy()`` then ``restore()``."""

    def __init__(self, shell: Shell, files: FileTransfer, candidate: Candidate, *,
                 greengrass: Greengrass | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 policy: FailurePolicy = FailurePolicy.DO_NOTHING, staging_root: str = STAGING_ROOT,
                 run_id: str | None = None, pull_images: bool = True, poll: float = 1.0, stack: bool = False,
                 on_phase: Callable[[str], None] | None = None,
                 fence: Callable[[], None] | None = None, settle_beside: bool = False,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        self.shell = shell
        self.files = files
        self.candidate = candidate
        self.gg = greengrass or Greengrass(shell)
        self.timeouts = timeouts
        self.policy = policy
        self.staging_root = staging_root
        self.run_id = run_id or new_run_id()
        if not RUN_ID_RE.match(self.run_id):
            raise ValueError(f"bad run id {self.run_id!r}")
        self.pull_images = pull_images
        self.poll = poll
        self._phase = on_phase or (lambda _msg: None)
        self._fence = fence or (lambda: None)
        """Called before every destructive step; raises LeaseLost when our lease is no longer ours."""
        self._clock = clock
        self._sleep = sleep
        self.stack = stack
        """Deploy on top of a kept deployment (an upgrade): the hub's saved snapshot stays the original."""
        self.snapshot: Snapshot | None = None
        self._owns_saved = False
        self.settle_beside = settle_beside
        """Watch the settle window in a thread beside the tests (``DeploymentResult.window``) instead
        of within ``deploy()``: the deployment is done once it SUCCEEDED and every component is
        RUNNING/FINISHED, and the checks that read the candidate run while it is watched."""
        self._log: NucleusLog | None = None

    @property
    def device(self) -> str:
        return self.shell.device

    @property
    def staging(self) -> str:
        return staging_path(self.staging_root, self.run_id)

    # -- deploy ------------------------------------------------------------------------
    def deploy(self) -> DeploymentResult:
        """Run every phase; never raises for a failed deployment or an unreachable hub."""
        res = DeploymentResult(self.device, self.run_id)
        t0 = self._clock()
        with step(f"deploy candidate {self.candidate.components}", device=self.device,
                  run_id=self.run_id) as st:
            try:
                self._timed(res, "snapshot", self._take_snapshot, res)
                self._timed(res, "upload", self._upload)
                self._timed(res, "images", self._images, res)
                self._follow_log()
                self._timed(res, "submit", self._submit, res)
                self._timed(res, "deployment", self._wait, res)
                if self.settle_beside:
                    self._timed(res, "verify", self._verify_and_watch, res)
                    res.durations["settle"] = 0.0  # set when the window is joined (settled)
                else:
                    self._timed(res, "settle", self._settle, res)
                    res.durations["create_to_verified"] = (res.durations["submit"]
                                                           + res.durations["deployment"]
                                                           + res.durations["settle"])
                res.ok = True
            except _Failed:
                res.failure_class = FailureClass.PRODUCT
            except (PendingDeployment, LeaseLost):
                raise  # bad use / not our hub any more: not a deployment outcome
            except HilError as exc:
                res.problem = str(exc)
                res.failure_class = exc.failure_class
            finally:
                self._close_log()
            if not res.ok and res.failure_class is not FailureClass.INFRASTRUCTURE:
                self._rebooted_meanwhile(res, self._clock() - t0)
            if not res.ok and res.failure_class is not FailureClass.INFRASTRUCTURE:
                self._phase("collecting logs")
                self._collect_evidence(res)
            res.durations["total"] = self._clock() - t0
            # what the hub said (logs, CLI output) may carry secrets: every reader gets it redacted
            res.problem = redact(res.problem) if res.problem else res.problem
            res.attachments = {name: redact(text) for name, text in res.attachments.items()}
            st.record(res.ok)
            for name, text in res.attachments.items():
                st.attach(name, text)
        return res

    def _rebooted_meanwhile(self, res: DeploymentResult, elapsed: float) -> None:
        """A hub that lost power mid-deployment answers "nucleus not there" afterwards: that is
        infrastructure, not the candidate. PID 1's age tells (also inside a container)."""
        try:
            got = self.shell.run(["ps", "-o", "etimes=", "-p", "1"], timeout=self.timeouts.ssh_command)
            up = int(got.stdout.strip()) if got.ok else None
        except (HilError, ValueError):
            return
        if up is not None and up < elapsed:
            res.problem = f"{self.device}: the hub rebooted during the deployment (up {up}s): {res.problem}"
            res.failure_class = FailureClass.INFRASTRUCTURE

    def _timed(self, res: DeploymentResult, name: str, fn: Callable[..., None], *args: object) -> None:
        cancel.check()  # no new phase once a stop was asked for
        t = self._clock()
        try:
            fn(*args)
        finally:
            res.durations[name] = self._clock() - t

    def _take_snapshot(self, res: DeploymentResult) -> None:
        self._phase("recording the hub's component set")
        pending = read_saved(self.shell, self.staging_root)
        if pending is not None and not self.stack:
            raise PendingDeployment(
                f"a candidate {pending.candidate} from run {pending.run_id} ({pending.taken}) is still "
                f"deployed; run `hil rollback {self.device}` first", device=self.device)
        try:
            current = component_set(self.gg.component_list())
        except HilError as exc:
            if exc.failure_class is FailureClass.PRODUCT:  # the nucleus does not answer before we touched it
                raise ServiceDown(f"{self.device}: hub not ready for a deployment: {exc}", device=self.device,
                                  services=("greengrass",), phase=Phase.BEFORE_CANDIDATE) from exc
            raise
        try:
            self.snapshot = Snapshot(
                device=self.device, run_id=self.run_id, taken=datetime.now(UTC).isoformat(timespec="seconds"),
                components=current, candidate=dict(self.candidate.components), staging_root=self.staging_root)
        except ValidationError as exc:  # the component list came from the hub: untrusted too
            raise UnsafeSnapshot(f"{self.device}: the hub's component list cannot be recorded: "
                                 f"{exc.errors()[0]['msg']}") from None
        res.snapshot = self.snapshot
        if pending is None:
            self._fence()
            save(self.shell, self.files, self.snapshot)
            self._owns_saved = True

    def _upload(self) -> None:
        files = [(local, staging_path(self.staging, *rel.split("/")))
                 for local, rel in self.candidate.files()]
        self._fence()
        self._phase(f"uploading {len(files)} file(s) to {self.staging}")
        prepare_staging(self.shell, self.staging_root)
        dirs = sorted({str(PurePosixPath(remote).parent) for _, remote in files}
                      | {staging_path(self.staging, "recipes")})
        self.shell.run(["mkdir", "-p", "--", *dirs], sudo=True).check()
        for local, remote in files:
            self.files.put(local, remote, sudo=True)

    def _images(self, res: DeploymentResult) -> None:
        archives = self.candidate.image_archives
        self._fence()
        if archives:
            self.shell.run(["mkdir", "-p", "--", staging_path(self.staging, "images")], sudo=True).check()
        for archive in archives:
            self._phase(f"loading image archive {archive.name}")
            remote = staging_path(self.staging, "images", archive.name)
            self.files.put(archive, remote, sudo=True)
            self._check(self.shell.run(["docker", "load", "-i", remote], sudo=True,
                                       timeout=self.timeouts.deployment), res, f"docker load {archive.name}")
        if not self.pull_images:
            return
        for ref in self.candidate.images:
            self._phase(f"pulling {ref}")
            # after "--": a reference can never be read as an option of docker's
            self._check(self.shell.run(["docker", "pull", "--", ref], sudo=True,
                                       timeout=self.timeouts.deployment), res, f"docker pull {ref}")
            got = self.shell.run(["docker", "image", "inspect", "--format",
                                  "{{range .RepoDigests}}{{println .}}{{end}}", "--", ref], sudo=True)
            digests = [d.strip() for d in got.stdout.splitlines() if "@sha256:" in d]
            if got.ok and digests:
                res.image_digests[ref] = digests[0].split("@", 1)[1]

    def _check(self, result: CommandResult, res: DeploymentResult, what: str) -> None:
        if not result.ok:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            res.problem = f"{self.device}: {what} exited {result.exit_status}: {' | '.join(tail)}"
            raise _Failed

    def _submit(self, res: DeploymentResult) -> None:
        self._fence()
        self._phase(f"deployment create --merge {self.candidate.components}")
        has_artifacts = self.candidate.artifact_dir.is_dir() and any(self.candidate.artifact_dir.iterdir())
        res.deployment_id = self.gg.create_deployment(
            staging_path(self.staging, "recipes"),
            staging_path(self.staging, "artifacts") if has_artifacts else None,
            merge=self.candidate.components, policy=self.policy)

    def _follow_log(self) -> None:
        """Follow greengrass.log from before the submission: the wait ends on the nucleus's own
        "deployment finished" line, not at the next poll (a scripted sleep in unit tests is kept)."""
        if self._sleep is time.sleep:
            self._log = NucleusLog(self.shell, self.gg.root).open()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait(self, res: DeploymentResult) -> None:
        assert res.deployment_id is not None
        self._phase(f"waiting for deployment {res.deployment_id}")
        wake = self._log.waker(res.deployment_id) if self._log is not None and self._log.live else self._sleep
        res.status = wait_for_terminal(self.gg, res.deployment_id, self.timeouts.deployment, poll=self.poll,
                                       clock=self._clock, sleep=wake)
        if res.status.status is not DeploymentState.SUCCEEDED:
            cause = res.status.failure_cause or res.status.detailed_status or "no cause given"
            res.problem = f"{self.device}: deployment {res.deployment_id} {res.status.status.value}: {cause}"
            listed = {c.name: c.state for c in self.gg.component_list()}
            res.components = {n: listed.get(n) for n in self.candidate.components}
            raise _Failed

    def _window(self, lane: str) -> StabilityWindow:
        return StabilityWindow(self.gg, self.candidate.components, self.timeouts.settle, poll=self.poll,
                               title=f"watch {', '.join(self.candidate.components)} for "
                                     f"{self.timeouts.settle:.0f}s after the deployment", lane=lane)

    def _verify_and_watch(self, res: DeploymentResult) -> None:
        """Every component RUNNING/FINISHED now and no relapse since the deployment was created; then
        the settle window starts beside the tests."""
        listed = {c.name: c for c in self.gg.component_list()}
        res.components = {n: (listed[n].state if n in listed else None) for n in self.candidate.components}
        res.history = {n: [s] for n, s in res.components.items()}
        bad = [f"{n} {s.value if s else 'absent'}" for n, s in res.components.items()
               if s not in STABLE_STATES]
        bad += [f"{n} at {listed[n].version}, expected {v}" for n, v in self.candidate.components.items()
                if n in listed and listed[n].version != v]
        if bad:
            res.problem = f"{self.device}: after the deployment: {', '.join(bad)}"
            raise _Failed
        since = res.status.created if res.status else None
        if since is not None and (problem := self._relapse_in_log(since)):
            res.problem = problem
            raise _Failed
        res.window = self._window("window after deployment").start()

    def _settle(self, res: DeploymentResult) -> None:
        self._phase(f"watching components for {self.timeouts.settle:.0f}s")
        if self._sleep is time.sleep:  # the nucleus's log as it is written, with a list at both ends
            stab = self._window("main").start().result()
        else:
            stab = watch_stable(self.gg, self.candidate.components, self.timeouts.settle,
                                poll=self.poll, clock=self._clock, sleep=self._sleep)
        res.components, res.history = stab.states, stab.history
        since = res.status.created if res.status else None
        if not stab.ok:
            # a sample shows where the component is now (STARTING again, say); the log says what
            # happened first (it went ERRORED)
            res.problem = (self._relapse_in_log(since) if since is not None else None) or stab.problem
            raise _Failed
        # Sampling can miss a quick ERRORED -> Recover -> RUNNING; the nucleus log cannot.
        if since is not None:
            problem = self._relapse_in_log(since)
            if problem:
                res.problem = problem
                raise _Failed

    def _relapse_in_log(self, since: datetime) -> str | None:
        """A candidate component that left RUNNING/FINISHED for ERRORED/BROKEN after reaching it."""
        try:
            text = self.gg.nucleus_log(tail=LOG_TAIL_LINES)
        except HilError as exc:  # evidence is a bonus here: the sampled states already passed
            log.warning("%s: greengrass.log not readable for the settle check: %s", self.device, exc)
            return None
        for name in self.candidate.components:
            reached = False
            for ev in state_events(text, name):
                if ev.timestamp < since:
                    continue
                if ev.new in STABLE_STATES:
                    reached = True
                elif reached and ev.new in (ComponentState.ERRORED, ComponentState.BROKEN):
                    return (f"{self.device}: {name} went {ev.new.value} at {ev.timestamp:%H:%M:%S.%f} "
                            "after the deployment succeeded (greengrass.log)")
        return None

    # -- evidence ----------------------------------------------------------------------
    def _collect_evidence(self, res: DeploymentResult) -> None:
        """Best effort: one missing piece must not hide the others."""
        pieces: list[tuple[str, Callable[[], str]]] = [
            ("greengrass.log", lambda: self.gg.nucleus_log(tail=LOG_TAIL_LINES)),
            *[(f"{name}.log", (lambda n=name: self.gg.logs(n, tail=LOG_TAIL_LINES)))
              for name in self.candidate.components],
            ("component list", lambda: self._raw(self.gg.argv(["component", "list"]))),
            ("docker ps -a", lambda: self._raw(["docker", "ps", "-a"])),
        ]
        if res.deployment_id:
            pieces.append(("deployment status",
                           lambda: self._raw(self.gg.argv(["deployment", "status", "-i",
                                                            res.deployment_id or ""]))))
        for name, fetch in pieces:
            try:
                res.attachments[name] = fetch()
            except HilError as exc:
                res.attachments[name] = f"(could not collect: {exc})"

    def _raw(self, argv: list[str]) -> str:
        r = self.shell.run(argv, sudo=True)
        return r.stdout + (f"\n[stderr]\n{r.stderr}" if r.stderr.strip() else "") + \
            (f"\n[exit {r.exit_status}]" if r.exit_status else "")

    # -- restore -----------------------------------------------------------------------
    def restore(self, on_phase: Callable[[str], None] | None = None) -> RestoreResult:
        """Back to the snapshot taken by deploy(); the snapshot saved on the hub is used when none."""
        snap = self.snapshot
        forget_saved = self._owns_saved
        if snap is None:
            snap, forget_saved = read_saved(self.shell, self.staging_root), True
        if snap is None:
            raise NothingToRestore("nothing to restore: no snapshot was taken or saved on the hub",
                                   device=self.device)
        self._fence()
        return restore_snapshot(self.shell, self.gg, snap, timeouts=self.timeouts, poll=self.poll,
                                forget_saved=forget_saved,
                                on_phase=on_phase or self._phase, clock=self._clock, sleep=self._sleep)
