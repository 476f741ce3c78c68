"""`hil lease list` and `hil lease release HUB --force`: see and override device leases.

Works on whichever store is configured (``--store``, $HIL_LEASE_STORE, the inventory's
``lease.store``, else file locks on this host). A forced release is an operator's
override of a holder that is stuck or gone: it is logged (who, from where, when, what,
whose lease) to stderr and appended as a JSON line to the release log.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hil.commands.grammar import DEFAULT_DEVICES, DevicesOption, HubArgument, exit_codes
from hil.errors import InventoryError
from hil.exitcodes import ExitCode
from hil.inventory import Inventory, load_inventory
from hil.lease import LeaseInfo, LeaseStore, lease_store_url, make_lease_store, redact_url

RELEASE_LOG = Path("reports") / "lease-release.log"
"""Relative to the inventory's folder unless --log says otherwise."""

StoreOpt = typer.Option(None, "--store", metavar="URL",
                        help="lease store URL (default: $HIL_LEASE_STORE, the inventory's lease.store, "
                             "else file locks on this host)")

LogOpt = typer.Option(None, "--log", metavar="FILE",
                      help="release log (default: reports/lease-release.log next to the inventory)")


def _store(inv: Inventory, url: str | None) -> LeaseStore:
    return make_lease_store(inv, url)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _operator() -> str:
    # under sudo, name the person rather than root
    return os.environ.get("SUDO_USER") or getpass.getuser()


def release_record(inv: Inventory, url: str | None, device: str, dropped: LeaseInfo | None,
                   reason: str | None) -> dict[str, object]:
    """What the release log keeps about one forced release."""
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "operator": _operator(), "operator_host": socket.gethostname(), "operator_pid": os.getpid(),
        "lab": inv.lab, "device": device, "store": redact_url(url) if url else "file locks",
        "reason": reason,
        "dropped": None if dropped is None else dropped.to_json_dict(),
    }


def register(app: typer.Typer) -> None:
    """Add `hil lease list` and `hil lease release` to the top-level `hil` app."""
    lease = typer.Typer(help="Device leases: who holds which hub; release a stuck one (operators).",
                        no_args_is_help=True)

    @lease.command("list")
    def list_(path: DevicesOption = DEFAULT_DEVICES, store: str | None = StoreOpt) -> None:
        """Who holds which device (and, on a shared store, who waits)."""
        with exit_codes():
            inv = load_inventory(path)
            url = lease_store_url(inv, store)
            st = _store(inv, store)
            held = st.holders()
            list_waiters = getattr(st, "waiters", None)  # only shared stores queue waiters
            waiters: list[tuple[int, list[str], str]] = list_waiters() if list_waiters else []
        t = Table(title=f"leases of {inv.lab} ({redact_url(url) if url else 'file locks on this host'})")
        for col in ("device", "holder", "runner", "ci job", "since", "token", "expires"):
            # names and tokens are copied by people (`hil lease release HUB`): never wrapped
            t.add_column(col, no_wrap=col in ("device", "token"))
        for name in sorted(set(inv.devices) | set(held)):
            info = held.get(name)
            if info is None:
                t.add_row(name, "free", "", "", "", "", "")
                continue
            left = "-" if info.expires is None else f"in {info.expires - time.time():.0f}s"
            t.add_row(name, f"pid {info.holder_pid} on {info.holder_host}", info.runner_id or "-",
                      info.ci_job or "-", _when(info.since), str(info.fencing_token or "-"), left)
        Console().print(t)
        for ticket, devices, who in waiters:
            Console().print(f"waiting #{ticket}: {who} for {', '.join(devices)}")

    @lease.command("release")
    def release(
        device: HubArgument,
        force: bool = typer.Option(False, "--force", help="required: drop the lease whoever holds it"),
        path: DevicesOption = DEFAULT_DEVICES,
        store: str | None = StoreOpt,
        reason: str | None = typer.Option(None, "--reason", metavar="TEXT",
                                          help="why (goes into the release log)"),
        log_file: Path | None = LogOpt,
    ) -> None:
        """Drop HUB's lease (operators: for a holder that is stuck or gone). Logged."""
        with exit_codes():
            inv = load_inventory(path)
            if device not in inv.devices:
                raise InventoryError(f"unknown device {device} (known: {', '.join(inv.devices)})",
                                     file=str(inv.path), device=device)
        if not force:
            typer.secho(f"error: releasing {device} takes it away from its holder; "
                        "say --force if that is what you want", err=True, fg=typer.colors.RED)
            raise typer.Exit(ExitCode.BAD_INPUT)
        url = lease_store_url(inv, store)
        with exit_codes():
            dropped = _store(inv, store).force_release(device)
        record = release_record(inv, url, device, dropped, reason)
        target = log_file or inv.path.parent / RELEASE_LOG
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        whose = dropped.describe() if dropped else "nobody held it"
        typer.echo(f"{record['time']} {record['operator']}@{record['operator_host']} force-released "
                   f"{device} ({whose}); logged to {target}", err=True)

    app.add_typer(lease, name="lease")
