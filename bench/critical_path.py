"""Print the critical path of the last run (or a given one) from its timeline.

    .venv/bin/python bench/critical_path.py                      # the newest reports/run/<id>/
    .venv/bin/python bench/critical_path.py reports/run/<id>     # that run
    .venv/bin/python bench/critical_path.py --hubs               # and every hub's tests in order

Reads reports/run/<id>/timeline.jsonl (written as the run goes by hil_pytest.timeline):
when each hub started and ended, what its tests waited on by kind (lease, ready, deploy,
settle, restore, sampling, console, power, scan, ssh, ...), what its background jobs did
meanwhile, and the tests of the hub that ended last, longest first.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil.report.timeline import TIMELINE_JSONL, hub_table, load, summary  # noqa: E402


def last_run(reports: Path) -> Path:
    runs = [p for p in (reports / "run").glob("*") if (p / TIMELINE_JSONL).is_file()]
    if not runs:
        raise SystemExit(f"no run with a {TIMELINE_JSONL} under {reports / 'run'}")
    return max(runs, key=lambda p: (p / TIMELINE_JSONL).stat().st_mtime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=Path, help="a run folder (default: the newest)")
    ap.add_argument("--hubs", action="store_true", help="also every hub's tests in the order they ran")
    args = ap.parse_args(argv)
    reports = Path(os.environ.get("HIL_REPORTS_DIR") or ROOT / "reports")
    folder = args.run or last_run(reports)
    run = load(folder)
    if not run.hubs:
        raise SystemExit(f"{folder / TIMELINE_JSONL}: no test ran on a hub")
    print(f"run folder: {folder}")
    for line in summary(run):
        print(line)
    if args.hubs:
        for name, hub in sorted(run.hubs.items()):
            print(f"\n{name}")
            for line in hub_table(hub, run.origin):
                print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
