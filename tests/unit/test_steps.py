"""Steps record their own outcome: from the block's end, the exception, or the returned value."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil import steps
from hil.drivers.base import CommandResult
from hil.steps import Step, step


@pytest.fixture
def stopped() -> Iterator[list[Step]]:
    seen: list[Step] = []

    def listener(event: str, st: Step) -> None:
        if event == "stop":
            seen.append(st)

    steps.add_listener(listener)
    yield seen
    steps.remove_listener(listener)


def _result(status: int) -> CommandResult:
    return CommandResult(("false",), status, "", "boom", 0.01)


def test_a_block_that_completes_is_a_success(stopped: list[Step]) -> None:
    with step("quiet"):
        pass
    assert stopped[-1].exit_status == 0 and stopped[-1].error is None and not stopped[-1].failed


def test_a_block_that_raises_is_a_failure_with_the_error(stopped: list[Step]) -> None:
    with pytest.raises(ValueError), step("loud"):
        raise ValueError("no")
    st = stopped[-1]
    assert st.exit_status is None and st.error == "ValueError: no" and st.failed
    assert st.duration is not None


@pytest.mark.parametrize(("outcome", "status"), [
    (_result(3), 3), (_result(0), 0), (True, 0), (False, 1), (7, 7), (None, 0),
])
def test_record_sets_the_exit_status_and_hands_the_outcome_back(
        stopped: list[Step], outcome: object, status: int) -> None:
    with step("recorded") as st:
        assert st.record(outcome) is outcome
    assert stopped[-1].exit_status == status
    assert stopped[-1].failed is (status != 0)


class _Driver:
    device = "hub-07"

    @step("run {argv[0]} on {self.device}", device="{self.device}", tries="{tries}")
    def run(self, argv: list[str], tries: int = 2) -> CommandResult:
        return _result(int(argv[1]))

    @step("state", device="{self.device}")
    def state(self) -> str:
        return "shell"

    @step("boom", device="{self.device}")
    def boom(self) -> None:
        raise RuntimeError("dead")


def test_decorator_formats_title_device_and_params_and_records_the_result(stopped: list[Step]) -> None:
    d = _Driver()
    res = d.run(["exit", "4"])
    assert res.exit_status == 4
    st = stopped[-1]
    assert (st.title, st.device, st.params, st.exit_status) == ("run exit on hub-07", "hub-07",
                                                                 {"tries": "2"}, 4)
    assert d.state() == "shell" and stopped[-1].exit_status == 0
    with pytest.raises(RuntimeError):
        d.boom()
    assert stopped[-1].error == "RuntimeError: dead" and stopped[-1].exit_status is None
    assert _Driver.run.__name__ == "run"


def test_nested_steps_from_one_scope_object_do_not_mix(stopped: list[Step]) -> None:
    scope = step("same")
    with scope as outer:
        with scope as inner:
            inner.record(False)
        outer.record(True)
    assert [s.exit_status for s in stopped[-2:]] == [1, 0]
