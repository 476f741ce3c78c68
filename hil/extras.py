"""Optional parts of the harness (pip extras) and the one way to import them.

The core install runs the harness and its smoke and functional suites. Heavier parts
are extras: ``pip install 'hil-harness[security]'`` and so on. Every import of an
optional package goes through ``needs_extra``, so a missing one is reported as a
``MissingExtra`` (a ``UserError``: one line, no traceback) that names the extra to
install, instead of a bare ``ModuleNotFoundError`` from deep inside a check.

``EXTRAS`` must match ``[project.optional-dependencies]`` in pyproject.toml; a unit
test compares them.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hil.errors import UserError

DISTRIBUTION = "hil-harness"


@dataclass(frozen=True)
class Extra:
    """One pip extra: what it is for, the modules it provides, the programs it installs."""

    purpose: str
    modules: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()


EXTRAS: dict[str, Extra] = {
    "lab": Extra("the virtual lab (`hil lab ...`): Docker SDK and the lab CA",
                 modules=("docker", "cryptography")),
    "security": Extra("the security suite's TLS and SSH scanners (sslyze, ssh-audit) and SBOMs (CycloneDX)",
                      modules=("sslyze", "cyclonedx", "packageurl"), programs=("ssh-audit",)),
    "postgres": Extra("the shared PostgreSQL lease store (lease.store: postgresql://...)",
                      modules=("psycopg",)),
    "plots": Extra("latency plots (PNG attachments)", modules=("matplotlib",)),
    "ml": Extra("the ml suite's reference inference on the harness host (onnxruntime)",
                modules=("onnxruntime",)),
}


class MissingExtra(UserError):
    """An optional part of the harness is used but its pip extra is not installed."""

    def __init__(self, extra: str, what: str) -> None:
        self.extra = extra
        super().__init__(f"{what} is not installed: it comes with the harness's '{extra}' extra "
                         f"({EXTRAS[extra].purpose}). Install it with "
                         f"pip install '{DISTRIBUTION}[{extra}]'")


@contextmanager
def needs_extra(extra: str) -> Iterator[None]:
    """Wrap the imports of an optional part: a missing module becomes ``MissingExtra``.

    Only modules the extra declares are translated; any other ImportError is a bug and
    keeps its traceback.
    """
    declared = EXTRAS[extra].modules
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in declared:
            raise
        raise MissingExtra(extra, f"the Python package {top!r}") from None


def extra_program(extra: str, name: str) -> str:
    """Path of a program an extra installs: beside this interpreter first (the venv), else PATH."""
    if name not in EXTRAS[extra].programs:
        raise ValueError(f"extra {extra!r} declares no program {name!r}")
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise MissingExtra(extra, f"the program {name!r}")
    return found
