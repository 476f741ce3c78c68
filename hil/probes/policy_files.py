"""Policy files (hil/policies/*.yaml): versioned data the checks judge against.

One loader for all of them, so a missing or malformed file is always one clear
UserError naming the file and the field, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hil.errors import UserError

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"


def load_policy(path: Path, required: Sequence[str], what: str) -> dict[str, Any]:
    """The YAML mapping in ``path`` with every key of ``required`` present."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"{what} cannot be read: {exc.strerror}", file=str(path)) from None
    except yaml.YAMLError as exc:
        raise UserError(f"{what} is not valid YAML: {exc}", file=str(path)) from None
    if not isinstance(doc, dict):
        raise UserError(f"{what} must be a mapping with {', '.join(required)}", file=str(path))
    for key in required:
        if key not in doc:
            raise UserError(f"{what} misses {key!r}", file=str(path), field=key)
    return doc


def policy_mapping(doc: dict[str, Any], key: str, path: Path, what: str) -> dict[str, str]:
    """``doc[key]`` as a str -> str mapping (e.g. an allowlist entry and why)."""
    value = doc[key]
    if not isinstance(value, dict):
        raise UserError(f"{what}: {key} must map a name to the reason it is allowed", file=str(path),
                        field=key)
    return {str(k): str(v) for k, v in value.items()}


def policy_list(doc: dict[str, Any], key: str, path: Path, what: str) -> tuple[str, ...]:
    value = doc[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{what}: {key} must be a list of strings", file=str(path), field=key)
    return tuple(value)
