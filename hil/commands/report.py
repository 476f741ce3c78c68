"""`hil report`: build the static HTML report (Allure) and say where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hil.commands.grammar import exit_codes


def report(
    results: Annotated[Path, typer.Option(
        metavar="DIR", help="allure-results folder")] = Path("reports/allure-results"),
    report_dir: Annotated[Path, typer.Option(
        "--report", metavar="DIR", help="where the HTML report goes")] = Path("reports/allure-report"),
    decision: Annotated[Path, typer.Option(
        metavar="FILE", help="the gate decision to show in the report (left out when absent or of "
        "another run)")] = Path("reports/gate.json"),
    tools: Annotated[Path | None, typer.Option(
        metavar="DIR",
        help="where the pinned allure-commandline is installed (npm ci --ignore-scripts) and cached "
        "(default: $HIL_TOOLS_DIR, else $XDG_CACHE_HOME/hil/tools or ~/.cache/hil/tools)")] = None,
) -> None:
    """Generate the Allure HTML report (history kept across runs) and print its index.html."""
    from hil.report.html import build_report, ensure_allure

    with exit_codes():  # 2: no results there; 3: the generator could not be installed or failed
        index = build_report(results, report_dir, allure=ensure_allure(tools), gate_json=decision,
                             say=typer.echo)
    typer.echo(f"HTML report: {index.resolve()}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level `hil` app."""
    app.command("report")(report)
