"""`hil report`: build the static HTML report (Allure) and say where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hil.errors import HilError, UserError


def report(
    results: Annotated[Path, typer.Option(help="allure-results folder")] = Path("reports/allure-results"),
    out: Annotated[Path, typer.Option(help="where the HTML report goes")] = Path("reports/allure-report"),
    tools: Annotated[Path | None, typer.Option(
        help="where allure-commandline is installed from npm (default: .tools/ in the checkout)")] = None,
) -> None:
    """Generate the Allure HTML report (history kept across runs) and print its index.html."""
    from hil.report.html import build_report, ensure_allure

    try:
        index = build_report(results, out, allure=ensure_allure(tools))
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(3) from None
    except HilError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    typer.echo(f"HTML report: {index.resolve()}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level `hil` app."""
    app.command("report")(report)
