"""Checks that the virtual lab cannot make fail, run here on the values it cannot produce.

ASLR (kernel.randomize_va_space) and the clock are host-kernel-wide in the virtual lab
and never changed, so the suite's own check functions run here against a shell that
answers as a kernel with ASLR off (0) or partial (1) - the values documented in the
kernel's sysctl/kernel.rst - or a hub whose clock is a minute off, and must fail; with
full ASLR and a true clock they must pass. The cipher-suite policy check runs on
evidence as sslyze reports it (on real brokers: tests/local/test_probe_broker.py and the
lab's vulnerable and plain hubs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from hil.drivers.base import CommandResult
from hil.timeouts import DEFAULT_TIMEOUTS
from suites.security.test_i9_defaults import test_aslr_full as aslr_check


class ProcSysShell:
    device = "pi-recorded"

    def __init__(self, value: str) -> None:
        self.value = value
        self.seen: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None) -> CommandResult:
        self.seen.append(tuple(argv))
        assert tuple(argv) == ("cat", "/proc/sys/kernel/randomize_va_space")
        return CommandResult(tuple(argv), 0, self.value + "\n", "", 0.001)


def _hub(value: str) -> Any:
    return SimpleNamespace(name="pi-recorded", ssh=ProcSysShell(value), timeouts=DEFAULT_TIMEOUTS)


@pytest.mark.parametrize("value", ["0", "1"])
def test_aslr_check_fails_when_not_full(value: str) -> None:
    with pytest.raises(AssertionError, match=f"randomize_va_space = {value}"):
        aslr_check(_hub(value))


def test_aslr_check_passes_when_full() -> None:
    aslr_check(_hub("2"))


# -- cipher suites against the TLS policy ----------------------------------------------------
# The suite's policy check on evidence as sslyze reports it: CBC, SHA-1 MAC, RSA key exchange
# and legacy primitives fail it with the reason named; AEAD suites with forward secrecy pass.
# (On real brokers: tests/local/test_probe_broker.py and the lab's vulnerable and plain hubs.)

def _tls(*suites: tuple[str, str]) -> Any:
    from hil.probes.tls import AcceptedCipher, TlsEvidence, cipher_weakness

    ciphers = tuple(AcceptedCipher(version, name, 128, cipher_weakness(name, 128, False))
                    for version, name in suites)
    versions = tuple(dict.fromkeys(v for v, _ in suites))
    return TlsEvidence(host="10.0.0.2", port=8883, accepted_versions=versions, ciphers=ciphers, chain=None,
                       scan_errors=())


def _pi() -> Any:
    return SimpleNamespace(name="pi-recorded")


@pytest.mark.parametrize(("suite", "why"), [
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "3DES"),
    ("TLS_RSA_WITH_RC4_128_SHA", "RC4"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "CBC mode"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "SHA-1 MAC"),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "RSA key exchange"),
    ("TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256", "not in the policy"),
])
def test_cipher_policy_check_fails_outside_the_policy(suite: str, why: str) -> None:
    from suites.security.test_i3_i7_broker import test_broker_cipher_suites_within_policy as check

    evidence = _tls(("TLS 1.2", suite), ("TLS 1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"))
    with pytest.raises(AssertionError, match=re.escape(suite) + r" \(.*" + re.escape(why)):
        check(_pi(), evidence)


def test_cipher_policy_check_passes_on_the_policy_suites() -> None:
    from suites.security.test_i3_i7_broker import test_broker_cipher_suites_within_policy as check

    check(_pi(), _tls(("TLS 1.2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
                      ("TLS 1.2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
                      ("TLS 1.3", "TLS_AES_128_GCM_SHA256")))


def test_version_check_judges_against_the_policy() -> None:
    from suites.security.test_i3_i7_broker import test_broker_tls_1_2_or_newer_only as check

    with pytest.raises(AssertionError, match=r"TLS 1.1 \(outside mozilla-intermediate"):
        check(_pi(), _tls(("TLS 1.1", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
                          ("TLS 1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")))


# -- clock (OWASP I8, the smoke suite's check) -----------------------------------------------

class DateShell:
    device = "pi-recorded"

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None) -> CommandResult:
        import time

        assert tuple(argv) == ("date", "+%s.%N")
        return CommandResult(tuple(argv), 0, f"{time.time() + self.offset:.9f}\n", "", 0.001)


@pytest.mark.parametrize(("offset", "fails"), [(60.0, True), (-45.0, True), (0.0, False)])
def test_clock_check_fails_when_the_hub_clock_is_off(offset: float, fails: bool) -> None:
    from suites.smoke.test_smoke import test_clock_synchronised as check

    hub = SimpleNamespace(name="pi-recorded", ssh=DateShell(offset), timeouts=DEFAULT_TIMEOUTS)
    if fails:
        with pytest.raises(AssertionError, match="clock is"):
            check(hub)
    else:
        check(hub)
