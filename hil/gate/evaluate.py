"""One gate evaluation, shared by `hil gate` and `pytest --gate`: read, decide, record, show."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from hil.errors import HilError
from hil.gate.ci import ci_job
from hil.gate.decision import GateDecision, decide, write_gate_json
from hil.gate.evidence import keep_sboms, run_sboms
from hil.gate.ledger import record_promotion
from hil.gate.policy import DEFAULT_POLICY_FILE, load_policy
from hil.gate.readers import ResultFiles, locate, read_run
from hil.gate.summary import print_summary

GIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class GateRun:
    decision: GateDecision
    gate_json: Path
    gate_json_sha256: str
    ledger_entry: dict[str, object] | None


def run_gate(*, results: Path = Path("reports"), files: ResultFiles | None = None,
             policy_file: Path = Path(DEFAULT_POLICY_FILE),
             junit: list[Path] | None = None, run_id: str | None = None,
             out: Path = Path("reports/gate.json"), inventory: Path | None = None,
             report_dir: Path | None = Path("reports/allure-report"), finished: bool | None = None,
             today: dt.date | None = None, console: Console | None = None) -> GateRun:
    """Raise ``UserError`` for bad input (exit 3 in the CLI); otherwise decide.

    ``files`` (the pytest plugin knows them) replaces looking under ``results``.
    """
    policy = load_policy(policy_file)
    if files is None:
        files = locate(results, junit or [], run_id)
    selected, inv_sha = _inventory_devices(inventory)
    run = read_run(files, inventory_devices={d: m or "" for d, m in selected.items()})
    decision = decide(run, policy, today=today, selected_devices=selected, report_dir=report_dir,
                      finished=finished, git_revision=harness_revision(), inventory_sha256=inv_sha)
    sboms = keep_sboms(run_sboms(files.run_dir, decision.warnings), out)
    if sboms:
        decision.evidence["sboms"] = sboms
    job = ci_job()
    if decision.ci_job_url is None and job.url:
        decision.ci_job_url = job.url
    sha = write_gate_json(decision, out)
    entry = record_promotion(policy.ledger, decision, gate_json_sha256=sha, gate_json_path=str(out),
                             ci_job_url=job.url)
    if console is not None:
        print_summary(decision, console)
        console.print(f"gate decision written to {out}" + (f"; promotion recorded in {policy.ledger}"
                                                             if entry else ""))
    return GateRun(decision, out, sha, entry)


def _inventory_devices(inventory: Path | None) -> tuple[dict[str, str | None], str | None]:
    """Devices a run selects by default (for ``min_healthy_devices: all``) and the file's hash."""
    if inventory is None or not inventory.is_file():
        return {}, None
    from hil.inventory import load_inventory

    try:
        inv = load_inventory(inventory)
    except HilError:
        # the gate judges results; a broken inventory is reported by the run itself
        return {}, hashlib.sha256(inventory.read_bytes()).hexdigest()
    return {d.name: d.model for d in inv.select()}, inv.sha256


def harness_revision(repo: Path | None = None) -> str | None:
    """The harness checkout's git revision (``+dirty`` when it has local changes)."""
    root = repo or Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=GIT_TIMEOUT, check=False)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
