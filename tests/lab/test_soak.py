"""Soak: the smoke suite on 3 hubs, many consecutive runs, a random fault between runs.

Skipped unless HIL_SOAK=1 (HIL_SOAK_RUNS, default 20; HIL_SOAK_SEED for a repeatable
fault sequence). Between runs one hub gets a fault from the lab's list, injected under
that hub's lease; the fault is left in place (sshd killed, hub hung, power off) for the
next run's recovery to handle - that is the point. A pulled cable is plugged back by a
timer 10 s into the next run (a cable nobody plugs back is not recoverable by any
harness); a slow network stays for one run (nothing to recover: the run must simply pass)
and is then cleared. The run must have zero harness-class failures and
every failure/infrastructure skip classified as infrastructure. Teardown puts every hub
back under its lease.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hil.drivers.power import make_power
from hil.inventory import load_inventory
from hil.lease import make_lease_store
from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)
if os.environ.get("HIL_SOAK") != "1":
    pytest.skip("soak test: set HIL_SOAK=1 (HIL_SOAK_RUNS=N, default 20)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]
INVENTORY = lab_inventory_path()
INV = load_inventory(INVENTORY)
HIL = str(Path(sys.executable).with_name("hil"))
HUBS = ["hub-01", "hub-02", "hub-03"]
FAULTS = ["cable-pull", "kill-sshd", "hang", "power-off", "slow-network", "none"]
LEASE_TIMEOUT = 600.0


def _hil(*args: str) -> None:
    subprocess.run([HIL, *args], cwd=ROOT, check=True, capture_output=True, timeout=120)


def inject(hub: str, fault: str) -> None:
    """Under the hub's lease; released before the next run takes it."""
    lease = make_lease_store(INV).acquire(hub, timeout=LEASE_TIMEOUT)
    try:
        if fault == "power-off":
            make_power(INV.devices[hub], INV.timeouts).off()
        elif fault == "slow-network":
            _hil("lab", "fault", hub, "slow-network", "150")
        elif fault != "none":
            _hil("lab", "fault", hub, fault)
    finally:
        lease.release()


def put_back(hub: str) -> None:
    lease = make_lease_store(INV).acquire(hub, timeout=LEASE_TIMEOUT)
    try:
        make_power(INV.devices[hub], INV.timeouts).on()
        _hil("lab", "fault", hub, "clear")
    finally:
        lease.release()


def plug_later(hub: str, delay: float) -> threading.Timer:
    """The cable goes back in while the next run holds the hub (its lease, not ours)."""
    t = threading.Timer(delay, lambda: subprocess.run([HIL, "lab", "fault", hub, "cable-plug"], cwd=ROOT,
                                                      capture_output=True, timeout=120, check=False))
    t.start()
    return t


def smoke_run(folder: Path) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    folder.mkdir(parents=True)
    (folder / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    env = {**os.environ, "HIL_REPORTS_DIR": str(folder / "reports"), "HIL_RUN_ID": "soak",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir",
                           str(folder), "--devices", str(INVENTORY), "--device-tag", "hardened",
                           "--lease-timeout", str(LEASE_TIMEOUT), str(ROOT / "bench" / "smoke_suite")],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=900, check=False)
    path = folder / "reports" / "run" / "soak" / "results.jsonl"
    return proc, [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_soak_smoke_suite_with_random_faults(tmp_path: Path) -> None:
    runs = int(os.environ.get("HIL_SOAK_RUNS", "20"))
    rng = random.Random(int(os.environ.get("HIL_SOAK_SEED", str(int(time.time())))))
    figures: list[dict[str, Any]] = []
    try:
        pending: tuple[str, float] | None = None
        slowed: str | None = None
        last_fault = "none"
        for i in range(runs):
            timer = plug_later(*pending) if pending else None
            t0 = time.monotonic()
            proc, rows = smoke_run(tmp_path / f"run{i:02d}")
            if timer is not None:
                timer.join()
            classes = Counter(r["failure_class"] for r in rows if r["outcome"] != "passed")
            outcomes = Counter(r["outcome"] for r in rows)
            fig = {"run": i, "fault_before": last_fault, "seconds": round(time.monotonic() - t0, 1),
                   "outcomes": dict(outcomes), "classes": dict(classes), "exit": proc.returncode}
            figures.append(fig)
            print(f"\n[soak] {json.dumps(fig)}")
            assert rows, proc.stdout + proc.stderr
            assert classes.get("harness", 0) == 0, proc.stdout
            assert set(classes) <= {"infrastructure"}, proc.stdout
            assert len({r["nodeid"] for r in rows}) == len(rows), "a test ran twice"
            if slowed is not None:  # a slow network is no failure to recover from: one run, then cleared
                put_back(slowed)
            hub, fault = rng.choice(HUBS), rng.choice(FAULTS)
            inject(hub, fault)
            pending = (hub, 10.0) if fault == "cable-pull" else None
            slowed = hub if fault == "slow-network" else None
            last_fault = f"{hub} {fault}"
    finally:
        for hub in HUBS:
            put_back(hub)
        total = Counter[str]()
        for f in figures:
            total.update(f["outcomes"])
        print(f"\n[soak] {len(figures)} runs, outcomes {dict(total)}")
