"""A hub's saved state is untrusted: a crafted snapshot.json planted on a lab hub is refused by
`hil rollback` and by teardown-on-acquire, and nothing outside the staging root is touched.

The old code took ``staging_root``, ``run_id`` and component names from the file straight into
``sudo rm -rf`` and ``sudo cp -a``; each variant below would have deleted or overwritten a canary.
The test plants under the hub's lease, lets go of it while the harness runs (the harness takes
the lease itself), then checks and cleans up under the lease again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hil.deploy.snapshot import STAGING_ROOT, prepare_staging, saved_snapshot_path
from hil.drivers.ssh import SshConnection
from hil.exitcodes import ExitCode
from hil.inventory import Inventory, load_inventory
from hil.lease import make_lease_store
from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
HIL = str(Path(sys.executable).with_name("hil"))
if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab]
INVENTORY = lab_inventory_path()
INV: Inventory = load_inventory(INVENTORY)
HUB = "hub-02"
CANARY_DIR = "/var/lib/hil/canary"
CANARIES = [f"{CANARY_DIR}/keep", "/etc/hil-canary"]
GOOD = {"device": HUB, "run_id": "20250101T000000Z-crafted1", "taken": "2025-01-01T00:00:00+00:00",
        "components": {}, "candidate": {"com.hbs.hub.Container": "1.0.0"}, "staging_root": STAGING_ROOT}
CRAFTED = {
    # `rm -rf <staging_root>/<run_id>` would have removed /var/lib/hil/canary
    "staging_root": ({"staging_root": "/var/lib/hil", "run_id": "canary"}, "staging_root"),
    "run_id": ({"run_id": "../canary"}, "run_id"),
    # `mkdir -p` / `cp -a .../artifacts/<name>/<version>` outside the package store and staging
    "dotdot_name": ({"components": {"../../../../var/lib/hil/canary": "1.0.0"}}, "components"),
    "dotdot_version": ({"components": {"com.hbs.hub.Container": "../../../etc"}}, "components"),
    "other_hub": ({"device": "hub-01"}, "device"),
}


@contextmanager
def leased() -> Iterator[SshConnection]:
    lease = make_lease_store(INV).acquire(HUB, timeout=INV.timeouts.lease)
    try:
        with SshConnection(HUB, INV.devices[HUB].ssh, INV.timeouts) as ssh:
            yield ssh
    finally:
        lease.release()


def _root(ssh: SshConnection, *argv: str, stdin: str | None = None) -> str:
    return ssh.run(list(argv), sudo=True, stdin=stdin).check().stdout


@pytest.fixture
def plant() -> Iterator[dict[str, object]]:
    """Put canaries outside the staging root and a crafted snapshot (the test fills the dict) on
    HUB; at the end check nothing was touched and remove them, under the lease."""
    crafted: dict[str, object] = {}
    yield crafted
    with leased() as ssh:
        try:
            missing = [c for c in CANARIES if ssh.run(["cat", c], sudo=True).stdout != "canary\n"]
            assert missing == [], f"files outside the staging root were touched: {missing}"
            still = ssh.run(["cat", saved_snapshot_path()], sudo=True).stdout
            assert json.loads(still) == crafted, "the crafted snapshot was changed or removed"
        finally:
            _root(ssh, "rm", "-rf", "--", CANARY_DIR, "/etc/hil-canary", saved_snapshot_path())


def _plant(doc: dict[str, object]) -> None:
    with leased() as ssh:
        _root(ssh, "mkdir", "-p", CANARY_DIR)
        for c in CANARIES:
            _root(ssh, "tee", c, stdin="canary\n")
        prepare_staging(ssh)
        _root(ssh, "tee", saved_snapshot_path(), stdin=json.dumps(doc))


@pytest.mark.parametrize("variant", sorted(CRAFTED))
def test_crafted_snapshot_is_refused_by_rollback(plant: dict[str, object], variant: str) -> None:
    change, field = CRAFTED[variant]
    plant.update({**GOOD, **change})
    _plant(plant)
    proc = subprocess.run([HIL, "rollback", HUB, "--devices", str(INVENTORY)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == ExitCode.INFRASTRUCTURE, out
    assert f"{HUB}:{saved_snapshot_path()}: field {field}" in out and "refusing" in out, out
    assert "Traceback" not in out


def test_crafted_snapshot_breaks_the_hub_on_acquire_instead_of_running(plant: dict[str, object],
                                                                        tmp_path: Path) -> None:
    change, _field = CRAFTED["staging_root"]
    plant.update({**GOOD, **change})
    _plant(plant)
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (tmp_path / "test_dut.py").write_text(textwrap.dedent("""
        def test_uses_hub(hub):
            pass
        """))
    env = {**os.environ, "HIL_REPORTS_DIR": str(tmp_path / "reports"), "HIL_RUN_ID": "crafted",
           "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "--rootdir", str(tmp_path),
            "--devices", str(INVENTORY), "--device", HUB, str(tmp_path / "test_dut.py")]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    rows = [json.loads(x) for x in (tmp_path / "reports/run/crafted/results.jsonl").read_text().splitlines()]
    [row] = rows
    assert row["outcome"] == "skipped" and row["failure_class"] == "infrastructure", proc.stdout
    assert "field staging_root" in row["message"] and "needs attention" in row["message"], row
