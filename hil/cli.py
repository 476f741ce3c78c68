"""`hil`: the command line for QA engineers, operators and CI."""

from __future__ import annotations

import sys

import typer

from hil.errors import UserError

app = typer.Typer(
    name="hil",
    help="Hardware-in-the-loop harness for Raspberry Pi edge hubs: inventory, lab, deploy, gate, report.",
    epilog=(
        "Typical flow: `hil lab up` (or a real rack in devices.yaml) -> `hil devices check` -> "
        "`pytest suites -n 3 --candidate DIR --alluredir reports/allure-results --gate` -> "
        "`hil report`. Exit codes of `hil gate` and `pytest --gate`: 0 promote, 1 reject, "
        "2 inconclusive (3: bad input). Other commands: 0 ok, 1 check failed, 2 bad input "
        "(one line naming file, device, field), 3 infrastructure (lab or device unreachable)."
    ),
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
        sys.exit(2)


if __name__ == "__main__":
    main()
