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
