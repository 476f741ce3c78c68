"""Put a hub back to a snapshot: remove what the candidate added, re-merge what it replaced.

Earlier versions are still in the nucleus's package store (packages/recipes and
packages/artifacts); they are copied into the run's staging folder and used as the
restore deployment's --recipeDir / --artifactDir, so nothing leaves the hub.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from hil import cancel
from hil.deploy.follow import NucleusLog
from hil.deploy.snapshot import (
    RUN_ID_RE,
    STAGING_ROOT,
    Snapshot,
    component_set,
    forget,
    prepare_staging,
    read_saved,
    staging_path,
)
from hil.deploy.watch import Clock, Sleep, wait_for_terminal
from hil.drivers.base import Shell
from hil.drivers.greengrass import STABLE_STATES, DeploymentState, DeploymentStatus, FailurePolicy, Greengrass
from hil.errors import ProductError
from hil.steps import step
from hil.timeouts import DEFAULT_TIMEOUTS, Timeouts


class RestoreFailed(ProductError):
    """The hub could not be put back to its snapshot."""


@dataclass(frozen=True)
class RestorePlan:
    remove: tuple[str, ...]
    merge: dict[str, str]

    @property
    def empty(self) -> bool:
        return not self.remove and not self.merge


def plan_restore(snapshot: Mapping[str, str], current: Mapping[str, str]) -> RestorePlan:
    """Components to remove (not in the snapshot) and versions to re-merge (changed or lost).

    Removing a name that is only a dependency is harmless: the nucleus computes the new
    root set as old roots - removed + merged, and drops dependencies nobody needs.
    """
    remove = tuple(sorted(n for n in current if n not in snapshot))
    merge = {n: v for n, v in sorted(snapshot.items()) if current.get(n) != v}
    return RestorePlan(remove, merge)


def diff_sets(want: Mapping[str, str], have: Mapping[str, str]) -> list[str]:
    """Human-readable differences between two component sets."""
    out = []
    for n in sorted(set(want) | set(have)):
        if n not in have:
            out.append(f"{n} {want[n]} missing")
        elif n not in want:
            out.append(f"{n} {have[n]} not expected")
        elif want[n] != have[n]:
            out.append(f"{n} at {have[n]}, expected {want[n]}")
    return out


@dataclass
class RestoreResult:
    device: str
    ok: bool
    plan: RestorePlan
    deployment_id: str | None = None
    status: DeploymentStatus | None = None
    problem: str | None = None
    duration: float = 0.0
    attachments: dict[str, str] = field(default_factory=dict)


def restore_snapshot(shell: Shell, gg: Greengrass, snap: Snapshot, *,
                     timeouts: Timeouts = DEFAULT_TIMEOUTS, poll: float = 1.0, forget_saved: bool = True,
                     on_phase: Callable[[str], None] | None = None,
                     clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> RestoreResult:
    """Restore ``snap`` on the hub, verify the component set, then remove staging files.

    On success the run's staging folder and (with ``forget_saved``) the snapshot saved on
    the hub are deleted; on failure both stay, for `hil rollback` to try again and for a
    person to look at.
    """
    if not RUN_ID_RE.match(snap.run_id):  # it becomes part of an `rm -rf` path
        raise RestoreFailed(f"refusing to restore: bad run id {snap.run_id!r}")
    timeouts = cancel.bounded(timeouts)  # after a SIGTERM: only what the grace period leaves
    phase = on_phase or (lambda _msg: None)
    t0 = clock()
    with step("restore component set", device=gg.device, run_id=snap.run_id) as st:
        phase("reading the component list")
        current = component_set(gg.component_list())
        plan = plan_restore(snap.components, current)
        result = RestoreResult(gg.device, False, plan)
        if not plan.empty:
            phase(f"restore deployment: remove {list(plan.remove)}, merge {plan.merge}")
            recipe_dir, artifact_dir = _stage_previous_versions(shell, gg, snap, plan)
            # the nucleus's log, followed from before the submission, ends the wait the moment the
            # deployment is finished (a scripted sleep in unit tests stays as given)
            with NucleusLog(shell, gg.root, sleep=sleep).open() if sleep is time.sleep \
                    else contextlib.nullcontext() as nlog:
                result.deployment_id = gg.create_deployment(
                    recipe_dir, artifact_dir, merge=plan.merge, remove=plan.remove,
                    policy=FailurePolicy.DO_NOTHING)
                phase(f"waiting for restore deployment {result.deployment_id}")
                wake = nlog.waker(result.deployment_id) if nlog is not None and nlog.live else sleep
                result.status = wait_for_terminal(gg, result.deployment_id, timeouts.deployment, poll=poll,
                                                  clock=clock, sleep=wake)
        phase("verifying the component set")
        result.problem = _verify(gg, snap, plan, timeouts.settle, poll, clock, sleep)
        if result.status is not None and result.status.status is not DeploymentState.SUCCEEDED:
            cause = result.status.failure_cause or result.status.detailed_status or ""
            result.problem = (f"restore deployment {result.deployment_id} {result.status.status.value}"
                              f"{': ' + cause if cause else ''}"
                              f"{'; ' + result.problem if result.problem else ''}")
        result.ok = result.problem is None
        if result.ok:
            phase("removing staging files")
            shell.run(["rm", "-rf", "--", snap.staging], sudo=True).check()
            if forget_saved:
                forget(shell, snap.staging_root)
        else:
            st.attach("problem", result.problem or "")
        result.duration = clock() - t0
        st.record(result.ok)
    return result


def restore_saved(shell: Shell, gg: Greengrass, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                  skip_runs: Collection[str] = (), fence: Callable[[], None] | None = None,
                  on_phase: Callable[[str], None] | None = None,
                  title: str = "restore the saved snapshot",
                  staging_root: str = STAGING_ROOT) -> tuple[Snapshot, RestoreResult] | None:
    """Restore the snapshot a kept or interrupted deployment left saved on the hub (None: there is
    none, or it belongs to one of ``skip_runs``). ``fence`` runs before anything is changed; a
    snapshot that is not one the harness wrote raises UnsafeSnapshot before anything runs."""
    snap = read_saved(shell, staging_root)
    if snap is None or snap.run_id in skip_runs:
        return None
    with step(title, device=shell.device, run_id=snap.run_id) as st:
        if fence is not None:
            fence()
        return snap, st.record(restore_snapshot(shell, gg, snap, timeouts=timeouts, on_phase=on_phase))


def _stage_previous_versions(shell: Shell, gg: Greengrass, snap: Snapshot,
                             plan: RestorePlan) -> tuple[str | None, str | None]:
    """Copy the versions to re-merge out of the nucleus's store into the run's staging folder.
    Every path is built from the harness's roots and validated names (``staging_path``)."""
    if not plan.merge:
        return None, None
    prepare_staging(shell, snap.staging_root)
    recipes = staging_path(snap.staging, "restore", "recipes")
    artifacts = staging_path(snap.staging, "restore", "artifacts")
    shell.run(["mkdir", "-p", "--", recipes, artifacts], sudo=True).check()
    store = staging_path(gg.root, "packages", "recipes")
    shell.run(["cp", "-a", "--", store + "/.", recipes], sudo=True).check()
    copied = False
    for name, version in plan.merge.items():
        src = staging_path(gg.root, "packages", "artifacts", name, version)
        if shell.run(["test", "-d", src], sudo=True).exit_status != 0:
            continue  # a component without artifacts
        dest = staging_path(artifacts, name)
        shell.run(["mkdir", "-p", "--", dest], sudo=True).check()
        shell.run(["cp", "-a", "--", src, dest + "/"], sudo=True).check()
        copied = True
    return recipes, artifacts if copied else None


def _verify(gg: Greengrass, snap: Snapshot, plan: RestorePlan, period: float, poll: float,
            clock: Clock, sleep: Sleep) -> str | None:
    """None when the component set equals the snapshot and re-merged components are stable."""
    deadline = clock() + period
    while True:
        listed = gg.component_list()
        have = component_set(listed)
        diffs = diff_sets(snap.components, have)
        unstable = [f"{c.name} {c.state.value}" for c in listed
                    if c.name in plan.merge and c.state not in STABLE_STATES]
        if not diffs and not unstable:
            return None
        if clock() >= deadline:
            return f"{gg.device}: component set differs from the snapshot: " + "; ".join(diffs + unstable)
        sleep(poll)
