"""Malformed inventories: every error names file, device and field; no traceback in the CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from hil.errors import InventoryError, InventoryProblems
from hil.inventory import Inventory, load_inventory

GOOD_DEVICE = """\
  hub-a:
    ssh: {host: 192.0.2.10}
    console: {url: "socket://127.0.0.1:47101", login: {user: hil, password: "${HIL_TEST_CONSOLE_PW}"}}
    power: {driver: tasmota, url: "http://127.0.0.1:47080", outlet: 1}
"""


def _write(root: Path, body: str, *, devices: str = GOOD_DEVICE, header: str = "") -> Path:
    (root / "id").write_text("key\n")
    pub = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    (root / "known_hosts").write_text(f"192.0.2.10 {pub}\n192.0.2.11 {pub}\n")
    p = root / "rack.yaml"
    p.write_text(header + textwrap.dedent("""\
        defaults:
          ssh: {user: hil, key_file: id, known_hosts: known_hosts}
        devices:
        """) + devices + body)
    return p


def _load_and_check(path: Path) -> Inventory:
    inv = load_inventory(path)
    inv.check_files()
    return inv


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIL_TEST_CONSOLE_PW", "s3cret-pw")


def test_the_good_inventory_is_good(tmp_path: Path) -> None:
    inv = _load_and_check(_write(tmp_path, ""))
    assert list(inv.devices) == ["hub-a"]


# (name, how to break the file, expected device, expected field, words in the message)
CASES: list[tuple[str, dict[str, str], str | None, str | None, str]] = [
    ("bad-yaml", {"body": "  hub-b: {ssh: [unclosed\n"}, None, None, "not valid YAML at line"),
    ("no-devices", {"devices": "", "body": "  {}\n"}, None, "devices", "non-empty mapping"),
    ("unknown-top-level", {"header": "rack_name: x\n"}, None, "rack_name", "unknown top-level key"),
    ("unknown-field", {"body": "  hub-b: {ssh: {host: 192.0.2.11, prot: 22}}\n"}, "hub-b", "ssh.prot",
     "unknown field"),
    ("inline-password", {"body": "  hub-b:\n    ssh: {host: 192.0.2.11}\n"
                                 "    console: {url: 'socket://h:1',"
                                 " login: {user: hil, password: hunter2}}\n"},
     "hub-b", "console.login.password", "never the secret itself"),
    ("bad-port", {"body": "  hub-b: {ssh: {host: 192.0.2.11, port: 70000}}\n"}, "hub-b", "ssh.port",
     "less than or equal to 65535"),
    ("bad-console-url", {"body": "  hub-b:\n    ssh: {host: 192.0.2.11}\n    console: {url: 'http://x:1'}\n"},
     "hub-b", "console.url", "pyserial URL"),
    ("missing-ssh-host", {"body": "  hub-b: {model: pi4}\n"}, "hub-b", "ssh.host",
     "required field is missing"),
    ("capital-name", {"body": "  Hub-B: {ssh: {host: 192.0.2.11}}\n"}, "Hub-B", "name", "lower-case"),
    ("duplicate-endpoint", {"body": "  hub-b: {ssh: {host: 192.0.2.10}}\n"}, "hub-b", "ssh.host",
     "also used by hub-a"),
    ("bad-tcp-ports", {"body": "  hub-b: {ssh: {host: 192.0.2.11}, expect: {tcp_ports: [0, 22]}}\n"},
     "hub-b", "expect.tcp_ports", "1..65535"),
    ("bad-timeout", {"header": "timeouts: {boot: -1}\n"}, None, "timeouts.boot", "greater than 0"),
]


@pytest.mark.parametrize(("name", "edit", "device", "fld", "words"), CASES, ids=[c[0] for c in CASES])
def test_malformed_inventory_is_named_precisely(tmp_path: Path, name: str, edit: dict[str, str],
                                                device: str | None, fld: str | None, words: str) -> None:
    path = _write(tmp_path, **{"body": "", **edit})
    with pytest.raises(InventoryError) as exc:
        _load_and_check(path)
    err = exc.value
    msg = str(err)
    assert err.file == str(path) and str(path) in msg
    if device:
        assert err.device == device and f"device {device}" in msg
    if fld:
        assert err.field == fld and f"field {fld}" in msg
    assert words in msg
    assert "s3cret-pw" not in msg and "hunter2" not in msg


FILE_CASES = [
    ("missing-key-file", "key_file: id", "key_file: nope", "ssh.key_file", "does not exist"),
    ("known-hosts-without-host", "192.0.2.10", "192.0.2.99", "ssh.known_hosts", "no host key for 192.0.2.10"),
    ("unset-env-secret", "HIL_TEST_CONSOLE_PW}", "HIL_TEST_UNSET_PW}", "console.login.password",
     "HIL_TEST_UNSET_PW is not set"),
]


@pytest.mark.parametrize(("name", "old", "new", "fld", "words"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_local_files_are_checked_before_any_device_is_touched(tmp_path: Path, name: str, old: str, new: str,
                                                              fld: str, words: str) -> None:
    path = _write(tmp_path, "")
    target = tmp_path / "known_hosts" if name == "known-hosts-without-host" else path
    target.write_text(target.read_text().replace(old, new))
    inv = load_inventory(path)  # parsing alone is fine: these are local file checks
    with pytest.raises(InventoryError) as exc:
        inv.check_files()
    assert exc.value.file == str(path.resolve()) and exc.value.device == "hub-a"
    assert exc.value.field == fld and words in str(exc.value)


def test_unknown_power_driver_is_refused_at_load_time(tmp_path: Path) -> None:
    path = _write(tmp_path, "", devices=GOOD_DEVICE.replace("driver: tasmota", "driver: tasmoto"))
    with pytest.raises(InventoryError) as exc:
        load_inventory(path)
    assert exc.value.device == "hub-a" and exc.value.field == "power.driver" and exc.value.line == 7
    assert "unknown power driver 'tasmoto'" in str(exc.value) and "tasmota" in str(exc.value)


@pytest.mark.parametrize(("power", "field", "words"), [
    ("{driver: tasmota, url: 'http://pdu', outlte: 1}", "power.outlte", "unknown parameter"),
    ("{driver: tasmota, outlet: 1}", "power.url", "required by power driver 'tasmota'"),
    ("{driver: tasmota, url: 'http://pdu', outlet: 999}", "power.outlet", "less than or equal to 255"),
    # YAML 1.1 would read the keys on/off as booleans: the inventory reads YAML 1.2 booleans
    ("{driver: command, on: [pdu, on]}", "power.off", "required by power driver 'command'"),
    ("{driver: tasmota, url: 'http://pdu', password: hunter2}", "power.password", "never the secret"),
])
def test_power_parameters_are_validated_by_the_drivers_model_at_load_time(
        tmp_path: Path, power: str, field: str, words: str) -> None:
    body = f"  hub-b:\n    ssh: {{host: 192.0.2.11}}\n    power: {power}\n"
    path = _write(tmp_path, body)
    with pytest.raises(InventoryError) as exc:
        load_inventory(path)
    assert (exc.value.device, exc.value.field, exc.value.line) == ("hub-b", field, 10)
    assert words in str(exc.value) and "hunter2" not in str(exc.value)


THREE_MISTAKES = """\
  hub-b:
    ssh: {host: 192.0.2.11, prot: 22}
    power: {driver: tasmoto, url: "http://pdu"}
  hub-c:
    model: pi4
    ssh:
      host: 192.0.2.12
      port: 70000
"""


def test_every_problem_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, THREE_MISTAKES)
    with pytest.raises(InventoryProblems) as exc:
        load_inventory(path)
    found = [(p.line, p.device, p.field) for p in exc.value.problems]
    assert found == [(9, "hub-b", "ssh.prot"), (10, "hub-b", "power.driver"), (15, "hub-c", "ssh.port")]
    msg = str(exc.value)
    assert msg.startswith(f"file {path}: 3 problems")
    assert f"file {path}, line 15, device hub-c, field ssh.port: " in msg


def test_a_field_inherited_from_defaults_points_at_the_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "", header="timeouts: {boot: 5}\n")
    path.write_text(path.read_text().replace("ssh: {user: hil,", "ssh: {user: hil, port: 0,"))
    with pytest.raises(InventoryError) as exc:
        load_inventory(path)
    assert (exc.value.device, exc.value.field, exc.value.line) == ("hub-a", "ssh.port", 3)


def test_local_file_problems_of_all_devices_come_together(tmp_path: Path) -> None:
    path = _write(tmp_path, "  hub-b: {ssh: {host: 192.0.2.11, key_file: missing-b}}\n")
    (tmp_path / "id").unlink()
    inv = load_inventory(path)
    with pytest.raises(InventoryProblems) as exc:
        inv.check_files()
    assert [(p.device, p.field, p.line) for p in exc.value.problems] == [
        ("hub-a", "ssh.key_file", 2), ("hub-b", "ssh.key_file", 8)]


@pytest.mark.parametrize("case", ["bad-port", "bad-yaml", "unknown-field"])
def test_cli_reports_a_bad_inventory_in_one_line_without_traceback(tmp_path: Path, case: str) -> None:
    edit = next(c[1] for c in CASES if c[0] == case)
    path = _write(tmp_path, **{"body": "", **edit})
    res = subprocess.run([sys.executable, "-m", "hil.cli", "devices", "--devices", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: file ") and str(path) in lines[0]
