"""`hil devices`: the inventory as a table (with lease holders), and `hil devices check`."""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import typer
from rich.console import Console
from rich.table import Table

from hil.commands.grammar import DEFAULT_DEVICES, DevicesOption, OnlyDevicesOption, exit_codes
from hil.errors import HilError, UserError
from hil.exitcodes import ExitCode
from hil.inventory import Device, Inventory, load_inventory


def _holders(inv: Inventory) -> dict[str, str]:
    try:
        from hil.lease import make_lease_store

        return {name: info.describe() for name, info in make_lease_store(inv).holders().items()}
    except HilError as exc:
        return {name: f"? ({exc})" for name in inv.devices}


def _table(inv: Inventory) -> Table:
    holders = _holders(inv)
    excluded = set(inv.selection.exclude_tags)
    t = Table(title=f"{inv.lab}: {inv.path} (sha256 {inv.sha256[:12]})")
    for col in ("device", "model", "tags", "ssh", "console", "power", "lease holder"):
        t.add_column(col)
    for d in inv.devices.values():
        power = "-"
        if d.power:
            power = " ".join([d.power.driver, *(f"{k}={v}" for k, v in d.power.params.items())])
        name = d.name + (" (opt-in)" if excluded.intersection(d.tags) else "")
        t.add_row(name, d.model, ", ".join(d.tags), f"{d.ssh.user}@{d.ssh.host}:{d.ssh.port}",
                  d.console.url if d.console else "-", power, holders.get(d.name, "free"))
    return t


@dataclass
class DeviceCheck:
    device: str
    ok: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def check_device(inv: Inventory, dev: Device) -> DeviceCheck:
    """Probe one device's SSH, console and power; says what is wrong, never raises HilError."""
    out = DeviceCheck(dev.name)
    try:
        inv.check_files([dev])
        out.ok["files"] = "key, known_hosts, secrets present"
    except UserError as exc:
        out.problems["files"] = exc.detail
        return out  # without key and pinned host key nothing may connect
    _probe_ssh(inv, dev, out)
    _probe_console(inv, dev, out)
    _probe_power(inv, dev, out)
    return out


def _probe_ssh(inv: Inventory, dev: Device, out: DeviceCheck) -> None:
    from hil.drivers.ssh import SshConnection

    try:
        with SshConnection(dev.name, dev.ssh, inv.timeouts) as ssh:
            res = ssh.run(["uname", "-n"], timeout=inv.timeouts.health)
            out.ok["ssh"] = f"{res.stdout.strip()} in {res.duration * 1000:.1f} ms"
    except HilError as exc:
        out.problems["ssh"] = str(exc)


def _probe_console(inv: Inventory, dev: Device, out: DeviceCheck) -> None:
    if dev.console is None:
        return
    from hil.drivers.console import SerialConsole

    con = SerialConsole(dev.name, dev.console, inv.timeouts, None)
    try:
        con.open()
        state = con.state(inv.timeouts.console_open)
        if str(state) == "silent":
            out.problems["console"] = f"{dev.console.url} is open but silent (no prompt, no shell)"
        else:
            out.ok["console"] = f"{dev.console.url}: {state}"
    except HilError as exc:
        out.problems["console"] = str(exc)
    finally:
        with contextlib.suppress(HilError):
            con.close()


def _probe_power(inv: Inventory, dev: Device, out: DeviceCheck) -> None:
    if dev.power is None:
        return
    try:
        from hil.drivers.power import make_power

        on = make_power(dev, inv.timeouts).status()
        out.ok["power"] = f"{dev.power.driver}: outlet {'on' if on else 'OFF'}"
        if not on:
            out.problems["power"] = "outlet is off"
    except HilError as exc:
        out.problems["power"] = str(exc)


def register(app: typer.Typer) -> None:
    """Add `hil devices` and `hil devices check` to the top-level `hil` app."""
    devices = typer.Typer(help="The rack inventory: list devices, check they answer.",
                          invoke_without_command=True, no_args_is_help=False)

    @devices.callback()
    def show(ctx: typer.Context, path: DevicesOption = DEFAULT_DEVICES) -> None:
        """Print the inventory as a table, with who holds each device."""
        if ctx.invoked_subcommand is not None:
            ctx.obj = path
            return
        with exit_codes():
            Console().print(_table(load_inventory(path)))

    @devices.command("check")
    def check(ctx: typer.Context, path: DevicesOption = DEFAULT_DEVICES,
              device: OnlyDevicesOption = None) -> None:
        """Probe every device over SSH, console and power; exit 1 when any is broken."""
        # paramiko logs its transport thread's tracebacks; the table already says what failed
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
        given = ctx.get_parameter_source("path")
        if ctx.obj is not None and given is not None and given.name == "DEFAULT":
            path = ctx.obj  # `hil devices -d FILE check`
        with exit_codes():
            inv = load_inventory(path)
            selected = inv.select(names=device) if device else list(inv.devices.values())
        with ThreadPoolExecutor(max_workers=min(8, len(selected) or 1)) as pool:
            results = list(pool.map(lambda d: check_device(inv, d), selected))
        t = Table(title=f"check of {inv.path}")
        for col in ("device", "state", "details"):
            t.add_column(col)
        for r in results:
            details = [f"[red]{k}: {v}[/red]" for k, v in r.problems.items()]
            details += [f"{k}: {v}" for k, v in r.ok.items() if k not in r.problems]
            state = "[red]BROKEN[/red]" if r.problems else "[green]ok[/green]"
            t.add_row(r.device, state, "\n".join(details))
        Console().print(t)
        broken = [r.device for r in results if r.problems]
        if broken:
            typer.secho(f"{len(broken)} device(s) need attention: {', '.join(broken)}", err=True,
                        fg=typer.colors.RED)
            raise typer.Exit(ExitCode.CHECK_FAILED)

    @devices.command("schema")
    def schema() -> None:
        """Print the JSON Schema of devices.yaml (for editors; docs/devices.schema.json is a copy)."""
        from hil.inventory_schema import inventory_schema_text

        typer.echo(inventory_schema_text(), nl=False)

    app.add_typer(devices, name="devices")
