"""docs/use-from-your-repo.md, followed as written: a wheel, a fresh venv, a repository
outside this checkout with one test file, run against the virtual lab.

The wheel is built from the files a commit of this working tree would hold; the venv
gets the wheel alone (no extras), so this is also the core install's test. About a
minute: most of it is pip installing the dependencies from its cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from hil.inventory import Inventory
from hil_lab.topology import lab_inventory_path

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = lab_inventory_path()
TIMEOUT = 600

pytestmark = [pytest.mark.lab]

USER_TEST = textwrap.dedent('''\
    import pytest

    from hil_pytest import Hub


    @pytest.mark.smoke
    def test_kernel(hub: Hub) -> None:
        assert hub.ssh.run(["uname", "-s"]).stdout.strip() == "Linux"


    def test_os_release(hub_host) -> None:
        assert hub_host.file("/etc/os-release").contains("ID=debian")
    ''')


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True, timeout=60).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    res = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                "-w", str(dist), str(src)], cwd=src)
    assert res.returncode == 0, res.stdout + res.stderr
    [whl] = dist.glob("hil_harness-*.whl")
    return whl


def test_the_wheel_installs_no_generic_top_level_names(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert tops == {"hil", "hil_pytest", "hil_lab"}, tops
    assert "[pytest11]\nhil = hil_pytest.plugin" in entry_points


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "v"
    res = _run([sys.executable, "-m", "venv", str(env_dir)], cwd=env_dir.parent)
    assert res.returncode == 0, res.stderr
    res = _run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], cwd=env_dir.parent)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return env_dir


def _user_env() -> dict[str, str]:
    drop = ("PYTEST_", "HIL_RUN_ID", "HIL_REPORTS_DIR", "VIRTUAL_ENV", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def test_a_user_repository_runs_the_hub_fixture_against_the_lab(
        lab_inventory: Inventory, venv: Path, tmp_path: Path) -> None:
    repo = tmp_path / "my-hub-tests"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_hub.py").write_text(USER_TEST)
    (repo / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n"
                                     "testpaths = tests\n")
    assert not (repo / "conftest.py").exists()  # pip install is all it needs
    env = _user_env()
    # --devices=FILE, not --devices FILE: pytest picks its rootdir before plugins add their
    # options, so a separate value counts as a path argument (docs/use-from-your-repo.md)
    res = _run([str(venv / "bin" / "pytest"), f"--devices={INVENTORY}", "--device", "hub-01", "-v"],
               cwd=repo, env=env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "test_kernel[hub-01] PASSED" in res.stdout and "test_os_release[hub-01] PASSED" in res.stdout
    assert (repo / "reports" / "run").is_dir()  # the run's results, in the user's repository

    # the harness's `host` is hub_host: testinfra's would have run on this machine
    (repo / "tests" / "test_host.py").write_text("def test_where(host):\n    assert host.exists('sh')\n")
    env["HIL_DEVICES"] = str(INVENTORY)  # the other way to name the inventory
    res = _run([str(venv / "bin" / "pytest"), "tests/test_host.py"], cwd=repo, env=env)
    assert res.returncode != 0 and "use 'hub_host'" in res.stdout

    # the CLI comes along; an extra that is not installed is named, not a traceback
    out = _run([str(venv / "bin" / "hil"), "--version"], cwd=repo, env=env).stdout
    assert out.startswith("hil-harness ")
    res = _run([str(venv / "bin" / "python"), "-c",
                "from hil.probes.tls import tls_scan; from pathlib import Path; "
                "tls_scan('127.0.0.1', 9, ca_file=Path('ca.pem'))"], cwd=repo, env=env)
    assert "pip install 'hil-harness[security]'" in res.stderr
