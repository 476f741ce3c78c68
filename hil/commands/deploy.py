"""`hil deploy HUB --candidate DIR` and `hil rollback HUB`: what the fixtures do, by hand.

Exit codes (hil.exitcodes.ExitCode): 0 ok, 1 the deployment (or its rollback) failed,
2 bad input, 3 infrastructure (hub unreachable, hub in use, host key refused).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from hil.commands.grammar import DEFAULT_DEVICES, DevicesOption, HubArgument, exit_codes
from hil.errors import FailureClass, InfrastructureError
from hil.exitcodes import ExitCode

if TYPE_CHECKING:
    from hil.deploy.deployment import DeploymentResult
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


def _save_attachments(res: DeploymentResult, out_dir: Path) -> Path | None:
    if not res.attachments:
        return None
    folder = out_dir / res.device / res.run_id
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in res.attachments.items():
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
        (folder / f"{safe}.txt").write_text(text)
    return folder


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
    console.print(("[green]" if res.ok else "[red]") + res.summary() + "[/]")


def _print_restore(console: Console, r: RestoreResult) -> None:
    if r.ok:
        what = "nothing to change" if r.plan.empty else \
            f"removed {list(r.plan.remove)}, re-merged {r.plan.merge}"
        console.print(f"[green]{r.device}: restored the previous component set ({what}) "
                      f"in {r.duration:.1f}s[/]")
    else:
        console.print(f"[red]{r.device}: rollback FAILED: {r.problem}[/]")
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
        metavar="DIR", help="where failure logs are written")] = Path("reports/deploy"),
) -> None:
    """Deploy a candidate to HUB, verify it stays RUNNING, then restore the hub (unless --keep-deployed)."""
    from hil.deploy.candidate import load_candidate
    from hil.deploy.deployment import Deployment
    from hil.drivers.greengrass import Greengrass

    console = Console()
    code = EXIT_OK
    with exit_codes():
        cand = load_candidate(candidate)
        inv, device = _load_device(devices, hub)
        console.print(f"candidate {cand.components} [dim]sha256 {cand.identity.digest[:16]}[/]")
        with _connect(inv, device) as (shell, files, fence):
            gg = Greengrass(shell)
            with _Progress(console, hub) as phase:
                d = Deployment(shell, files, cand, greengrass=gg, timeouts=inv.timeouts, on_phase=phase,
                               stack=stack, fence=fence)
                res = d.deploy()
            _print_result(console, res)
            if (folder := _save_attachments(res, evidence)) is not None:
                console.print(f"logs of the failure: {folder}")
            if not res.ok:
                infra = res.failure_class is FailureClass.INFRASTRUCTURE
                code = EXIT_INFRASTRUCTURE if infra else EXIT_FAILED
            if keep_deployed or d.snapshot is None:
                if d.snapshot is not None:
                    console.print(f"kept on the hub; undo with `hil rollback {hub}`")
                raise typer.Exit(code)
            if res.failure_class is FailureClass.INFRASTRUCTURE:
                console.print(f"[yellow]hub not reachable: run `hil rollback {hub}` when it is back[/]")
                raise typer.Exit(code)
            with _Progress(console, hub) as phase:
                r: RestoreResult = d.restore(on_phase=phase)
            _print_restore(console, r)
            if not r.ok and code == EXIT_OK:
                code = EXIT_FAILED
    raise typer.Exit(code)


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
        with _connect(inv, device) as (shell, _files, fence), _Progress(console, hub) as phase:
            done = restore_saved(shell, Greengrass(shell), timeouts=inv.timeouts, fence=fence, on_phase=phase)
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
