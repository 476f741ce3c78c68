"""The human summary of a gate decision: rich tables for a terminal or a CI log."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hil.gate.decision import CheckGap, Decision, Effect, GateDecision, GateFailure

_STYLE = {Decision.PROMOTE: "bold green", Decision.REJECT: "bold red", Decision.INCONCLUSIVE: "bold yellow"}
_OUTCOME_STYLE = {"passed": "green", "failed": "red", "unhealthy": "yellow", "insufficient": "yellow",
                  "not run": "yellow", "skipped": "yellow", "incomplete": "yellow"}


def render(decision: GateDecision) -> Group:
    head = Text.assemble(("GATE: ", "bold"), (decision.decision.value.upper(), _STYLE[decision.decision]),
                         f"  (exit {decision.exit_code})")
    cand = decision.candidate.get("components") if isinstance(decision.candidate, dict) else None
    lines = [head]
    if isinstance(cand, dict):
        lines.append(Text("candidate: " + ", ".join(f"{k} {v}" for k, v in cand.items())))
    elif isinstance(cand, list):
        lines.append(Text("candidate: " + ", ".join(
            f"{c.get('name')} {c.get('version')}" if isinstance(c, dict) else str(c) for c in cand)))
    lines.append(Text(f"harness {(decision.harness_git_revision or '?')[:12]}  "
                      f"inventory {(decision.inventory_sha256 or '?')[:12]}  run {decision.run_id or '?'}",
                      style="dim"))
    for r in decision.reasons:
        lines.append(Text("• " + r))

    suites = Table(title="suites", title_justify="left")
    for col in ("suite", "required", "outcome", "passed", "failed", "skipped", "n/a", "devices passed"):
        suites.add_column(col)
    for name, so in decision.suites.items():
        suites.add_row(name, "yes" if so.required else "no",
                       Text(so.outcome, _OUTCOME_STYLE.get(so.outcome, "")),
                       str(so.passed), str(so.failed), str(so.skipped), str(so.not_applicable),
                       "; ".join(f"{m}: {', '.join(d)}" for m, d in so.devices_passed.items()) or "-")

    devices = Table(title="devices", title_justify="left")
    for col in ("device", "model", "outcome", "passed", "failed", "skipped", "n/a", "note"):
        devices.add_column(col)
    for name, do in decision.devices.items():
        devices.add_row(name, do.model or "?", Text(do.outcome, _OUTCOME_STYLE.get(do.outcome, "")),
                        str(do.passed), str(do.failed), str(do.skipped), str(do.not_applicable), do.note)

    parts: list[object] = [Panel(Group(*lines), expand=False), suites, devices]
    if decision.ml:
        parts.append(_ml(decision.ml))
    gaps = [(name, g) for name, do in decision.devices.items()
            for g in (*do.checks.skipped, *do.checks.not_applicable) if g.required]
    if gaps:
        parts.append(_gaps(gaps))
    for title, rows in (("blocking failures", decision.blocking_failures),
                        ("quarantined (not blocking)", decision.quarantined_failures),
                        ("other failures (not blocking)", decision.other_failures)):
        if rows:
            parts.append(_failures(title, rows))
    return Group(*parts)  # type: ignore[arg-type]


_ML_SHOWN = ("precision", "recall", "f1", "agreement", "peak_rss_mib", "mean_cpu_percent",
             "start_to_first_score_s", "drifted_first_s", "clean_raised", "champion_recall",
             "challenger_recall")


def _ml(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="ml figures", title_justify="left")
    for col in ("kind", "device", "model", "figures", "verdict"):
        t.add_column(col, overflow="fold")
    for r in sorted(rows, key=lambda r: (str(r.get("device")), str(r.get("kind")))):
        values = r.get("values") or {}
        shown = ", ".join(f"{k} {values[k]}" for k in _ML_SHOWN if k in values) or "-"
        model = r.get("model") or {}
        verdict = str(r.get("verdict", ""))
        t.add_row(str(r.get("kind")), str(r.get("device") or "-"), str(model.get("version") or "-"), shown,
                  Text(verdict, "green" if verdict == "within policy" else "red"))
    return t


def _failures(title: str, rows: list[GateFailure]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("test", "device", "class", "message", "why", "allure"):
        t.add_column(col, overflow="fold")
    for f in rows:
        msg = next((ln for ln in f.message.splitlines() if ln.strip()), "")[:160]
        t.add_row(f.test, f.device or "-", f.failure_class, msg, f.why, f.allure_link or "-")
    return t


def _gaps(rows: list[tuple[str, CheckGap]]) -> Table:
    t = Table(title="required checks that did not run", title_justify="left")
    for col in ("device", "check", "disposition", "reason", "gate"):
        t.add_column(col, overflow="fold")
    for device, g in rows:
        style = "yellow" if g.effect is not Effect.NONE else "dim"
        reason = next((ln for ln in g.reason.splitlines() if ln.strip()), "")[:160]
        t.add_row(device, g.check, g.disposition.replace("_", " "), reason, Text(g.why, style))
    return t


def print_summary(decision: GateDecision, console: Console | None = None) -> None:
    (console or Console()).print(render(decision))
