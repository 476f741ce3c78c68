"""Evidence files the gate keeps with gate.json: the run's SBOMs (OWASP I5).

The security suite writes one CycloneDX SBOM per hub and per candidate image into
``reports/run/<run-id>/sbom/``. The gate copies them beside gate.json (into
``<gate.json stem>.sbom/``) and lists each with its subject and sha256 under
``evidence.sboms``; the ledger's sha256 of gate.json then covers them too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

SBOM_DIR = "sbom"
SBOM_SUFFIX = ".cdx.json"
MAX_SBOM_BYTES = 64 * 1024 * 1024


def run_sboms(run_dir: Path | None, warnings: list[str]) -> list[Path]:
    if run_dir is None or not (run_dir / SBOM_DIR).is_dir():
        return []
    out = []
    for p in sorted((run_dir / SBOM_DIR).glob(f"*{SBOM_SUFFIX}")):
        if p.is_symlink() or not p.is_file() or p.stat().st_size > MAX_SBOM_BYTES:
            warnings.append(f"{p}: not kept (not a regular file, or larger than {MAX_SBOM_BYTES} bytes)")
            continue
        out.append(p)
    return out


def _describe(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    entry: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest()}
    try:
        doc = json.loads(data)
        comp = doc.get("metadata", {}).get("component", {})
        props = {p.get("name"): p.get("value") for p in comp.get("properties") or [] if isinstance(p, dict)}
        entry.update(kind=props.get("hil:subject:kind") or comp.get("type"), subject=comp.get("name"),
                     version=comp.get("version"), components=len(doc.get("components") or []),
                     spec_version=doc.get("specVersion"))
    except (ValueError, AttributeError, TypeError):
        entry["unreadable"] = True
    return entry


def keep_sboms(sboms: list[Path], gate_json: Path) -> list[dict[str, Any]]:
    """Copy the SBOMs beside gate.json; return their gate.json entries (paths relative to it)."""
    if not sboms:
        return []
    folder = gate_json.parent / f"{gate_json.stem}.{SBOM_DIR}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"*{SBOM_SUFFIX}"):  # only what an earlier gate run put here
        old.unlink()
    out = []
    for src in sboms:
        dst = folder / src.name
        shutil.copyfile(src, dst)
        out.append({"file": dst.relative_to(gate_json.parent).as_posix(), **_describe(dst)})
    return out
