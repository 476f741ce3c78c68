"""The exit codes of `hil` and of `pytest` with the harness: defined here, nowhere else.

Three scopes, because a CI stage reads them differently:

- ``hil`` commands (devices, deploy, rollback, lease, report, lab): ``ExitCode``;
- the promotion gate (`hil gate`, `pytest --gate`): ``GateExit``; 2 already means
  "inconclusive" there, so bad input is 3;
- a `pytest` run without ``--gate``: pytest's own codes, plus the harness's ``RunExit``.

``EXIT_TABLE`` renders the README's table; tests/unit/test_exit_codes.py checks that the
README shows exactly this table and that the commands use these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """`hil` commands other than `hil gate`."""

    OK = 0
    CHECK_FAILED = 1
    BAD_INPUT = 2
    INFRASTRUCTURE = 3
    CANCELLED = 128 + 15
    """SIGTERM (128 + its number; Ctrl-C gives 130): hil.cancel.exit_status()."""


class GateExit(IntEnum):
    """`hil gate` and `pytest --gate`: the decision is the exit status."""

    PROMOTE = 0
    REJECT = 1
    INCONCLUSIVE = 2
    BAD_INPUT = 3


class RunExit(IntEnum):
    """`pytest` without ``--gate``: codes the harness adds to pytest's own 0-5."""

    DEVICES_UNAVAILABLE = 6
    """A selected device could not be leased or was skipped as infrastructure: never green."""


@dataclass(frozen=True)
class ExitRow:
    scope: str
    code: int
    meaning: str


EXIT_TABLE: tuple[ExitRow, ...] = (
    ExitRow("hil", ExitCode.OK, "ok"),
    ExitRow("hil", ExitCode.CHECK_FAILED, "a check failed (deployment, rollback, `devices check`)"),
    ExitRow("hil", ExitCode.BAD_INPUT,
            "bad input: inventory, candidate, options (one line naming file, line, device, field)"),
    ExitRow("hil", ExitCode.INFRASTRUCTURE,
            "infrastructure: lab, device, lease store or report tool unavailable"),
    ExitRow("hil", ExitCode.CANCELLED,
            "cancelled by SIGTERM (Ctrl-C: 130): hub put back, lease released, result inconclusive"),
    ExitRow("gate", GateExit.PROMOTE, "promote"),
    ExitRow("gate", GateExit.REJECT, "reject"),
    ExitRow("gate", GateExit.INCONCLUSIVE, "inconclusive: run again"),
    ExitRow("gate", GateExit.BAD_INPUT, "bad input: gate.yaml, results missing, options"),
    ExitRow("pytest", 0, "all selected tests passed (pytest's own codes 0-5 otherwise)"),
    ExitRow("pytest", RunExit.DEVICES_UNAVAILABLE,
            "a selected device could not be leased or was skipped as infrastructure"),
)

SCOPES = {
    "hil": "`hil devices/deploy/rollback/lease/report/lab`",
    "gate": "`hil gate`, `pytest --gate`",
    "pytest": "`pytest` without `--gate`",
}


def markdown_table() -> str:
    """The README's exit-code table."""
    lines = ["| command | exit | meaning |", "| --- | --- | --- |"]
    lines += [f"| {SCOPES[r.scope]} | {int(r.code)} | {r.meaning} |" for r in EXIT_TABLE]
    return "\n".join(lines) + "\n"


def one_line(scope: str) -> str:
    """``0 ok, 1 ..., 2 ...`` for help texts."""
    return ", ".join(f"{int(r.code)} {r.meaning.split(':')[0]}" for r in EXIT_TABLE if r.scope == scope)
