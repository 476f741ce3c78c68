"""Provenance for the report: Allure's environment.properties."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from hil.inventory import Device, Inventory


def git_revision(repo: Path) -> str:
    """The harness's git revision, with ``-dirty`` when the tree has local changes."""
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def environment(inventory: Inventory, devices: list[Device], *, revision: str,
                os_versions: Mapping[str, str] | None = None,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "inventory.file": str(inventory.path),
        "inventory.sha256": inventory.sha256,
        "lab": inventory.lab,
        "devices": ", ".join(d.name for d in devices),
        "models": ", ".join(sorted({d.model for d in devices})),
        "harness.revision": revision,
    }
    for name, version in sorted((os_versions or {}).items()):
        env[f"os.{name}"] = version
    env.update(extra or {})
    return env


def _escape(value: str) -> str:
    # java.util.Properties: backslash escapes, one logical line per key
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("=", "\\=").replace(":", "\\:")


def write_environment(results_dir: Path, env: Mapping[str, str]) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "environment.properties"
    lines = [f"{k.replace(' ', '_')}={_escape(v)}" for k, v in env.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def add_environment(results_dir: Path, entries: Mapping[str, str]) -> Path:
    """Set ``entries`` in the results' environment.properties, keeping the other lines."""
    path = results_dir / "environment.properties"
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    keys = {k.replace(" ", "_") for k in entries}
    kept = [ln for ln in lines if ln.partition("=")[0] not in keys]
    kept += [f"{k.replace(' ', '_')}={_escape(v)}" for k, v in entries.items()]
    path.write_text("\n".join(kept) + "\n")
    return path
