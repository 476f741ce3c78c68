"""The one grammar of every `hil` command: shared options, placeholders, errors -> exit codes.

Placeholders in help: FILE, DIR, HUB (a device name from the inventory), URL, ID, N.
Every command that reads the inventory takes ``--devices/-d FILE`` (env HIL_DEVICES);
tests/unit/test_cli_grammar.py walks all commands and holds them to this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from hil.errors import HilError, InfrastructureError, UserError
from hil.exitcodes import ExitCode

DEVICES_ENV = "HIL_DEVICES"
DEFAULT_DEVICES = Path("devices.yaml")

DevicesOption = Annotated[Path, typer.Option(
    "--devices", "-d", envvar=DEVICES_ENV, metavar="FILE", show_envvar=True,
    help="rack inventory (devices.yaml)")]
HubArgument = Annotated[str, typer.Argument(metavar="HUB", help="device name from the inventory")]
OnlyDevicesOption = Annotated[list[str] | None, typer.Option(
    "--device", metavar="HUB", help="only this device (repeatable)")]


@contextmanager
def exit_codes() -> Iterator[None]:
    """The harness's errors as one line and the command's exit code (no traceback).

    UserError -> 2 (bad input), InfrastructureError -> 3, any other HilError -> 1 (the
    device or the candidate answered something wrong).
    """
    try:
        yield
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(ExitCode.BAD_INPUT) from None
    except InfrastructureError as exc:
        typer.secho(f"infrastructure: {exc}", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(ExitCode.INFRASTRUCTURE) from None
    except HilError as exc:
        typer.secho(f"failed [{exc.failure_class}]: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(ExitCode.CHECK_FAILED) from None
