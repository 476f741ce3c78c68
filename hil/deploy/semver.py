"""Semantic versions and npm-style version ranges, as Greengrass recipes use them.

``ComponentVersion`` is a strict SemVer 2.0 version; a dependency's
``VersionRequirement`` is an npm range: comparators (``>=1.0.0 <2.0.0``), ``||``,
hyphen ranges, x-ranges (``1.x``, ``*``), tilde and caret. Pre-releases only satisfy
a range whose comparator names the same major.minor.patch with a pre-release (npm rule).

The nucleus stand-in of the lab has its own copy (lab/hil_lab/hub/rootfs/opt/hil-lab/
nucleus/ggnucleus/semver.py) on purpose: it runs on the hub with the standard library
only. One table of cases (tests/data/semver/cases.json, judged by node-semver) holds
both to the same answers; see docs/architecture.md, "The two semver copies".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_NUM = r"0|[1-9]\d*"
_IDENT = r"[0-9A-Za-z-]+"
_SEMVER_RE = re.compile(
    rf"^(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?(?:\+(?P<build>{_IDENT}(?:\.{_IDENT})*))?$"
)


class VersionError(ValueError):
    """Not a SemVer version or not an npm range; the message says what was expected."""


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _SEMVER_RE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise VersionError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)")
        pre = tuple(m.group("pre").split(".")) if m.group("pre") else ()
        for ident in pre:
            if ident.isdigit() and len(ident) > 1 and ident.startswith("0"):
                raise VersionError(f"{text!r}: numeric pre-release identifiers have no leading zeros")
        build = tuple(m.group("build").split(".")) if m.group("build") else ()
        return cls(int(m.group("major")), int(m.group("minor")), int(m.group("patch")), pre, build)

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def _key(self) -> tuple[tuple[int, int, int], int, tuple[tuple[int, int | str], ...]]:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric.
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease)
        return (self.core, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()  # build metadata does not count

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            s += "-" + ".".join(self.prerelease)
        if self.build:
            s += "+" + ".".join(self.build)
        return s


# -- ranges ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparator:
    op: str  # one of < <= > >= =
    version: Version

    def test(self, v: Version) -> bool:
        if self.op == "<":
            return v < self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == ">":
            return v > self.version
        if self.op == ">=":
            return v >= self.version
        return v == self.version

    def __str__(self) -> str:
        return f"{'' if self.op == '=' else self.op}{self.version}"


_X = r"(?:[xX*]|0|[1-9]\d*)"
_PARTIAL_RE = re.compile(
    rf"^v?(?P<major>{_X})(?:\.(?P<minor>{_X})(?:\.(?P<patch>{_X})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?(?:\+{_IDENT}(?:\.{_IDENT})*)?)?)?$"
)
_COMPARATOR_RE = re.compile(r"^(?P<op><=|>=|<|>|=|~>|~|\^)?\s*(?P<ver>\S+)$")


@dataclass(frozen=True)
class _Partial:
    major: int | None
    minor: int | None
    patch: int | None
    pre: tuple[str, ...]


def _partial(text: str, whole: str) -> _Partial:
    m = _PARTIAL_RE.match(text)
    if not m:
        raise VersionError(f"{whole!r}: {text!r} is not a version or x-range")

    def num(g: str) -> int | None:
        raw = m.group(g)
        return None if raw is None or raw in ("x", "X", "*") else int(raw)

    major, minor, patch = num("major"), num("minor"), num("patch")
    # after a wildcard, every lower part is a wildcard too (1.x.3 means 1.x)
    if major is None:
        minor = patch = None
    elif minor is None:
        patch = None
    pre = tuple(m.group("pre").split(".")) if m.group("pre") and patch is not None else ()
    return _Partial(major, minor, patch, pre)


def _v(major: int, minor: int, patch: int, pre: tuple[str, ...] = ()) -> Version:
    return Version(major, minor, patch, pre)


def _lowest_pre(v: Version) -> Version:
    # "<X.Y.Z" with X.Y.Z from a wildcard must exclude X.Y.Z's pre-releases (npm uses -0)
    return Version(v.major, v.minor, v.patch, ("0",))


def _expand(op: str, p: _Partial) -> list[Comparator]:
    """One comparator (possibly with ~, ^ or wildcards) as plain comparators."""
    if p.major is None:  # *, x, or >=* etc.
        return [] if op in ("", "=", ">=", "<=", "~", "^", "~>") else [Comparator("<", _v(0, 0, 0, ("0",)))]
    ma, mi, pa = p.major, p.minor, p.patch
    if op in ("~", "~>"):
        lo = _v(ma, mi or 0, pa or 0, p.pre)
        hi = _v(ma + 1, 0, 0) if mi is None else _v(ma, mi + 1, 0)
        return [Comparator(">=", lo), Comparator("<", _lowest_pre(hi))]
    if op == "^":
        lo = _v(ma, mi or 0, pa or 0, p.pre)
        if ma > 0 or mi is None:
            hi = _v(ma + 1, 0, 0)
        elif mi > 0 or pa is None:
            hi = _v(0, mi + 1, 0)
        else:
            hi = _v(0, 0, pa + 1)
        return [Comparator(">=", lo), Comparator("<", _lowest_pre(hi))]
    if mi is not None and pa is not None:
        return [Comparator(op or "=", _v(ma, mi, pa, p.pre))]
    # partial version with a plain operator
    lo = _v(ma, mi or 0, 0)
    hi = _v(ma + 1, 0, 0) if mi is None else _v(ma, mi + 1, 0)
    if op in ("", "="):
        return [Comparator(">=", lo), Comparator("<", _lowest_pre(hi))]
    if op == ">":
        return [Comparator(">=", hi)]
    if op == ">=":
        return [Comparator(">=", lo)]
    if op == "<":
        return [Comparator("<", _lowest_pre(lo))]
    return [Comparator("<", _lowest_pre(hi))]  # <=


def _hyphen(lo: _Partial, hi: _Partial) -> list[Comparator]:
    out = [] if lo.major is None else [Comparator(">=", _v(lo.major, lo.minor or 0, lo.patch or 0, lo.pre))]
    if hi.major is None:
        return out
    if hi.minor is None:
        return [*out, Comparator("<", _lowest_pre(_v(hi.major + 1, 0, 0)))]
    if hi.patch is None:
        return [*out, Comparator("<", _lowest_pre(_v(hi.major, hi.minor + 1, 0)))]
    return [*out, Comparator("<=", _v(hi.major, hi.minor, hi.patch, hi.pre))]


@dataclass(frozen=True)
class Range:
    """An npm range: OR of AND-sets of comparators."""

    text: str
    sets: tuple[tuple[Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        if not isinstance(text, str):
            raise VersionError(f"{text!r} is not a version range (a string such as '~2.0.0')")
        sets = []
        for part in text.split("||"):
            sets.append(tuple(_parse_set(part.strip(), text)))
        return cls(text, tuple(sets))

    def satisfied_by(self, version: Version | str) -> bool:
        v = Version.parse(version) if isinstance(version, str) else version
        return any(_set_allows(s, v) for s in self.sets)

    def __str__(self) -> str:
        return self.text


def _parse_set(text: str, whole: str) -> list[Comparator]:
    if text == "":
        return []
    # "1.2.3 - 2.3.4": the hyphen must be surrounded by spaces
    m = re.match(r"^(\S+)\s+-\s+(\S+)$", text)
    if m:
        return _hyphen(_partial(m.group(1), whole), _partial(m.group(2), whole))
    # allow "> = 1.2" style gaps between operator and version
    tokens = re.sub(r"(<=|>=|<|>|=|~>|~|\^)\s+", r"\1", text).split()
    out: list[Comparator] = []
    for tok in tokens:
        cm = _COMPARATOR_RE.match(tok)
        if not cm:
            raise VersionError(f"{whole!r}: {tok!r} is not a comparator")
        out.extend(_expand(cm.group("op") or "", _partial(cm.group("ver"), whole)))
    return out


def _set_allows(comparators: tuple[Comparator, ...], v: Version) -> bool:
    if not all(c.test(v) for c in comparators):
        return False
    if not v.prerelease:
        return True
    # npm: a pre-release only matches when some comparator is a pre-release of the same core
    return any(c.version.prerelease and c.version.core == v.core for c in comparators
               if c.version.prerelease != ("0",) or c.op != "<")
