"""SemVer versions and npm-style ranges used by recipe dependencies."""

from __future__ import annotations

import pytest

from hil.deploy.semver import Range, Version, VersionError


@pytest.mark.parametrize("text", ["1.0.0", "0.0.0", "10.20.30", "1.0.0-alpha.1", "1.0.0+build.5",
                                  "1.0.0-rc.1+sha.abc"])
def test_valid_versions(text: str) -> None:
    assert str(Version.parse(text)) == text


@pytest.mark.parametrize("text", ["1.0", "1", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0.0", "",
                                  "a.b.c"])
def test_invalid_versions(text: str) -> None:
    with pytest.raises(VersionError, match=r"semantic version|leading zeros"):
        Version.parse(text)


def test_ordering_follows_semver_precedence() -> None:
    chain = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
             "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]
    versions = [Version.parse(v) for v in chain]
    assert sorted(reversed(versions)) == versions
    assert Version.parse("1.0.0+a") == Version.parse("1.0.0+b")


@pytest.mark.parametrize(("rng", "yes", "no"), [
    ("~2.0.0", ["2.0.0", "2.0.9"], ["2.1.0", "1.9.9", "3.0.0", "2.0.1-beta"]),
    ("~2.0", ["2.0.0", "2.0.5"], ["2.1.0"]),
    ("~2", ["2.0.0", "2.9.9"], ["3.0.0"]),
    ("^1.2.3", ["1.2.3", "1.9.0"], ["2.0.0", "1.2.2"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4"]),
    (">=1.0.0 <2.0.0", ["1.0.0", "1.5.0"], ["2.0.0", "0.9.0"]),
    (">1.0.0", ["1.0.1"], ["1.0.0"]),
    ("<=1.2", ["1.2.9", "1.0.0"], ["1.3.0"]),
    ("1.2.3 - 2.3.4", ["1.2.3", "2.3.4"], ["2.3.5"]),
    ("1.2 - 2.3", ["1.2.0", "2.3.9"], ["2.4.0"]),
    ("1.x", ["1.0.0", "1.99.0"], ["2.0.0"]),
    ("1.2.*", ["1.2.7"], ["1.3.0"]),
    ("*", ["0.0.1", "9.9.9"], ["1.0.0-beta"]),
    ("", ["1.0.0"], []),
    ("1.0.0", ["1.0.0"], ["1.0.1"]),
    ("=1.0.0", ["1.0.0"], ["1.0.1"]),
    ("<1.0.0 || >=2.0.0", ["0.5.0", "2.1.0"], ["1.5.0"]),
    (">=1.0.0-beta.2 <1.0.1", ["1.0.0-beta.3", "1.0.0"], ["1.0.0-beta.1", "1.0.1-beta"]),
    (">= 1.0.0", ["1.0.0"], ["0.1.0"]),
])
def test_ranges(rng: str, yes: list[str], no: list[str]) -> None:
    r = Range.parse(rng)
    for v in yes:
        assert r.satisfied_by(v), f"{rng} should allow {v}"
    for v in no:
        assert not r.satisfied_by(v), f"{rng} should not allow {v}"


@pytest.mark.parametrize("rng", ["~>=1.0", "abc", "1.0.0 -", ">=1.0.0 <", "1.2.3.4", "^^1"])
def test_bad_ranges(rng: str) -> None:
    with pytest.raises(VersionError):
        Range.parse(rng)
