"""The Allure report generator is a pinned dependency: an exact version and its integrity hash in
the committed lockfile, installed with `npm ci --ignore-scripts` into the user's cache folder.

Real npm: the reproducibility test downloads the pinned package from the npm registry (npm's own
cache makes the second install local); the scripts test needs no network.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hil.report.html import INSTALLED_MARK, TOOL_MANIFEST, ReportError, ensure_allure, tools_dir

pytestmark = pytest.mark.skipif(shutil.which("npm") is None or shutil.which("java") is None,
                                reason="npm and java are needed (Debian: npm, openjdk-17-jre-headless)")


def _lock() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((TOOL_MANIFEST / "package-lock.json").read_text())
    return doc


def _tree(root: Path) -> str:
    """sha256 over every installed file (relative path + content) and link target."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            h.update(f"{rel} -> {p.readlink()}\n".encode())
        elif p.is_file():
            h.update(f"{rel} {hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def test_the_lockfile_pins_exact_versions_with_integrity() -> None:
    manifest = json.loads((TOOL_MANIFEST / "package.json").read_text())
    for name, spec in manifest["dependencies"].items():
        assert spec[0].isdigit() and not any(c in spec for c in "^~<>=*x| "), f"{name}: {spec} is a range"
    packages = _lock()["packages"]
    assert isinstance(packages, dict)
    for path, pkg in packages.items():
        if path:
            assert pkg["integrity"].startswith("sha512-"), path
    pinned = manifest["dependencies"]["allure-commandline"]
    assert packages["node_modules/allure-commandline"]["version"] == pinned


def test_the_default_cache_is_the_users_not_the_package(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.delenv("HIL_TOOLS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tools_dir() == tmp_path / "xdg" / "hil" / "tools"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tools_dir() == Path.home() / ".cache" / "hil" / "tools"
    assert not tools_dir().is_relative_to(Path(__file__).resolve().parents[2] / "hil")


def test_the_install_is_reproducible_from_the_lockfile(tmp_path: Path) -> None:
    first = ensure_allure(tmp_path / "a")
    second = ensure_allure(tmp_path / "b")
    a, b = first.parents[2], second.parents[2]  # <tools>/allure-<digest>/node_modules/.bin/allure
    assert (a / INSTALLED_MARK).is_file() and a.parent == tmp_path / "a"
    assert _tree(a / "node_modules") == _tree(b / "node_modules")
    installed = json.loads((a / "node_modules/allure-commandline/package.json").read_text())
    assert installed["version"] == _lock()["packages"]["node_modules/allure-commandline"]["version"]
    version = subprocess.run([str(first), "--version"], capture_output=True, text=True, timeout=120,
                             check=True)
    assert version.stdout.strip() == installed["version"]
    t0 = time.monotonic()
    assert ensure_allure(tmp_path / "a") == first  # cached: no npm run
    assert time.monotonic() - t0 < 1


def test_a_tampered_lockfile_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest"
    shutil.copytree(TOOL_MANIFEST, manifest)
    lock = json.loads((manifest / "package-lock.json").read_text())
    good = lock["packages"]["node_modules/allure-commandline"]["integrity"]
    lock["packages"]["node_modules/allure-commandline"]["integrity"] = "sha512-" + "A" * 86 + "=="
    assert lock["packages"]["node_modules/allure-commandline"]["integrity"] != good
    (manifest / "package-lock.json").write_text(json.dumps(lock, indent=2))
    with pytest.raises(ReportError, match="npm ci of the Allure report generator failed"):
        ensure_allure(tmp_path / "tools", manifest=manifest)
    assert not list((tmp_path / "tools").glob("allure-*"))  # nothing half-installed left to use


def test_install_scripts_never_run(tmp_path: Path) -> None:
    """A dependency with a postinstall script: plain `npm ci` runs it (the control), the harness's
    install does not."""
    pkg = tmp_path / "evil"
    pkg.mkdir()
    marker = tmp_path / "postinstall-ran"
    (pkg / "package.json").write_text(json.dumps({
        "name": "evil", "version": "1.0.0", "bin": {"allure": "allure.js"},
        "scripts": {"postinstall": f"node -e \"require('fs').writeFileSync('{marker}', 'x')\""}}))
    (pkg / "allure.js").write_text("#!/usr/bin/env node\n")
    subprocess.run(["npm", "pack", "--silent"], cwd=pkg, check=True, capture_output=True, timeout=120)
    # "../evil-1.0.0.tgz" from where npm ci runs: <tools>/.allure-XXXX/ -> <tools>/evil-1.0.0.tgz
    tools = tmp_path / "tools"
    manifest = tools / "manifest"
    manifest.mkdir(parents=True)
    shutil.move(str(pkg / "evil-1.0.0.tgz"), tools / "evil-1.0.0.tgz")
    (manifest / "package.json").write_text(json.dumps({"name": "t", "version": "1.0.0", "private": True,
                                                       "dependencies": {"evil": "file:../evil-1.0.0.tgz"}}))
    npm = ["npm", "--no-audit", "--no-fund", "--loglevel=error"]
    subprocess.run([*npm, "install", "--package-lock-only", "--ignore-scripts"], cwd=manifest, check=True,
                   capture_output=True, timeout=120)
    control = tools / "control"
    control.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(manifest / name, control / name)
    subprocess.run([*npm, "ci"], cwd=control, check=True, capture_output=True, timeout=120)
    assert marker.exists(), "control: plain npm ci should have run the postinstall script"
    marker.unlink()
    launcher = ensure_allure(tools, manifest=manifest)
    assert launcher.exists()
    assert not marker.exists(), "the harness's install ran the package's postinstall script"
