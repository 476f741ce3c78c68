"""gate.yaml: the checked-in policy loads; every error names the file and the field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hil.errors import UserError
from hil.gate.policy import GatePolicy, OnFailure, Quarantine, Waiver, load_policy

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_policy_loads() -> None:
    p = load_policy(REPO / "gate.yaml")
    assert p.required_suites == ["smoke", "functional", "security", "latency"]
    assert p.infrastructure is OnFailure.REQUEUE and p.min_healthy_devices == "all"
    for metric in ("ssh_rtt", "mqtt_rtt", "http_rtt", "deployment_time", "boot_time"):
        budget = p.latency_budget(metric)
        assert budget is not None and budget.p95_ms and budget.p99_ms and budget.p95_ms <= budget.p99_ms
    assert p.ledger == REPO / "reports" / "ledger.jsonl"


@pytest.mark.parametrize(("text", "field", "words"), [
    ("infrastructure: retry\n", "infrastructure", "block"),
    ("required_suite: [smoke]\n", "required_suite", "unknown field"),
    ("quarantine:\n  - test: 'x::y'\n    reason: flaky\n    expires: someday\n", "quarantine.0.expires",
     "date"),
    ("quarantine:\n  - test: 'x::y'\n    expires: 2026-01-01\n", "quarantine.0.reason", "missing"),
    ("latency_budgets:\n  ssh_rtt: {p95_ms: -3}\n", "latency_budgets.ssh_rtt.p95_ms", "greater than 0"),
    ("min_healthy_devices: most\n", "min_healthy_devices", "should be 'all'"),
    ("harness: tolerate\n", "(top level)", "not allowed"),
    ("waivers:\n  - check: 'x::y'\n    reason: no broker\n    expires: 2026-01-01\n", "waivers.0.model",
     "missing"),
    ("waivers:\n  - check: 'x::y'\n    model: pi4\n    reason: r\n    expires: soon\n", "waivers.0.expires",
     "date"),
    ("waivers:\n  - {check: 'x::y', model: pi4, reason: r, expires: 2026-01-01, models: [pi5]}\n",
     "waivers.0.models", "unknown field"),
])
def test_errors_name_file_and_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as ei:
        load_policy(f)
    msg = str(ei.value)
    assert msg.startswith(f"file {f}, field {field}: "), msg
    assert words in msg
    assert "Traceback" not in msg


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text("required_suites: [smoke\n")
    with pytest.raises(UserError, match=r"gate.yaml: not valid YAML at line \d+"):
        load_policy(f)
    with pytest.raises(UserError, match="gate policy file not found"):
        load_policy(tmp_path / "nope.yaml")


def test_quarantine_matches_patterns_and_expires() -> None:
    q = Quarantine(test="suites/functional/test_mqtt.py::test_reconnect*", reason="r",
                   expires=dt.date(2026, 3, 31))
    assert q.matches("suites/functional/test_mqtt.py::test_reconnect[hub-01]")
    assert not q.matches("suites/functional/test_mqtt.py::test_publish[hub-01]")
    assert not q.expired(dt.date(2026, 3, 31)) and q.expired(dt.date(2026, 4, 1))
    p = GatePolicy(quarantine=[q])
    assert p.quarantine_for("suites/functional/test_mqtt.py::test_reconnect[hub-02]") is q


def test_model_minimums_fall_back_to_default() -> None:
    p = GatePolicy(min_devices_per_model={"default": 2, "pi3": 1})
    assert p.min_devices_for("pi3") == 1 and p.min_devices_for("pi5") == 2


def test_waiver_matches_check_and_model_and_expires() -> None:
    w = Waiver(check="suites/security/test_i9_defaults.py::test_docker*", model="rpi4-gateway",
               reason="no Docker on gateways", expires=dt.date(2026, 6, 30))
    check = "suites/security/test_i9_defaults.py::test_docker_socket_permissions[gw-01]"
    assert w.matches(check, "rpi4-gateway") and not w.matches(check, "rpi5")
    assert not w.matches("suites/security/test_i9_defaults.py::test_aslr_full[gw-01]", "rpi4-gateway")
    assert not w.matches(check, None)
    assert Waiver(check=check, model="*", reason="r", expires=dt.date(2026, 6, 30)).matches(check, None)
    expired = w.model_copy(update={"expires": dt.date(2026, 1, 1)})
    today = dt.date(2026, 2, 1)
    assert GatePolicy(waivers=[expired, w]).waiver_for(check, "rpi4-gateway", today) is w
    assert GatePolicy(waivers=[expired]).waiver_for(check, "rpi4-gateway", today) is expired
    assert GatePolicy(waivers=[w]).waiver_for(check, "pi3", today) is None
