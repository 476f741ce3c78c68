"""Does the hub's package manager refuse what nobody signed? (OWASP IoT I4, secure update)

Judged from apt's effective state, not from our lab's file names:

- ``apt-config dump``: the configuration apt itself resolved from apt.conf, apt.conf.d
  and ``APT_CONFIG``. Insecure: ``APT::Get::AllowUnauthenticated``,
  ``Acquire::AllowInsecureRepositories``, ``Acquire::AllowDowngradeToInsecureRepositories``,
  ``Acquire::AllowWeakRepositories`` set to a true value (apt's own spellings: 1, yes,
  true, with, on, enable).
- the sources apt reads, located by that same dump (``Dir``, ``Dir::Etc``,
  ``Dir::Etc::sourcelist``, ``Dir::Etc::sourceparts``): one-line ``.list`` entries with
  ``[trusted=yes]`` (or ``allow-insecure=yes`` / ``allow-weak=yes`` /
  ``allow-downgrade-to-insecure=yes``) and deb822 ``.sources`` stanzas with ``Trusted:
  yes`` (or the ``Allow-*`` fields).

Everything read from the hub is untrusted: file names from the hub only ever travel
as arguments, never through a shell, and reads are capped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import ClassVar

from hil.drivers.base import Shell

INSECURE_OPTIONS = ("APT::Get::AllowUnauthenticated", "Acquire::AllowInsecureRepositories",
                    "Acquire::AllowDowngradeToInsecureRepositories", "Acquire::AllowWeakRepositories")
INSECURE_SOURCE_OPTIONS = ("trusted", "allow-insecure", "allow-weak", "allow-downgrade-to-insecure")
_TRUE = {"1", "yes", "true", "with", "on", "enable"}
_DUMP_RE = re.compile(r'^(\S+) "(.*)";$')
_OPTS_RE = re.compile(r"^\s*(deb|deb-src)\s+\[([^\]]*)\]")
MAX_SOURCE_BYTES = 256 * 1024
MAX_SOURCE_FILES = 200


class AptMissing(Exception):
    """The hub has no apt (apt-config not found): the check does not apply to it."""


@dataclass(frozen=True)
class InsecureSource:
    file: str
    line: int
    option: str
    """e.g. trusted=yes, Trusted: yes"""
    entry: str


@dataclass
class AptTrust:
    device: str
    options: dict[str, str] = field(default_factory=dict)
    """The security-relevant options as the effective config has them (absent: apt's default)."""
    insecure_options: list[str] = field(default_factory=list)
    source_files: list[str] = field(default_factory=list)
    """Every sources file apt reads that was judged."""
    insecure_sources: list[InsecureSource] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("secure",)

    @property
    def secure(self) -> bool:
        return not self.insecure_options and not self.insecure_sources


def parse_config_dump(text: str) -> dict[str, str]:
    """``apt-config dump`` -> {key: value}; keys keep apt's spelling (compare case-insensitively)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _DUMP_RE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def is_true(value: str) -> bool:
    return value.strip().strip('"').lower() in _TRUE


def insecure_options(config: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    lowered = {k.lower(): (k, v) for k, v in config.items()}
    found: dict[str, str] = {}
    bad: list[str] = []
    for opt in INSECURE_OPTIONS:
        hit = lowered.get(opt.lower())
        if hit is None:
            continue
        found[opt] = hit[1]
        if is_true(hit[1]):
            bad.append(f'{hit[0]} "{hit[1]}"')
    return found, bad


def source_locations(config: dict[str, str]) -> tuple[str, str]:
    """(sources.list file, sources.list.d folder) as apt resolves them from its config."""
    low = {k.lower(): v for k, v in config.items()}
    root = PurePosixPath(low.get("dir", "/") or "/")
    etc = PurePosixPath(low.get("dir::etc", "etc/apt") or "etc/apt")
    etc = etc if etc.is_absolute() else root / etc

    def place(key: str, default: str) -> str:
        p = PurePosixPath(low.get(key, default) or default)
        return str(p if p.is_absolute() else etc / p)

    return place("dir::etc::sourcelist", "sources.list"), place("dir::etc::sourceparts", "sources.list.d")


def insecure_entries(path: str, text: str) -> list[InsecureSource]:
    """``[trusted=yes]`` and friends in a one-line file; ``Trusted: yes`` in a deb822 file."""
    out: list[InsecureSource] = []
    if path.endswith(".sources"):
        for n, line in enumerate(text.splitlines(), 1):
            key, sep, value = line.partition(":")
            field_line = sep and not line.startswith((" ", "\t", "#"))
            if field_line and key.strip().lower() in INSECURE_SOURCE_OPTIONS and is_true(value):
                out.append(InsecureSource(path, n, f"{key.strip()}: {value.strip()}", line.strip()[:200]))
        return out
    for n, line in enumerate(text.splitlines(), 1):
        m = _OPTS_RE.match(line)
        if not m:
            continue
        for opt in m.group(2).split():
            key, sep, value = opt.partition("=")
            if sep and key.lower() in INSECURE_SOURCE_OPTIONS and is_true(value):
                out.append(InsecureSource(path, n, opt, line.strip()[:200]))
    return out


def apt_trust(shell: Shell, *, timeout: float) -> AptTrust:
    """apt's effective trust settings on the hub; ``AptMissing`` when it has no apt."""
    dump = shell.run(["apt-config", "dump"], timeout=timeout)
    if dump.exit_status == 127 or (dump.exit_status != 0 and "not found" in dump.stderr):
        raise AptMissing(f"{shell.device}: apt-config not found (no apt on this hub)")
    dump.check()
    config = parse_config_dump(dump.stdout)
    ev = AptTrust(device=shell.device)
    ev.options, ev.insecure_options = insecure_options(config)
    sources_list, parts = source_locations(config)
    listed = shell.run(["find", parts, "-maxdepth", "1", "-type", "f", "(", "-name", "*.list", "-o",
                        "-name", "*.sources", ")"], timeout=timeout)
    files = [sources_list, *sorted(ln for ln in listed.stdout.splitlines() if ln.startswith(parts + "/"))]
    for path in files[:MAX_SOURCE_FILES]:
        got = shell.run(["head", "-c", str(MAX_SOURCE_BYTES), "--", path], timeout=timeout)
        if got.exit_status != 0:
            if path != sources_list:  # an absent sources.list is normal with deb822 sources
                ev.unreadable.append(path)
            continue
        ev.source_files.append(path)
        ev.insecure_sources.extend(insecure_entries(path, got.stdout))
    return ev
