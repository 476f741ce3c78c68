"""Parsers of greengrass-cli output, on the samples of the facts document (tests/data/greengrass)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hil.drivers.greengrass import (
    ComponentState,
    DeploymentState,
    parse_component_details,
    parse_component_list,
    parse_deployment_create,
    parse_deployment_status,
    parse_log_line,
    state_events,
    strip_jul_noise,
)
from hil.errors import ParseError

DATA = Path(__file__).resolve().parents[1] / "data" / "greengrass"
DEPLOYMENT_ID = "4f0d1a7c-3b9e-4c53-9a51-2d6f0c8e7b21"


def sample(name: str) -> str:
    return (DATA / name).read_text()


# -- deployment create


def test_create_reads_id() -> None:
    assert parse_deployment_create(sample("create.stdout")) == DEPLOYMENT_ID


def test_create_with_old_cli_noise_merged_into_stdout() -> None:
    # over a serial console stdout and stderr arrive interleaved
    merged = sample("create-cli-2.9.stderr") + sample("create.stdout")
    assert parse_deployment_create(merged) == DEPLOYMENT_ID


def test_create_noise_is_stripped_completely() -> None:
    assert strip_jul_noise(sample("create-cli-2.9.stderr")).strip() == ""


@pytest.mark.parametrize("stdout", ["", "\n", "Deployment submitted\n",
                                    "Local deployment submitted! Deployment Id:\n"])
def test_create_without_id_line_is_a_parse_error(stdout: str) -> None:
    with pytest.raises(ParseError, match="no 'Local deployment submitted!' line"):
        parse_deployment_create(stdout)


def test_create_option_error_exit_0_has_no_id() -> None:
    # picocli exits 0 on option errors and prints usage on stderr: stdout is empty
    with pytest.raises(ParseError):
        parse_deployment_create(sample("create-option-error.stderr"))


# -- deployment status


def test_status_succeeded_2_11() -> None:
    st = parse_deployment_status(sample("status-succeeded.stdout"))
    assert st.id == DEPLOYMENT_ID
    assert st.status is DeploymentState.SUCCEEDED and st.status.terminal
    assert st.created == datetime(2023, 6, 15, 18, 34, 30, tzinfo=UTC)
    assert st.detailed_status is None and st.error_stack == () and st.failure_cause is None


def test_status_failed_has_every_detail_line() -> None:
    st = parse_deployment_status(sample("status-failed.stdout"))
    assert st.status is DeploymentState.FAILED
    assert st.detailed_status == "FAILED_ROLLBACK_NOT_REQUESTED"
    assert st.error_stack == ("DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN")
    assert st.error_types == ("USER_COMPONENT_ERROR",)
    assert st.failure_cause == "Service com.hbs.hub.Broken in broken state after deployment"


def test_status_single_line_of_old_cli() -> None:
    st = parse_deployment_status(sample("status-cli-2.10.stdout"))
    assert (st.id, st.status, st.created) == (DEPLOYMENT_ID, DeploymentState.IN_PROGRESS, None)
    assert not st.status.terminal


def test_status_is_read_from_first_line_not_last_colon() -> None:
    # the timestamp's last colon-separated token is "30 UTC": a naive parser reads that
    st = parse_deployment_status(sample("status-succeeded.stdout"))
    assert st.status is DeploymentState.SUCCEEDED


def test_status_with_noise_before_first_line() -> None:
    st = parse_deployment_status(sample("create-cli-2.9.stderr") + sample("status-failed.stdout"))
    assert st.status is DeploymentState.FAILED


@pytest.mark.parametrize("stdout", [
    "",
    "Cannot find deployment\n",
    f"{DEPLOYMENT_ID}: succeeded\n",
    f"{DEPLOYMENT_ID}: EXPLODED\n",
    f"{DEPLOYMENT_ID} : SUCCEEDED\n",
    f"{DEPLOYMENT_ID}: SUCCEEDED\nCreated on: yesterday\n",
    f"{DEPLOYMENT_ID}: SUCCEEDED\nSomething else: 1\n",
])
def test_status_garbage_raises_and_quotes_output(stdout: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse_deployment_status(stdout)
    if stdout.strip():  # the message quotes what the device printed
        assert stdout.strip().splitlines()[-1].split(": ")[-1] in str(exc.value)


# -- component list / details


def test_component_list_doc_sample() -> None:
    [c] = parse_component_list(sample("component-list.stdout"))
    assert (c.name, c.version, c.state) == ("com.hbs.hub.Container", "1.0.0", ComponentState.RUNNING)
    assert c.configuration == {"key": "value"} and not c.builtin


def test_component_list_with_builtins_and_null_configuration() -> None:
    comps = parse_component_list(sample("component-list-builtins.stdout"))
    by_name = {c.name: c for c in comps}
    assert by_name["aws.greengrass.Nucleus"].state is ComponentState.FINISHED
    assert by_name["aws.greengrass.Nucleus"].builtin
    assert by_name["DeploymentService"].configuration is None
    assert by_name["DeploymentService"].version == "0.0.0"
    assert by_name["aws.greengrass.Cli"].configuration == {"AuthorizedPosixGroups": None,
                                                           "AuthorizedWindowsGroups": None}
    assert not by_name["aws.greengrass.Cli"].builtin


def test_component_list_without_indent_cli_2_0() -> None:
    assert parse_component_list(sample("component-list-cli-2.0.stdout")) == \
        parse_component_list(sample("component-list-builtins.stdout"))


def test_component_list_header_only_is_empty() -> None:
    assert parse_component_list("Components currently running in Greengrass:\n") == []


def test_component_details_without_header() -> None:
    c = parse_component_details(sample("component-details.stdout"))
    assert c.name == "com.hbs.hub.Container" and c.state is ComponentState.RUNNING


def test_component_details_of_every_state() -> None:
    for state in ComponentState:
        text = sample("component-details.stdout").replace("RUNNING", state.value)
        assert parse_component_details(text).state is state


@pytest.mark.parametrize("stdout", [
    "",
    "Component Name: x\n    Version: 1.0.0\n    State: RUNNING\n",  # truncated
    "Components currently running in Greengrass:\nComponent Name: x\n    Version: 1.0.0\n"
    "    State: SLEEPING\n    Configuration: null\n",  # unknown state
    "Components currently running in Greengrass:\nComponent Name: x\n    Version: 1.0.0\n"
    "    State: RUNNING\n    Configuration: {key=value}\n",  # not JSON (Java map)
    "Component Name: x\n    State: RUNNING\n    Version: 1.0.0\n    Configuration: null\n",
    "Component with name com.example.Missing not found in Greengrass\n",
])
def test_component_garbage(stdout: str) -> None:
    with pytest.raises(ParseError):
        parse_component_details(stdout)


def test_component_list_without_header_is_rejected() -> None:
    with pytest.raises(ParseError, match="missing header"):
        parse_component_list(sample("component-details.stdout"))


# -- log lines


def test_log_line_service_set_state() -> None:
    rec = parse_log_line(sample("greengrass.log").splitlines()[0])
    assert rec is not None
    assert rec.level == "INFO" and rec.thread == "pool-2-thread-3"
    assert rec.logger == "com.aws.greengrass.lifecyclemanager.GenericExternalService"
    assert rec.event == "service-set-state" and rec.message == ""
    assert rec.context == {"serviceName": "com.hbs.hub.Container", "currentState": "STARTING",
                           "newState": "RUNNING"}


def test_log_line_stdout_with_message() -> None:
    rec = parse_log_line(sample("component.log").splitlines()[0])
    assert rec is not None
    assert rec.event == "stdout" and rec.message == "Hello from Greengrass Component!"
    assert rec.context["scriptName"] == "services.com.example.HelloWorld.lifecycle.Run"


def test_log_continuation_line_is_none() -> None:
    assert parse_log_line("\tat com.aws.greengrass.Foo.bar(Foo.java:12)") is None


def test_state_transitions_errored_twice_then_broken() -> None:
    line = ("2024-07-09T12:10:0{i}.000Z [INFO] (pool-2-thread-3) "
            "com.aws.greengrass.lifecyclemanager.GenericExternalService: service-set-state. "
            "{{serviceName=com.hbs.hub.Broken, currentState={a}, newState={b}}}")
    steps = [("STARTING", "ERRORED"), ("ERRORED", "STARTING"), ("STARTING", "ERRORED"),
             ("ERRORED", "STARTING"), ("STARTING", "BROKEN")]
    text = "\n".join(line.format(i=i, a=a, b=b) for i, (a, b) in enumerate(steps))
    text += "\n" + sample("greengrass.log")
    got = [(e.current, e.new) for e in state_events(text, "com.hbs.hub.Broken")]
    assert [b for _, b in got].count(ComponentState.ERRORED) == 2
    assert got[-1] == (ComponentState.STARTING, ComponentState.BROKEN)
