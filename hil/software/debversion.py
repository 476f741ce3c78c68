"""Debian package versions, compared exactly as dpkg compares them.

``[epoch:]upstream_version[-debian_revision]``: the epoch compares as a number; the
upstream version and the revision compare with dpkg's ``verrevcmp``: alternately a run
of non-digits (letters sort before non-letters, ``~`` before everything, even the end
of the string) and a run of digits (as a number). So ``1.2.0~rc1-1 < 1.2.0-2`` and
``1:0.9 > 2.0``, which plain string comparison gets wrong. Cross-checked against
``dpkg --compare-versions`` in tests/unit/test_debversion.py.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_EPOCH_RE = re.compile(r"^[0-9]+$")
_ALLOWED_RE = re.compile(r"^[A-Za-z0-9.+~:-]+$")


class DebianVersionError(ValueError):
    """Not a Debian version string."""


def _order(c: str) -> int:
    """dpkg's weight of one character of a non-digit run ('' is the end of the string)."""
    if not c or "0" <= c <= "9":
        return 0
    if ("A" <= c <= "Z") or ("a" <= c <= "z"):
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _is_digit(s: str, i: int) -> bool:
    return i < len(s) and "0" <= s[i] <= "9"


def verrevcmp(a: str, b: str) -> int:
    """dpkg's comparison of two upstream versions or two revisions (<0, 0, >0)."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not _is_digit(a, i)) or (j < len(b) and not _is_digit(b, j)):
            ac = _order(a[i]) if i < len(a) and not _is_digit(a, i) else 0
            bc = _order(b[j]) if j < len(b) and not _is_digit(b, j) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while _is_digit(a, i) and _is_digit(b, j):
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if _is_digit(a, i):
            return 1
        if _is_digit(b, j):
            return -1
        if first_diff:
            return first_diff
    return 0


@functools.total_ordering
@dataclass(frozen=True)
class DebianVersion:
    epoch: int
    upstream: str
    revision: str

    @classmethod
    def parse(cls, text: str) -> DebianVersion:
        """Parse as dpkg does (surrounding blanks ignored); raise DebianVersionError."""
        v = text.strip()
        if not v:
            raise DebianVersionError("empty version")
        if not _ALLOWED_RE.match(v):
            raise DebianVersionError(f"{text!r}: a Debian version has only letters, digits and . + ~ : -")
        epoch = 0
        if ":" in v:
            head, v = v.split(":", 1)
            if not _EPOCH_RE.match(head):
                raise DebianVersionError(f"{text!r}: the epoch must be a number")
            epoch = int(head)
        upstream, sep, revision = v.rpartition("-")
        if not sep:
            upstream, revision = v, ""
        if not upstream:
            raise DebianVersionError(f"{text!r}: empty upstream version")
        if sep and not revision:
            raise DebianVersionError(f"{text!r}: empty revision after '-'")
        return cls(epoch, upstream, revision)

    def compare(self, other: DebianVersion) -> int:
        if self.epoch != other.epoch:
            return -1 if self.epoch < other.epoch else 1
        c = verrevcmp(self.upstream, other.upstream)
        if c:
            return -1 if c < 0 else 1
        c = verrevcmp(self.revision, other.revision)
        return (c > 0) - (c < 0)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, DebianVersion):
            return NotImplemented
        return self.compare(other) < 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DebianVersion):
            return NotImplemented
        return self.compare(other) == 0

    def __hash__(self) -> int:
        # equal versions may be spelled differently ("1.0" == "1.00" == "1.0-0"): hash what they share
        return hash(self.epoch)

    def __str__(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        return epoch + self.upstream + (f"-{self.revision}" if self.revision else "")


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1, as ``dpkg --compare-versions a lt|eq|gt b`` would answer."""
    return DebianVersion.parse(a).compare(DebianVersion.parse(b))
