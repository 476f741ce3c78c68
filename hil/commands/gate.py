"""`hil gate`: decide whether the candidate of a run may be promoted (exit 0/1/2, 3 bad input)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from hil.commands.grammar import DEFAULT_DEVICES, DevicesOption
from hil.errors import UserError
from hil.exitcodes import GateExit

EXIT_BAD_INPUT = GateExit.BAD_INPUT


class _GateCommand(TyperCommand):
    """Usage errors exit 3 here: 2 already means "inconclusive" to a CI stage."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:
            # click's UsageError family (vendored inside typer, not a public name): renumber it
            if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "show"):
                exc.exit_code = EXIT_BAD_INPUT  # type: ignore[attr-defined]
            raise


def gate(
    results: Annotated[Path, typer.Option(
        metavar="DIR",
        help="reports folder, a run folder reports/run/<id>, or an allure-results folder")] = Path("reports"),
    policy: Annotated[Path, typer.Option(metavar="FILE", help="the gate policy")] = Path("gate.yaml"),
    junit: Annotated[list[Path] | None, typer.Option(
        metavar="FILE", help="JUnit XML file(s) (repeatable)")] = None,
    run_id: Annotated[str | None, typer.Option(
        metavar="ID", help="which run under <results>/run/ (default: newest)")] = None,
    out: Annotated[Path, typer.Option(
        metavar="FILE", help="where to write the decision")] = Path("reports/gate.json"),
    devices: DevicesOption = DEFAULT_DEVICES,
    report: Annotated[Path, typer.Option(
        metavar="DIR", help="the Allure HTML report, for links to test cases",
    )] = Path("reports/allure-report"),
) -> None:
    """Decide promote (exit 0), reject (1) or inconclusive (2) from a run's results; write gate.json."""
    from hil.gate.evaluate import run_gate

    console = Console()
    try:
        outcome = run_gate(results=results, policy_file=policy, junit=list(junit or []), run_id=run_id,
                           out=out, inventory=devices, report_dir=report, console=console)
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    raise typer.Exit(outcome.decision.exit_code)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level `hil` app."""
    kwargs: dict[str, Any] = {"cls": _GateCommand}
    app.command("gate", **kwargs)(gate)
