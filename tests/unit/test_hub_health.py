"""Health parsers on outputs recorded from a Debian 12 hub (df/meminfo/os-release)."""

from __future__ import annotations

import pytest

from hil.health import parse_df_free_mb, parse_epoch, parse_meminfo_available_mb, parse_os_release

DF_RECORDED = """Filesystem     1048576-blocks  Used Available Capacity Mounted on
overlay                 60369 21712     35556      38% /
"""
MEMINFO_RECORDED = """MemTotal:        8148180 kB
MemFree:          512340 kB
MemAvailable:    5316732 kB
Buffers:          204332 kB
"""
OS_RELEASE_RECORDED = '''PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
'''


def test_df() -> None:
    assert parse_df_free_mb(DF_RECORDED) == 35556


def test_df_garbage_is_an_error() -> None:
    with pytest.raises(ValueError, match="unexpected df"):
        parse_df_free_mb("df: /: No such file or directory\n")


def test_meminfo() -> None:
    assert parse_meminfo_available_mb(MEMINFO_RECORDED) == 5192


def test_meminfo_without_available() -> None:
    with pytest.raises(ValueError):
        parse_meminfo_available_mb("MemTotal: 1 kB\n")


def test_os_release_mixed_with_meminfo() -> None:
    rel = parse_os_release(MEMINFO_RECORDED + OS_RELEASE_RECORDED)
    assert rel["ID"] == "debian" and rel["VERSION_ID"] == "12"
    assert rel["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert not any(k.startswith("Mem") for k in rel)


def test_epoch() -> None:
    assert parse_epoch("1700000000\n") == 1700000000.0
    with pytest.raises(ValueError):
        parse_epoch("Thu Jan  1 00:00:00 UTC 1970")


def test_whose_fault_a_silent_declared_service_is() -> None:
    from hil.errors import FailureClass, Phase, ServiceDown, blame_for_dead_service

    assert blame_for_dead_service(Phase.BEFORE_CANDIDATE) is FailureClass.INFRASTRUCTURE
    assert blame_for_dead_service(Phase.WITH_CANDIDATE) is FailureClass.PRODUCT
    for phase in Phase:
        exc = ServiceDown("nucleus silent", device="hub-01", services=("greengrass",), phase=phase)
        assert exc.failure_class is blame_for_dead_service(phase)
