"""The Debian mirror this machine's apt uses, read from its configuration.

The lab's base image is debootstrapped from the same mirror apt installs from (the
machine may reach only that one), or from ``$HIL_DEBIAN_MIRROR``; never a built-in host.

apt reads ``/etc/apt/sources.list`` (one-line format) and, in ``sources.list.d/``, files
ending in ``.list`` (one-line) and ``.sources`` (deb822 stanzas), in that order; other
files there (``*.disabled``, ``*.save``) are ignored, as apt ignores them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

APT_DIR = Path("/etc/apt")
MIRROR_ENV = "HIL_DEBIAN_MIRROR"

# Suites of the main Debian archive. A mirror that serves one serves all of them (bookworm
# included), unlike the -security archive or a third-party repository.
DEBIAN_SUITES = frozenset({"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
                           "oldoldstable", "oldstable", "stable", "testing", "unstable"})
_USABLE_SCHEMES = ("http://", "https://", "file:/")


@dataclass(frozen=True)
class AptSource:
    """One enabled ``deb`` entry: where it came from, its URIs and suites."""

    origin: str
    uris: tuple[str, ...]
    suites: tuple[str, ...]


def apt_source_files(apt_dir: Path = APT_DIR) -> list[Path]:
    """The files apt reads, in apt's order."""
    parts = apt_dir / "sources.list.d"
    extra = sorted(p for p in parts.glob("*") if p.suffix in (".list", ".sources")) if parts.is_dir() else []
    return [apt_dir / "sources.list", *extra]


def parse_deb822(text: str, origin: str) -> Iterator[AptSource]:
    """Stanzas of a ``.sources`` file (continuation lines, comments, ``Enabled: no`` honoured)."""
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key: str | None = None
        for line in stanza.splitlines():
            if line.lstrip().startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key is not None:  # a continuation of the previous field
                fields[key] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep:
                continue
            key = name.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").strip().lower() in ("no", "false", "0"):
            continue
        uris, suites = tuple(fields.get("uris", "").split()), tuple(fields.get("suites", "").split())
        if uris and suites:
            yield AptSource(origin, uris, suites)


def parse_one_line(text: str, origin: str) -> Iterator[AptSource]:
    """``deb [options] URI SUITE COMPONENT...`` lines of a ``.list`` file."""
    for raw in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", raw.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            yield AptSource(origin, (line[1],), (line[2],))


def read_sources(files: Iterable[Path]) -> list[AptSource]:
    out: list[AptSource] = []
    for path in files:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        parse = parse_deb822 if path.suffix == ".sources" else parse_one_line
        out.extend(parse(text, str(path)))
    return out


def _usable(uri: str) -> str | None:
    """A URI debootstrap can fetch from; ``mirror+file:`` lists (Debian's cloud images) are read."""
    if uri.startswith("mirror+file:"):
        listing = Path(re.sub(r"^mirror\+file:(//)?", "", uri))
        try:
            lines = listing.read_text().splitlines()
        except OSError:
            return None
        uri = next((ln.split()[0] for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    return uri.rstrip("/") if uri.startswith(_USABLE_SCHEMES) else None


def debian_mirror_from(sources: Iterable[AptSource], suite: str) -> str | None:
    """The first mirror that serves ``suite`` itself, else the first one of the main Debian archive."""
    sources = list(sources)
    exact = [s for s in sources if suite in s.suites]
    archive = [s for s in sources if DEBIAN_SUITES & set(s.suites)]
    for src in (*exact, *archive):
        for uri in src.uris:
            if (usable := _usable(uri)) is not None:
                return usable
    return None
