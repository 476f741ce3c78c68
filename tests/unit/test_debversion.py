"""Debian version comparison: real versions, dpkg's own edge cases, and dpkg itself as the oracle."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.software.debversion import DebianVersion, DebianVersionError, compare_versions

# (a, b, expected) - real Debian 12 package versions and the classic edge cases
CASES = [
    ("1.2.0~rc1-1", "1.2.0-2", -1),          # the lab's demo package: a tilde sorts before the release
    ("1:0.9", "2.0", 1),                     # the epoch wins
    ("0:1.0", "1.0", 0),                     # epoch 0 is no epoch
    ("1.0", "1.0-0", 0),                     # no revision is revision "0"
    ("1.0", "1.00", 0),                      # digit runs compare as numbers
    ("1.0~~", "1.0~~a", -1), ("1.0~~a", "1.0~", -1), ("1.0~", "1.0", -1), ("1.0", "1.0a", -1),
    ("2.36-9+deb12u4", "2.36-9+deb12u10", -1),       # glibc: u10 after u4 (not string order)
    ("3.0.11-1~deb12u2", "3.0.13-1~deb12u1", -1),    # openssl point release
    ("3.0.11-1~deb12u2", "3.0.11-1~deb12u1", 1),
    ("1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u3", -1),  # openssh
    ("1:9.2p1-2", "9.3p1-1", 1),
    ("2.38.1-5+deb12u1", "2.38.1-5+b1", 1),          # util-linux: '+d' after '+b'
    ("20.10.24+dfsg1-1+b3", "20.10.24+dfsg1-1", 1),  # docker.io binNMU
    ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", -1), # curl
    ("2.0.11-1.2+deb12u1", "2.0.11-1.2", 1),         # mosquitto
    ("1.2.3+dfsg-1", "1.2.3-1", 1),
    ("a", "b", -1), ("1.a", "1.+", -1), ("1-1", "1-1~", 1),
    ("10", "9", 1), ("1.10", "1.9", 1), ("1.2.10", "1.2.9.9", 1),
]


@pytest.mark.parametrize(("a", "b", "want"), CASES)
def test_known_comparisons(a: str, b: str, want: int) -> None:
    assert compare_versions(a, b) == want
    assert compare_versions(b, a) == -want
    va, vb = DebianVersion.parse(a), DebianVersion.parse(b)
    assert (va < vb) == (want < 0) and (va == vb) == (want == 0) and (va > vb) == (want > 0)


def test_naive_string_order_would_get_the_demo_package_wrong() -> None:
    """Why a real comparison matters: the outdated version sorts after the fixed one as text."""
    assert "1.2.0~rc1-1" > "1.2.0-2"
    assert compare_versions("1.2.0~rc1-1", "1.2.0-2") < 0


@pytest.mark.parametrize("bad", ["", "  ", "a:1.0", "1.0-", "1.0 beta", "1.0_1", ":1.0", "1:"])
def test_malformed_versions_are_refused(bad: str) -> None:
    with pytest.raises(DebianVersionError):
        DebianVersion.parse(bad)


def test_parts_and_text() -> None:
    v = DebianVersion.parse("1:2.38.1-5+deb12u1")
    assert (v.epoch, v.upstream, v.revision) == (1, "2.38.1", "5+deb12u1")
    assert str(v) == "1:2.38.1-5+deb12u1"
    assert DebianVersion.parse("1.0-1-2").upstream == "1.0-1"  # the revision is after the last hyphen
    assert {DebianVersion.parse("1.0"), DebianVersion.parse("1.00")} == {DebianVersion.parse("1.0-0")}


DPKG = shutil.which("dpkg")
dpkg_only = pytest.mark.skipif(DPKG is None, reason="dpkg is not installed (the oracle)")


def dpkg_compare(a: str, b: str) -> int:
    assert DPKG is not None
    for op, value in (("lt", -1), ("eq", 0)):
        done = subprocess.run([DPKG, "--compare-versions", a, op, b], capture_output=True, check=False)
        if done.returncode == 0:
            return value
    return 1


@dpkg_only
@pytest.mark.parametrize(("a", "b", "want"), CASES)
def test_the_table_agrees_with_dpkg(a: str, b: str, want: int) -> None:
    assert dpkg_compare(a, b) == want


_part = st.text(alphabet="0123456789.+~abz", min_size=1, max_size=6).filter(lambda s: s[0].isdigit())
versions = st.builds(
    lambda e, u, r: (f"{e}:" if e is not None else "") + u + (f"-{r}" if r else ""),
    st.one_of(st.none(), st.integers(0, 2)), _part,
    st.one_of(st.none(), st.text(alphabet="0123456789.+~b", min_size=1, max_size=5)))


@dpkg_only
@settings(max_examples=150, deadline=None)
@given(versions, versions)
def test_generated_versions_compare_as_dpkg_does(a: str, b: str) -> None:
    assert compare_versions(a, b) == dpkg_compare(a, b), (a, b)
