"""Time to verdict (issue 14's budgets), measured side by side in one run on the lab:

- the full gate (every suite, the candidate deployed, ``--gate``) on 3 hubs with ``-n 3``
  (budget: within 90 s wall) and the same with ``-n 0`` (budget: ``-n 3`` >= 2.5x faster);
- each hub's first test after pytest's start, from the run's timeline (budget: within 1 s);
- pytest-xdist's fixed cost: one trivial test with ``-n 0`` and ``-n 3``, as the machine's
  environment starts Python and as ``./hilw`` starts it (bytecode cached, hypothesis's
  plugin off), so what the harness's own start-up costs is seen apart.

    .venv/bin/python bench/gate.py                       # all of it (about 5 minutes)
    .venv/bin/python bench/gate.py --skip-serial         # without the -n 0 gate

Run from the repository root with the lab up (``./hilw main`` leaves it up). Every run
writes its reports to a temporary folder, so reports/ and the promotion ledger stay as
they were.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rack import wait_quiet  # noqa: E402

from hil.report.timeline import TIMELINE_JSONL, load  # noqa: E402

HUBS = ["hub-01", "hub-02", "hub-03"]
# what ./hilw adds to every pytest it starts (see hilw: bootstrap and gated_run)
HILW_ARGS = ["-p", "no:hypothesispytest"]


def hilw_env(base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass(frozen=True)
class GateRun:
    wall: float
    exit: int
    decision: str
    first: dict[str, float]
    """Seconds from pytest's start to each hub's first test (the run's timeline)."""
    summary: str


def gate_run(devices: list[str], workers: int, candidate: str, devices_file: Path) -> GateRun:
    """One full gated run as ./hilw main starts it; wall time, decision and first tests."""
    wait_quiet(devices)
    with tempfile.TemporaryDirectory() as tmp:
        reports = Path(tmp) / "reports"
        env = {**hilw_env(dict(os.environ)), "HIL_REPORTS_DIR": str(reports)}
        sel = [arg for name in devices for arg in ("--device", name)]
        argv = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider", *HILW_ARGS,
                "-n", str(workers), f"--devices={devices_file}", *sel, "--candidate", candidate,
                "--alluredir", str(reports / "allure-results"), "--junitxml", str(reports / "junit.xml"),
                "--gate"]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
                              check=False)
        wall = time.perf_counter() - t0
        gate = reports / "gate.json"
        decision = json.loads(gate.read_text())["decision"] if gate.is_file() else "none"
        runs = [p for p in (reports / "run").glob("*") if (p / TIMELINE_JSONL).is_file()]
        first = load(runs[0]).first_test_after_start() if runs else {}
        tail = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
        return GateRun(wall, proc.returncode, decision, first, tail[0])


def trivial_wall(workers: int, env: dict[str, str], extra: list[str], repeat: int) -> float:
    """Median wall time of pytest running one test that needs no hub (the fixed cost)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        test = Path(tmp) / "test_trivial.py"
        test.write_text("def test_trivial():\n    pass\n")
        xdist = ["-n", str(workers)] if workers else []
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *xdist, *extra, str(test)]
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run(argv, cwd=tmp, env=env, capture_output=True, timeout=300, check=True)
            out.append(time.perf_counter() - t0)
    return statistics.median(out)


def show_gate(label: str, run: GateRun) -> None:
    firsts = ", ".join(f"{k} {v:.2f} s" for k, v in run.first.items())
    print(f"{label:12} {run.wall:6.1f} s  exit {run.exit}  {run.decision:12}  {run.summary}")
    print(f"{'':12} first test: {firsts}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", action="append", default=None, help=f"hubs (default: {' '.join(HUBS)})")
    inventory = os.environ.get("HIL_DEVICES") or ROOT / "devices.yaml"
    ap.add_argument("--devices", type=Path, default=Path(inventory),
                    help="the inventory (default: $HIL_DEVICES or devices.yaml)")
    ap.add_argument("--candidate", default="candidates/good")
    ap.add_argument("--skip-serial", action="store_true", help="no -n 0 gate (saves 2-3 minutes)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the trivial test (median)")
    args = ap.parse_args()
    devices: list[str] = args.device or HUBS
    n = len(devices)

    base = dict(os.environ)
    print(f"xdist fixed cost: one trivial test, median of {args.repeat} (the lab is not used)")
    for label, env, extra in (("machine env", base, []), ("as ./hilw", hilw_env(base), HILW_ARGS)):
        serial = trivial_wall(0, env, extra, args.repeat)
        parallel = trivial_wall(n, env, extra, args.repeat)
        print(f"  {label:12} -n 0 {serial:5.2f} s   -n {n} {parallel:5.2f} s   "
              f"worker start-up {parallel - serial:5.2f} s")
    bare = trivial_wall(0, hilw_env(base), [*HILW_ARGS, "-p", "no:hil"], args.repeat)
    print(f"  {'without hil':12} -n 0 {bare:5.2f} s   (the harness's own plugin start-up is the difference)")

    print(f"\nfull gate on {n} hubs ({args.candidate}), as ./hilw main runs pytest")
    par = gate_run(devices, n, args.candidate, args.devices)
    show_gate(f"-n {n}", par)
    if not args.skip_serial:
        ser = gate_run(devices, 0, args.candidate, args.devices)
        show_gate("-n 0", ser)
        ratio = ser.wall / par.wall
        print(f"ratio -n 0 / -n {n}: {ratio:.2f}x (budget >= 2.5x); -n {n} budget 90 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
