"""One exit-code table: defined in hil/exitcodes.py, shown in the README, used by every command."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hil.exitcodes import EXIT_TABLE, ExitCode, GateExit, markdown_table
from hil.gate.decision import Decision

ROOT = Path(__file__).resolve().parents[2]
HIL = [sys.executable, "-m", "hil.cli"]
RUN_TIMEOUT = 60


def _hil(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIL, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=RUN_TIMEOUT, check=False)


def test_the_readme_shows_the_table_from_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- exit-codes[^>]*-->\n(.*?)<!-- /exit-codes -->", readme, re.S)
    assert m, "README.md lost its exit-code table markers"
    assert m.group(1) == markdown_table(), "README's exit-code table differs from hil/exitcodes.py"


def test_codes_are_unique_within_each_scope() -> None:
    seen: set[tuple[str, int]] = set()
    for row in EXIT_TABLE:
        assert (row.scope, int(row.code)) not in seen
        seen.add((row.scope, int(row.code)))


def test_the_gate_decisions_use_the_table() -> None:
    assert {d.exit_code for d in Decision} == {GateExit.PROMOTE, GateExit.REJECT, GateExit.INCONCLUSIVE}
    assert Decision.PROMOTE.exit_code == GateExit.PROMOTE
    assert Decision.REJECT.exit_code == GateExit.REJECT
    assert Decision.INCONCLUSIVE.exit_code == GateExit.INCONCLUSIVE


def test_report_without_results_is_bad_input(tmp_path: Path) -> None:
    res = _hil("report", "--results", str(tmp_path), "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert res.returncode == ExitCode.BAD_INPUT, res.stderr
    assert "Traceback" not in res.stderr


def test_report_without_its_generator_is_infrastructure(tmp_path: Path) -> None:
    results = tmp_path / "allure-results"
    results.mkdir()
    (results / "x-result.json").write_text('{"name": "t", "status": "passed"}')
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "HIL_TOOLS_DIR": str(tmp_path / "tools")}
    res = _hil("report", "--results", str(results), "--report", str(tmp_path / "r"), cwd=tmp_path, env=env)
    assert res.returncode == ExitCode.INFRASTRUCTURE, res.stderr
    assert "npm is not installed" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("args", [("lease", "list"), ("lease", "release", "hub-a", "--force"),
                                  ("devices",), ("devices", "check"), ("rollback", "hub-a")])
def test_a_missing_inventory_is_bad_input_everywhere(tmp_path: Path, args: tuple[str, ...]) -> None:
    res = _hil(*args, "--devices", str(tmp_path / "none.yaml"), cwd=tmp_path)
    assert res.returncode == ExitCode.BAD_INPUT, res.stdout + res.stderr
    assert "inventory file not found" in res.stderr and "Traceback" not in res.stderr


def test_lease_release_needs_force_and_a_known_device(tmp_path: Path) -> None:
    inv = tmp_path / "rack.yaml"
    inv.write_text(textwrap.dedent(f"""\
        lab: exit-codes
        lease: {{directory: {tmp_path / "leases"}}}
        devices:
          hub-a: {{ssh: {{host: 127.0.0.1, port: 9, user: hil, key_file: id, known_hosts: kh}}}}
        """))
    refused = _hil("lease", "release", "hub-a", "--devices", str(inv), cwd=tmp_path)
    assert refused.returncode == ExitCode.BAD_INPUT and "--force" in refused.stderr
    unknown = _hil("lease", "release", "hub-z", "--force", "--devices", str(inv), cwd=tmp_path)
    assert unknown.returncode == ExitCode.BAD_INPUT and "hub-z" in unknown.stderr
    listed = _hil("lease", "list", "--devices", str(inv), cwd=tmp_path)
    assert listed.returncode == ExitCode.OK, listed.stderr
    done = _hil("lease", "release", "hub-a", "--force", "--devices", str(inv),
                "--log", str(tmp_path / "release.log"), cwd=tmp_path)
    assert done.returncode == ExitCode.OK, done.stderr


def test_gate_bad_input_is_3_not_inconclusive(tmp_path: Path) -> None:
    res = _hil("gate", "--results", str(tmp_path / "none"), "--policy", str(tmp_path / "none.yaml"),
               "--out", str(tmp_path / "gate.json"), cwd=tmp_path)
    assert res.returncode == GateExit.BAD_INPUT, res.stdout + res.stderr
    usage = _hil("gate", "--no-such-option", cwd=tmp_path)
    assert usage.returncode == GateExit.BAD_INPUT
