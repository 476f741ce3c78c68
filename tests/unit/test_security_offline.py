"""Security checks that the virtual lab cannot make fail, run on the kernel's other values.

ASLR (kernel.randomize_va_space) is host-kernel-wide in the virtual lab and never
changed, so the suite's own check function runs here against a shell that answers
as a kernel with ASLR off (0) or partial (1) - the values documented in the kernel's
sysctl/kernel.rst - and must fail; with 2 it must pass.
"""

from __future__ import annotations

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


# -- weak cipher suites ----------------------------------------------------------------
# The vulnerable hub's weak suites only come with TLS 1.1 (caught by the version check), so
# the suite's weak-cipher check is shown failing here on evidence as sslyze reports a
# broker that still accepts 3DES and RC4 on TLS 1.2, and passing on AEAD-only evidence.

def _tls(*suites: tuple[str, int]) -> Any:
    from hil.probes.tls import AcceptedCipher, TlsEvidence, cipher_weakness

    ciphers = tuple(AcceptedCipher("TLS 1.2", name, bits, cipher_weakness(name, bits, False))
                    for name, bits in suites)
    return TlsEvidence(host="10.0.0.2", port=8883, accepted_versions=("TLS 1.2",), ciphers=ciphers,
                       chain=None, scan_errors=())


def _pi() -> Any:
    return SimpleNamespace(name="pi-recorded")


def test_weak_cipher_check_fails_on_3des_and_rc4() -> None:
    from suites.security.test_i3_i7_broker import test_broker_no_weak_cipher_suites as check

    evidence = _tls(("TLS_RSA_WITH_3DES_EDE_CBC_SHA", 168), ("TLS_RSA_WITH_RC4_128_SHA", 128),
                    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 128))
    with pytest.raises(AssertionError, match="3DES"):
        check(_pi(), evidence)


def test_weak_cipher_check_passes_on_aead_only() -> None:
    from suites.security.test_i3_i7_broker import test_broker_no_weak_cipher_suites as check

    check(_pi(),
          _tls(("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 256), ("TLS_AES_128_GCM_SHA256", 128)))
