"""`hil`: the command line for QA engineers, operators and CI."""

from __future__ import annotations

import sys

import typer

from hil.errors import UserError
from hil.exitcodes import ExitCode, one_line

app = typer.Typer(
    name="hil",
    help="Hardware-in-the-loop harness for Raspberry Pi edge hubs: inventory, lab, deploy, gate, report.",
    epilog=(
        "Typical flow: `hil lab up` (or a real rack in devices.yaml) -> `hil devices check` -> "
        "`pytest suites -n 3 --candidate DIR --alluredir reports/allure-results --gate` -> "
        f"`hil report`. Exit codes of `hil gate` and `pytest --gate`: {one_line('gate')}. "
        f"Other commands: {one_line('hil')}. `pytest` without --gate: {one_line('pytest')}."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        from hil import __version__

        typer.echo(f"hil-harness {__version__}")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _root(version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_show_version,
        help="print the harness's version and exit")) -> None:
    """Hardware-in-the-loop harness for Raspberry Pi edge hubs: inventory, lab, deploy, gate, report."""


def _register_subcommands() -> None:
    from hil.commands import deploy, devices, gate, lease, report

    for area in (devices, deploy, gate, report, lease):
        area.register(app)
    # `lab` is the only place that reaches into the virtual lab package.
    try:
        from hil_lab.cli import app as lab_app
    except ImportError:  # an installation without the virtual lab
        return
    app.add_typer(lab_app, name="lab", help="The virtual rack: up, down, status, power, fault.")


def main() -> None:
    _register_subcommands()
    try:
        app()
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(ExitCode.BAD_INPUT)


if __name__ == "__main__":
    main()
