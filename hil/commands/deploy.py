"""`hil deploy HUB --candidate DIR` and `hil rollback HUB`: what the fixtures do, by hand.

Exit codes (hil.exitcodes.ExitCode): 0 ok, 1 the deployment (or its rollback) failed,
2 bad input, 3 infrastructure (hub unreachable, hub in use, host key refused); 128 + N
after signal N (SIGTERM 143, SIGINT 130: cancelled, the hub restored, inconclusive).
Everything written (the result, the hub's logs) and printed from the hub is redacted.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hil import cancel
from hil.commands.grammar import DEFAULT_DEVICES, DevicesOption, HubArgument, exit_codes
from hil.errors import FailureClass, HilError, InfrastructureError
from hil.exitcodes import ExitCode
from hil.redact import redact

if TYPE_CHECKING:
    from hil.deploy.candidate import Candidate
    from hil.deploy.deployment import Deployment, DeploymentResult
    from hil.deploy.restore import RestoreResult
    from hil.deploy.snapshot import FileTransfer
    from hil.drivers.base import Shell
    from hil.inventory import Device, Inventory
    from hil.lease.fencing import Fence

EXIT_OK, EXIT_FAILED, EXIT_INFRASTRUCTURE = ExitCode.OK, ExitCode.CHECK_FAILED, ExitCode.INFRASTRUCTURE


def _load_device(devices: Path, hub: str) -> tuple[Inventory, Device]:
    from hil.inventory import load_inventory

    inv = load_inventory(devices)
    [device] = inv.select([hub])
    inv.check_files([device])
    return inv, device


class HubBusy(InfrastructureError):
    """Another process holds the hub's lease."""


@contextmanager
def _connect(inv: Inventory, device: Device) -> Iterator[tuple[Shell, FileTransfer, Fence]]:
    """The hub's lease, its SSH connection (host key pinned by the inventory's known_hosts) and
    the lease's fence on the hub (called before every destructive step, like the fixtures do)."""
    from hil.drivers.ssh import SshConnection
    from hil.lease import make_lease_store
    from hil.lease.fencing import Fence

    store = make_lease_store(inv)
    lease = store.try_acquire(device.name)
    if lease is None:  # a person at a terminal wants to know now, not after the lease timeout
        holder = store.holders().get(device.name)
        raise HubBusy(f"{device.name} is in use ({holder.describe() if holder else 'holder unknown'})")
    try:
        with SshConnection(device.name, device.ssh, inv.timeouts) as ssh:
            yield ssh, ssh, Fence(ssh, lease, timeout=inv.timeouts.ssh_command)
    finally:
        lease.release()


class _Progress:
    """A spinner with the current phase, and a timed line per finished phase."""

    def __init__(self, console: Console, hub: str) -> None:
        self.console = console
        self.hub = hub
        self.t0 = time.monotonic()
        self.last: str | None = None
        self.last_t = self.t0
        self.status = console.status(f"{hub}: starting")

    def __enter__(self) -> Callable[[str], None]:
        self.status.__enter__()
        return self.phase

    def __exit__(self, *exc: object) -> None:
        self._close_phase()
        self.status.__exit__(None, None, None)

    def _close_phase(self) -> None:
        if self.last is not None:
            now = time.monotonic()
            self.console.print(f"  [green]✓[/] {self.last} [dim]({now - self.last_t:.1f}s)[/]")
            self.last = None

    def phase(self, message: str) -> None:
        self._close_phase()
        self.last, self.last_t = message, time.monotonic()
        self.status.update(f"{self.hub}: {message} [dim](+{self.last_t - self.t0:.0f}s)[/]")


def _print_result(console: Console, res: DeploymentResult) -> None:
    table = Table(title=f"{res.device}: candidate", title_justify="left")
    table.add_column("component")
    table.add_column("state")
    for name, state in res.components.items():
        colour = "green" if res.ok else "red"
        table.add_row(name, f"[{colour}]{state.value if state else 'absent'}[/]")
    if res.components:
        console.print(table)
    if res.deployment_id:
        console.print(f"deployment id: {res.deployment_id}")
    for ref, digest in res.image_digests.items():
        console.print(f"image {ref} [dim]{digest}[/]")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in res.durations.items())
    console.print(f"[dim]{timings}[/]")
    console.print(("[green]" if res.ok else "[red]") + escape(redact(res.summary())) + "[/]")


def _print_restore(console: Console, r: RestoreResult) -> None:
    if r.ok:
        what = "nothing to change" if r.plan.empty else \
            f"removed {list(r.plan.remove)}, re-merged {r.plan.merge}"
        console.print(f"[green]{r.device}: restored the previous component set ({what}) "
                      f"in {r.duration:.1f}s[/]")
    else:
        console.print(f"[red]{r.device}: rollback FAILED: {escape(redact(r.problem or ''))}[/]")
        console.print(f"the snapshot stays on the hub: retry with `hil rollback {r.device}`")


def deploy(
    hub: HubArgument,
    candidate: Annotated[Path, typer.Option(
        "--candidate", metavar="DIR", help="the candidate folder (recipes/, artifacts/)")],
    devices: DevicesOption = DEFAULT_DEVICES,
    keep_deployed: Annotated[bool, typer.Option(
        "--keep-deployed",
        help="leave the candidate on the hub (undo later with `hil rollback HUB`)")] = False,
    stack: Annotated[bool, typer.Option(
        "--stack", help="deploy on top of a kept deployment (an upgrade); restores to the kept one, "
        "and `hil rollback` still restores the original set")] = False,
    evidence: Annotated[Path, typer.Option(
        metavar="DIR", help="where the result and the failure logs are written")] = Path("reports/deploy"),
) -> None:
    """Deploy a candidate to HUB, verify it stays RUNNING, then restore the hub (unless --keep-deployed).

    SIGTERM or Ctrl-C stops it: the hub is put back as it was within timeouts.cancel_grace, the
    lease released, and the result written as inconclusive (exit 128 + the signal's number); a
    second signal aborts at once (the next lease holder restores the hub)."""
    from hil.deploy.candidate import load_candidate

    console = Console()
    with exit_codes():
        cand = load_candidate(candidate)
        inv, device = _load_device(devices, hub)
        console.print(f"candidate {cand.components} [dim]sha256 {cand.identity.digest[:16]}[/]")
        with cancel.cancellable(inv.timeouts.cancel_grace):
            try:
                code = _deploy_and_restore(console, inv, device, cand, keep_deployed=keep_deployed,
                                           stack=stack, evidence=evidence)
            except cancel.Cancelled as exc:
                console.print(f"[yellow]{hub}: cancelled by {signal.Signals(exc.signum).name}[/]")
                code = cancel.exit_status()
    raise typer.Exit(code)


def _deploy_and_restore(console: Console, inv: Inventory, device: Device, cand: Candidate, *,
                        keep_deployed: bool, stack: bool, evidence: Path) -> int:
    from hil.deploy.deployment import Deployment
    from hil.drivers.greengrass import Greengrass

    hub = device.name
    with _connect(inv, device) as (shell, files, fence):
        progress = _Progress(console, hub)
        d = Deployment(shell, files, cand, greengrass=Greengrass(shell), timeouts=inv.timeouts, stack=stack,
                       fence=fence, on_phase=progress.phase)
        try:
            with progress:
                res = d.deploy()
        except cancel.Cancelled as exc:
            _restore_after_cancel(console, d, evidence, exc)
            raise
        _print_result(console, res)
        folder = _save_result(res, evidence, _outcome(res))
        if res.attachments:
            console.print(f"logs of the failure: {folder}")
        code = EXIT_OK
        if not res.ok:
            infra = res.failure_class is FailureClass.INFRASTRUCTURE
            code = EXIT_INFRASTRUCTURE if infra else EXIT_FAILED
        if keep_deployed or d.snapshot is None:
            if d.snapshot is not None:
                console.print(f"kept on the hub; undo with `hil rollback {hub}`")
            return code
        if res.failure_class is FailureClass.INFRASTRUCTURE:
            console.print(f"[yellow]hub not reachable: run `hil rollback {hub}` when it is back[/]")
            return code
        try:
            with _Progress(console, hub) as phase:
                r: RestoreResult = d.restore(on_phase=phase)
        except cancel.Cancelled as exc:
            _restore_after_cancel(console, d, evidence, exc)
            raise
        _print_restore(console, r)
        if not r.ok and code == EXIT_OK:
            code = EXIT_FAILED
        return code


def _outcome(res: DeploymentResult) -> str:
    return "passed" if res.ok else str(res.failure_class or FailureClass.PRODUCT)


def _restore_after_cancel(console: Console, d: Deployment, evidence: Path, exc: cancel.Cancelled) -> None:
    """Put the hub back to what it was before this command, within the grace period; the result
    file says inconclusive either way."""
    from hil.deploy.deployment import DeploymentResult

    res = DeploymentResult(d.device, d.run_id, problem=f"cancelled by {signal.Signals(exc.signum).name}")
    if d.snapshot is None:
        console.print(f"{d.device}: nothing was changed on the hub")
        _save_result(res, evidence, "inconclusive", restored=True)
        return
    try:
        with _Progress(console, d.device) as phase:
            r = d.restore(on_phase=phase)  # bounded by what the grace period leaves
        _print_restore(console, r)
        restored, problem = r.ok, r.problem
    except HilError as err:
        restored, problem = False, str(err)
        console.print(f"[red]{d.device}: not restored after the cancellation: {escape(redact(problem))}; "
                      f"`hil rollback {d.device}` (or the next lease holder) restores it[/]")
    res.problem = f"{res.problem}; hub restored" if restored else f"{res.problem}; not restored: {problem}"
    _save_result(res, evidence, "inconclusive", restored=restored)


def _save_result(res: DeploymentResult, out_dir: Path, outcome: str, *, restored: bool | None = None) -> Path:
    """<evidence>/<hub>/<run id>/: result.json (outcome: passed, product, infrastructure or
    inconclusive) and the failure's logs, all redacted (hub logs may carry secrets)."""
    folder = out_dir / res.device / res.run_id
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in res.attachments.items():
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
        (folder / f"{safe}.txt").write_text(redact(text), encoding="utf-8")
    doc = {"device": res.device, "run_id": res.run_id, "outcome": outcome, "ok": res.ok,
           "deployment_id": res.deployment_id, "problem": redact(res.problem or "") or None,
           "components": {n: (s.value if s else None) for n, s in res.components.items()},
           "durations": res.durations, "image_digests": res.image_digests, "restored": restored}
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(folder / "result.json")
    return folder


def rollback(
    hub: HubArgument,
    devices: DevicesOption = DEFAULT_DEVICES,
) -> None:
    """Restore the component set HUB had before `hil deploy --keep-deployed` (snapshot saved on the hub)."""
    from hil.deploy.restore import restore_saved
    from hil.deploy.snapshot import saved_snapshot_path
    from hil.drivers.greengrass import Greengrass

    console = Console()
    with exit_codes():
        inv, device = _load_device(devices, hub)
        try:
            with cancel.cancellable(inv.timeouts.cancel_grace), \
                    _connect(inv, device) as (shell, _files, fence), _Progress(console, hub) as phase:
                done = restore_saved(shell, Greengrass(shell), timeouts=inv.timeouts, fence=fence,
                                     on_phase=phase)
        except cancel.Cancelled as exc:
            console.print(f"[yellow]{hub}: cancelled by {signal.Signals(exc.signum).name}; the snapshot "
                          f"stays on the hub: run `hil rollback {hub}` again[/]")
            raise typer.Exit(cancel.exit_status()) from None
        if done is None:
            console.print(f"{hub}: nothing to roll back (no {saved_snapshot_path()})")
            raise typer.Exit(EXIT_OK)
        snap, r = done
        console.print(f"{hub}: rolled back candidate {snap.candidate} of run {snap.run_id} "
                      f"({snap.taken}) to {snap.components}")
        _print_restore(console, r)
        raise typer.Exit(EXIT_OK if r.ok else EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level `hil` app."""
    app.command("deploy")(deploy)
    app.command("rollback")(rollback)
