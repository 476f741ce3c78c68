"""Semantic versions and npm-style ranges, as Greengrass uses for VersionRequirement.

The harness has its own copy (hil/deploy/semver.py) on purpose: this one runs on the hub
with the standard library only, and the hub never imports the harness. The two are held
together by one table of cases both must pass, checked against node-semver
(tests/data/semver/cases.json; docs/architecture.md, "The two semver copies").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


class VersionError(ValueError):
    pass


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION.match(str(text).strip())
        if not m:
            raise VersionError(f"Invalid semantic version: {text}")
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)

    @property
    def tuple3(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def _key(self) -> tuple[object, ...]:
        # A prerelease sorts before its release; identifiers compare numerically when numeric.
        if not self.pre:
            return (*self.tuple3, 1, ())
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (*self.tuple3, 0, ids)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return base + ("-" + ".".join(self.pre) if self.pre else "")


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


_PARTIAL = re.compile(r"^v?([0-9]+|[xX*])(?:\.([0-9]+|[xX*]))?(?:\.([0-9]+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_WILD = {"x", "X", "*", None}


def _partial(text: str) -> tuple[int | None, int | None, int | None, tuple[str, ...]]:
    m = _PARTIAL.match(text)
    if not m:
        raise VersionError(f"Invalid version in range: {text}")
    parts: list[int | None] = []
    for g in (m.group(1), m.group(2), m.group(3)):
        parts.append(None if g in _WILD else int(g))
    # Anything after a wildcard is a wildcard too ("1.x.3" == "1.x").
    for i in range(3):
        if parts[i] is None:
            parts[i + 1:] = [None] * (2 - i)
            break
    pre = tuple(m.group(4).split(".")) if m.group(4) and parts[2] is not None else ()
    return parts[0], parts[1], parts[2], pre


def _v(major: int, minor: int, patch: int, pre: tuple[str, ...] = ()) -> Version:
    return Version(major, minor, patch, pre)


def _expand(token: str) -> list[Comparator]:
    """One npm range token (operator + partial version) as a list of comparators."""
    m = re.match(r"^(<=|>=|<|>|=|~>|~|\^)?\s*(.*)$", token)
    if not m:
        raise VersionError(f"Invalid range token: {token}")
    op, rest = m.group(1) or "", m.group(2)
    if rest in ("", "*", "x", "X"):
        return [] if op in ("", "=", ">=", "~", "^") else [Comparator("<", _v(0, 0, 0, ("0",)))]
    major, minor, patch, pre = _partial(rest)
    if major is None:
        raise VersionError(f"Invalid range token: {token}")
    if op in ("~", "~>"):
        lo = _v(major, minor or 0, patch or 0, pre)
        hi = _v(major + 1, 0, 0, ("0",)) if minor is None else _v(major, minor + 1, 0, ("0",))
        return [Comparator(">=", lo), Comparator("<", hi)]
    if op == "^":
        lo = _v(major, minor or 0, patch or 0, pre)
        if major > 0 or minor is None:
            hi = _v(major + 1, 0, 0, ("0",))
        elif minor > 0 or patch is None:
            hi = _v(0, minor + 1, 0, ("0",))
        else:
            hi = _v(0, 0, patch + 1, ("0",))
        return [Comparator(">=", lo), Comparator("<", hi)]
    if minor is None or patch is None:  # x-range with an operator or bare
        lo = _v(major, minor or 0, 0)
        hi = _v(major + 1, 0, 0, ("0",)) if minor is None else _v(major, minor + 1, 0, ("0",))
        if op in ("", "="):
            return [Comparator(">=", lo), Comparator("<", hi)]
        if op == ">":
            # above the whole x-range: the next release itself, not its pre-releases (npm: >1 is >=2.0.0)
            return [Comparator(">=", _v(*hi.tuple3))]
        if op == ">=":
            return [Comparator(">=", lo)]
        if op == "<":
            return [Comparator("<", _v(*lo.tuple3, ("0",)))]
        return [Comparator("<", hi)]  # <=
    return [Comparator(op or "=", _v(major, minor, patch, pre))]


@dataclass(frozen=True)
class Range:
    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        alts: list[tuple[Comparator, ...]] = []
        for alt in str(text).split("||"):
            alt = alt.strip()
            hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", alt)
            if hyphen:
                lo = _expand(">=" + hyphen.group(1))
                a, b, c, pre = _partial(hyphen.group(2))
                hi: list[Comparator]
                if a is None:
                    hi = []  # "X - *": no upper bound
                elif b is None or c is None:
                    hi = [Comparator("<", _v(a + 1, 0, 0, ("0",)) if b is None else _v(a, b + 1, 0, ("0",)))]
                else:
                    hi = [Comparator("<=", _v(a, b, c, pre))]
                alts.append(tuple(lo + hi))
                continue
            # Operators may be separated from their version by spaces (">= 1.2.3").
            alt = re.sub(r"(<=|>=|<|>|=|~>|~|\^)\s+", r"\1", alt)
            comps: list[Comparator] = []
            for token in alt.split():
                comps.extend(_expand(token))
            alts.append(tuple(comps))
        return cls(str(text), tuple(alts))

    def satisfied_by(self, v: Version) -> bool:
        for comps in self.alternatives:
            if not all(c.test(v) for c in comps):
                continue
            if v.pre and not any(c.version.pre and c.version.tuple3 == v.tuple3 for c in comps):
                continue  # npm: prereleases only match a comparator on the same x.y.z
            return True
        return False

    def __str__(self) -> str:
        return self.text


def satisfies(version: str, requirement: str) -> bool:
    return Range.parse(requirement).satisfied_by(Version.parse(version))
