"""`hil`: the command line for QA engineers, operators and CI."""

from __future__ import annotations

import sys

import typer

from hil.errors import UserError

app = typer.Typer(
    name="hil",
    help="Hardware-in-the-loop harness for Raspberry Pi edge hubs: inventory, lab, deploy, gate, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_subcommands() -> None:
    from hil.commands import deploy, devices, gate, lease, report

    for area in (devices, deploy, gate, report, lease):
        area.register(app)
    # `lab` is the only place that reaches into the virtual lab package.
    try:
        from lab.cli import app as lab_app
    except ImportError:  # an installation without the virtual lab
        return
    app.add_typer(lab_app, name="lab", help="The virtual rack: up, down, status, power, fault.")


def main() -> None:
    _register_subcommands()
    try:
        app()
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
