"""`hil lab ...`: the virtual rack's command line (registered by hil/cli.py)."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from typing import Annotated

import docker
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from hil.errors import UserError
from hil_lab import engine, faults, rack
from hil_lab.inventory_writer import inventory_path, needs_own_inventory, write_inventory
from hil_lab.pdu_client import ask_pdu
from hil_lab.status import HubStatus, lab_status
from hil_lab.topology import DEFAULT_HUBS, MAX_HUBS, PLAIN_NAME, REPO_ROOT
from hil_lab.topology import rack as rack_specs

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
# a table wider than 80 columns also when piped (CI logs)
out = Console(width=None if sys.stdout.isatty() else 120)

NO_LAB_EXIT = 3
"""`hil lab status` exit code when no lab is up (tests skip on it)."""
CYCLE_OFF_SECONDS = 2.0


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=out, transient=False)


def _mark(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]no[/red]"


def _table(rows: list[HubStatus]) -> Table:
    table = Table(title="virtual lab")
    for column in ("hub", "address", "power", "SSH", "console", "broker", "engine", "nucleus",
                   "lease"):
        table.add_column(column)
    for r in rows:
        power = {"on": "[green]on[/green]", "hung": "[yellow]hung[/yellow]"}.get(r.power, "[red]off[/red]")
        table.add_row(r.name, r.address, power, _mark(r.ssh), _mark(r.console), _mark(r.broker),
                      r.engine, r.nucleus, r.lease)
    return table


@app.command()
def up(
    hubs: Annotated[int, typer.Option("--hubs", metavar="N", min=1, max=MAX_HUBS,
                                      help="hardened hubs to start")]
    = DEFAULT_HUBS,
    with_vulnerable: Annotated[bool, typer.Option("--with-vulnerable",
                                                  help="also start hub-vuln (deliberate defects)")] = False,
    with_plain: Annotated[bool, typer.Option(
        "--with-plain", help="also start hub-plain (plain Debian: sshd and a broker only, a few defects)")]
    = False,
) -> None:
    """Start the virtual rack (builds images on first use)."""
    specs = rack_specs(hubs, with_vulnerable=with_vulnerable)
    with _progress() as progress:
        result = rack.up(specs, progress=progress, with_plain=with_plain)
    names = [h.name for h in result.hubs] + ([PLAIN_NAME] if result.plain else [])
    out.print(f"lab up in {result.seconds:.0f}s: {', '.join(names)}")
    if needs_own_inventory(hubs):
        target = write_inventory(specs, inventory_path(hubs), plain=result.plain)
        out.print(f"inventory for this lab: {target.relative_to(REPO_ROOT)} "
                  f"(use it with --devices {target.relative_to(REPO_ROOT)} "
                  f"or export HIL_DEVICES={target})")
    else:
        out.print("inventory: devices.yaml" + ("" if with_vulnerable else
                                               " (hub-vuln is listed there but not started)"))
    client = engine.existing_client()
    if client is not None:
        out.print(_table(lab_status(client)))


@app.command()
def down(
    stop_engine: Annotated[bool, typer.Option(
        "--stop-engine", help="also stop the dockerd that `hil lab up` started")] = False,
) -> None:
    """Remove every container, network and volume of the lab (images and lab/.state stay)."""
    result = rack.down(stop_engine=stop_engine)
    out.print(f"removed {len(result.containers)} container(s), {len(result.networks)} network(s), "
              f"{len(result.volumes)} volume(s)"
              + ("; stopped rackd" if result.rackd_stopped else "")
              + ("; stopped dockerd" if result.engine_stopped else "")
              + f" in {result.seconds:.1f}s")


@app.command()
def status() -> None:
    """Table of hubs: power, SSH, console, broker, engine, nucleus. Exit 3 when no lab is up."""
    client = engine.existing_client()
    if client is None:
        out.print("no Docker engine answers, so no virtual lab is up (`hil lab up` starts both)")
        raise typer.Exit(NO_LAB_EXIT)
    rows = lab_status(client)
    if not rows:
        out.print("no virtual lab is up (`hil lab up` starts one)")
        raise typer.Exit(NO_LAB_EXIT)
    out.print(_table(rows))


class PowerAction(StrEnum):
    on = "on"
    off = "off"
    cycle = "cycle"
    status = "status"


@app.command()
def power(
    hub: Annotated[str, typer.Argument(metavar="HUB", help="hub name, e.g. hub-01 or hub-vuln")],
    action: Annotated[PowerAction, typer.Argument(metavar="ACTION", help="on, off, cycle or status")],
) -> None:
    """Switch a hub's outlet through the lab PDU's HTTP API, as a user would."""
    client = _client()
    spec, _container = rack.hub_container(client, hub)
    if action is PowerAction.cycle:
        ask_pdu(spec.outlet, "Off")
        time.sleep(CYCLE_OFF_SECONDS)
        state = ask_pdu(spec.outlet, "On")
    elif action is PowerAction.status:
        state = ask_pdu(spec.outlet)
    else:
        state = ask_pdu(spec.outlet, action.value.capitalize())
    out.print(f"{spec.name} (outlet {spec.outlet}): {'ON' if state else 'OFF'}")


class FaultKind(StrEnum):
    cable_pull = "cable-pull"
    cable_plug = "cable-plug"
    hang = "hang"
    kill_sshd = "kill-sshd"
    slow_network = "slow-network"
    clear = "clear"


@app.command()
def fault(
    hub: Annotated[str, typer.Argument(metavar="HUB", help="hub name, e.g. hub-01")],
    kind: Annotated[FaultKind, typer.Argument(metavar="FAULT", help="which fault")],
    ms: Annotated[int | None, typer.Argument(
        metavar="MS", help="slow-network: delay in milliseconds")] = None,
) -> None:
    """Inject a fault: cable-pull|cable-plug|hang|kill-sshd|slow-network MS|clear."""
    client = _client()
    spec, container = rack.hub_container(client, hub)
    if kind is FaultKind.slow_network:
        if ms is None:
            raise UserError("slow-network needs a delay: `hil lab fault HUB slow-network MS`")
        faults.slow_network(client, spec, container, ms)
    else:
        if ms is not None:
            raise UserError(f"{kind.value} takes no argument")
        faults.FAULTS[kind.value](client, spec, container)
    out.print(f"{spec.name}: {kind.value}" + (f" {ms} ms" if ms is not None else ""))


def _client() -> docker.DockerClient:
    client = engine.existing_client()
    if client is None:
        raise UserError("no Docker engine answers, so no virtual lab is up (`hil lab up` starts both)")
    return client
