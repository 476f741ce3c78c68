"""Serialising evidence records for report attachments."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in getattr(type(value), "__evidence_properties__", ()):
            out[name] = _plain(getattr(value, name))
        return out
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return value


def to_json(record: object) -> str:
    """The evidence record as indented JSON, e.g. for an Allure attachment."""
    return json.dumps(_plain(record), indent=2, sort_keys=True, default=str)
