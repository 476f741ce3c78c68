"""Everything read back from a hub is untrusted: crafted snapshot.json files and staging folders
are refused before any of their content reaches a command (real files through a local shell)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hil.deploy.restore import restore_saved
from hil.deploy.snapshot import (
    STAGING_ROOT,
    Snapshot,
    UnsafeSnapshot,
    UnsafeStaging,
    prepare_staging,
    read_saved,
    staging_path,
)
from hil.drivers.base import CommandResult
from hil.drivers.greengrass import Greengrass

GOOD = {"device": "hub-01", "run_id": "20250101T000000Z-abcdef12", "taken": "2025-01-01T00:00:00+00:00",
        "components": {"com.hbs.hub.Container": "1.0.0"}, "candidate": {"com.hbs.hub.Container": "1.1.0"},
        "staging_root": STAGING_ROOT}


class LocalShell:
    """Runs commands on this machine (as root here, like sudo on a hub) and records them."""

    device = "hub-01"

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None, check: bool = False) -> CommandResult:
        self.calls.append(tuple(argv))
        t = time.perf_counter()
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
        res = CommandResult(tuple(argv), p.returncode, p.stdout, p.stderr, time.perf_counter() - t, "local")
        return res.check() if check else res


def _parse(**change: object) -> Snapshot:
    return Snapshot.from_json(json.dumps({**GOOD, **change}), "hub-01:snapshot.json", device="hub-01")


def test_a_snapshot_the_harness_wrote_reads_back() -> None:
    snap = _parse()
    assert snap.staging == f"{STAGING_ROOT}/{GOOD['run_id']}"
    assert Snapshot.from_json(snap.to_json(), "x", device="hub-01") == snap


@pytest.mark.parametrize(("change", "field"), [
    ({"run_id": "../../etc"}, "run_id"),
    ({"run_id": ".."}, "run_id"),
    ({"run_id": "x/y"}, "run_id"),
    ({"staging_root": "/"}, "staging_root"),
    ({"staging_root": "/var/lib/hil/staging/../../.."}, "staging_root"),
    ({"components": {"..": "1.0.0"}}, "components"),
    ({"components": {"../../etc": "1.0.0"}}, "components"),
    ({"components": {"/etc/passwd": "1.0.0"}}, "components"),
    ({"components": {".": "1.0.0"}}, "components"),
    ({"components": {"-rf": "1.0.0"}}, "components"),
    ({"components": {"com.x": "../../../etc"}}, "components"),
    ({"components": {"com.x": "1.0.0/.."}}, "components"),
    ({"candidate": {"com.x": 1}}, "candidate"),
    ({"components": ["com.x"]}, "components"),
    ({"device": "hub-02"}, "device"),
    ({"device": "../hub"}, "device"),
    ({"taken": "yesterday"}, "taken"),
    ({"extra": "/etc"}, "extra"),
])
def test_crafted_snapshots_are_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(UnsafeSnapshot, match=rf"hub-01:snapshot.json: field {field}\b"):
        _parse(**change)


def test_not_json_or_too_large_is_refused() -> None:
    with pytest.raises(UnsafeSnapshot, match="not JSON"):
        Snapshot.from_json("rm -rf /", "s", device="hub-01")
    with pytest.raises(UnsafeSnapshot, match="too large"):
        Snapshot.from_json(" " * (2 << 20), "s", device="hub-01")
    with pytest.raises(UnsafeSnapshot, match="field run_id"):
        Snapshot.from_json(json.dumps({k: v for k, v in GOOD.items() if k != "run_id"}), "s")


def test_staging_paths_take_plain_components_only() -> None:
    assert staging_path("/var/lib/hil/staging", "run", "recipes") == "/var/lib/hil/staging/run/recipes"
    for bad in ("..", ".", "a/b", "", "x\0y"):
        with pytest.raises(ValueError, match="refusing"):
            staging_path("/var/lib/hil/staging", "run", bad)


def test_staging_root_is_created_root_only_and_verified(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the staging folder must belong to root")
    shell = LocalShell()
    root = tmp_path / "hil" / "staging"
    prepare_staging(shell, str(root))
    st = root.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700)
    prepare_staging(shell, str(root))  # an existing, good one is fine


@pytest.mark.parametrize("plant", ["symlink", "mode", "owner", "open-parent", "file"])
def test_hostile_staging_folders_are_refused(tmp_path: Path, plant: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("the staging folder must belong to root")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("keep")
    parent = tmp_path / "hil"
    parent.mkdir()
    root = parent / "staging"
    if plant == "symlink":
        root.symlink_to(elsewhere)
    elif plant == "mode":
        root.mkdir()
        os.chmod(root, 0o755)  # noqa: S103  (readable by others: not the 0700 the harness wants)
    elif plant == "owner":
        root.mkdir(mode=0o700)
        os.chown(root, 65534, 65534)
    elif plant == "open-parent":
        os.chmod(parent, 0o777)  # noqa: S103  (the hostile folder under test)
    else:
        root.write_text("not a folder")
    with pytest.raises(UnsafeStaging):
        prepare_staging(LocalShell(), str(root))
    assert (elsewhere / "keep").read_text() == "keep"


def test_restore_refuses_a_crafted_snapshot_before_running_anything(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the staging folder must belong to root")
    root = tmp_path / "staging"
    shell = LocalShell()
    prepare_staging(shell, str(root))
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "file").write_text("still here")
    (root / "snapshot.json").write_text(json.dumps({**GOOD, "run_id": "x", "staging_root": str(tmp_path),
                                                    "components": {"../canary": "1.0.0"}}))
    shell.calls.clear()
    with pytest.raises(UnsafeSnapshot, match="field components"):
        read_saved(shell, str(root))
    assert [c[0] for c in shell.calls] == ["head"]  # read, nothing else
    with pytest.raises(UnsafeSnapshot):
        restore_saved(shell, Greengrass(shell, root=str(tmp_path)), fence=lambda: None,
                      staging_root=str(root))
    assert not any(c[0] in ("rm", "cp", "mkdir") for c in shell.calls)
    assert (canary / "file").read_text() == "still here"
