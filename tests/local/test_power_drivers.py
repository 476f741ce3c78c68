"""Power drivers: Tasmota against a local HTTP server speaking the Tasmota API, command with real commands.

The Tasmota server here is a fake PDU (the real one lives in the lab / rack); it keeps
outlet state, checks user/password like Tasmota's web password, and answers unknown
outlets the way Tasmota does (``{"Command":"Unknown"}``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from hil.drivers.power import POWER_DRIVERS, make_power
from hil.drivers.power.tasmota import PowerError
from hil.errors import InventoryError
from hil.inventory import Device, PowerSpec, SshEndpoint
from hil.timeouts import Timeouts


class FakeTasmota(ThreadingHTTPServer):
    def __init__(self, outlets: int, password: str | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = dict.fromkeys(range(1, outlets + 1), False)
        self.password = password
        self.requests: list[str] = []
        self.paths: list[str] = []
        """Every request line's path: where a password must never appear."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeTasmota

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        u = urlparse(self.path)
        self._serve(u.path, {k: v[0] for k, v in parse_qs(u.query).items()})

    def do_POST(self) -> None:  # Tasmota takes its arguments from a form body too
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        q.update({k: v[0] for k, v in parse_qs(body).items()})
        self._serve(urlparse(self.path).path, q)

    def _serve(self, path: str, q: dict[str, str]) -> None:
        u = urlparse(path)
        self.server.paths.append(self.path)
        self.server.requests.append(q.get("cmnd", ""))
        if u.path != "/cm":
            self._send(404, {})
            return
        if self.server.password is not None and (q.get("user") != "admin"
                                                 or q.get("password") != self.server.password):
            self._send(401, {"WARNING": "Need user=<username>&password=<password>"})
            return
        word, _, arg = q.get("cmnd", "").partition(" ")
        n = int(word[5:] or 1) if word.lower().startswith("power") else 0
        if n not in self.server.state:
            self._send(200, {"Command": "Unknown"})
            return
        if arg.lower() in ("on", "1"):
            self.server.state[n] = True
        elif arg.lower() in ("off", "0"):
            self.server.state[n] = False
        self._send(200, {f"POWER{n}": "ON" if self.server.state[n] else "OFF"})

    def _send(self, code: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def pdu() -> Iterator[FakeTasmota]:
    srv = FakeTasmota(outlets=4, password="pdu-secret-1")
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def device(tmp_path: Path, **power: Any) -> Device:
    return Device(name="hub-01", ssh=SshEndpoint(host="127.0.0.1", user="hil", key_file=tmp_path / "k",
                                                 known_hosts=tmp_path / "kh"),
                  power=PowerSpec(**power))


FAST = Timeouts(power_request=2)


def test_tasmota_on_off_status_cycle(pdu: FakeTasmota, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDU_USER", "admin")
    monkeypatch.setenv("PDU_PASSWORD", "pdu-secret-1")
    outlet = make_power(device(tmp_path, driver="tasmota", url=pdu.url, outlet=3,
                               user="${PDU_USER}", password="${PDU_PASSWORD}"), FAST)
    assert outlet.status() is False
    outlet.on()
    assert pdu.state[3] is True and outlet.status() is True
    assert pdu.state[1] is False  # only our outlet
    outlet.off()
    assert outlet.status() is False
    t0 = time.monotonic()
    outlet.cycle(off_time=0.2)
    assert time.monotonic() - t0 >= 0.2
    assert pdu.state[3] is True
    assert pdu.requests[-2:] == ["Power3 Off", "Power3 On"]
    assert pdu.paths and not any("pdu-secret-1" in p or "admin" in p for p in pdu.paths)  # body only


def test_tasmota_warns_when_a_password_travels_over_plain_http(pdu: FakeTasmota, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PDU_PASSWORD", "pdu-secret-1")
    with caplog.at_level("WARNING", logger="hil.drivers.power.tasmota"):
        make_power(device(tmp_path, driver="tasmota", url=pdu.url, outlet=1, password="${PDU_PASSWORD}"),
                   FAST)
    assert "device hub-01, field power.url" in caplog.text and "plain HTTP" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hil.drivers.power.tasmota"):
        make_power(device(tmp_path, driver="tasmota", url=pdu.url, outlet=1), FAST)  # nothing to protect
        make_power(device(tmp_path, driver="tasmota", url="https://pdu.example", outlet=1,
                          password="${PDU_PASSWORD}"), FAST)
    assert caplog.text == ""


def test_tasmota_wrong_password_unknown_outlet_and_dead_pdu(pdu: FakeTasmota, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDU_USER", "admin")
    monkeypatch.setenv("PDU_PASSWORD", "wrong")
    bad_pw = make_power(device(tmp_path, driver="tasmota", url=pdu.url, outlet=1,
                               user="${PDU_USER}", password="${PDU_PASSWORD}"), FAST)
    with pytest.raises(PowerError, match=r"refused 'Power1 On': HTTP 401 \(check power.user") as exc:
        bad_pw.on()
    assert "wrong" not in str(exc.value)
    monkeypatch.setenv("PDU_PASSWORD", "pdu-secret-1")
    no_outlet = make_power(device(tmp_path, driver="tasmota", url=pdu.url, outlet=9,
                                  user="${PDU_USER}", password="${PDU_PASSWORD}"), FAST)
    with pytest.raises(PowerError, match=r"Command.*Unknown.*is outlet 9 right"):
        no_outlet.status()
    dead = make_power(device(tmp_path, driver="tasmota", url="http://127.0.0.1:9", outlet=1,
                             user="${PDU_USER}", password="${PDU_PASSWORD}"), FAST)
    with pytest.raises(PowerError, match=r"http://127\.0\.0\.1:9/cm did not answer 'Power1 Off'") as exc:
        dead.off()
    assert "ConnectionError" in str(exc.value) and "pdu-secret-1" not in str(exc.value)


def test_command_driver_with_real_commands(tmp_path: Path) -> None:
    state = tmp_path / "outlet-on"
    outlet = make_power(device(tmp_path, driver="command", on=["touch", str(state)],
                               off=["rm", "-f", str(state)], status=["test", "-e", str(state)]), FAST)
    assert outlet.status() is False
    outlet.on()
    assert state.exists() and outlet.status() is True
    outlet.cycle(off_time=0.05)
    assert outlet.status() is True
    outlet.off()
    assert not state.exists() and outlet.status() is False
    failing = make_power(device(tmp_path, driver="command", on=["sh", "-c", "echo relay stuck >&2; exit 2"],
                                off=["true"]), FAST)
    with pytest.raises(PowerError, match="exited 2: relay stuck"):
        failing.on()
    with pytest.raises(PowerError, match="no status command"):
        failing.status()
    missing = make_power(device(tmp_path, driver="command", on=["/nonexistent/relay"], off=["true"]), FAST)
    with pytest.raises(PowerError, match="cannot run"):
        missing.on()


def test_unknown_driver_names_device_field_and_known_drivers(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as exc:
        make_power(device(tmp_path, driver="tasmotta", url="http://x"))
    msg = str(exc.value)
    assert "device hub-01" in msg and "field power.driver" in msg
    assert "'tasmotta'" in msg and "command, tasmota" in msg
    assert {"tasmota", "command"} <= set(POWER_DRIVERS)


@pytest.mark.parametrize(("params", "field", "text"), [
    ({"url": "http://x", "outlet": "one"}, "power.outlet", "integer"),
    ({"outlet": 1}, "power.url", "required"),
    ({"url": "http://x", "outet": 1}, "power.outet", "unknown parameter"),
    ({"url": "http://x", "password": "hunter2"}, "power.password", "references"),
    ({"url": "ftp://x"}, "power.url", "pattern"),
])
def test_bad_tasmota_params_name_the_field(tmp_path: Path, params: dict[str, Any], field: str,
                                           text: str) -> None:
    with pytest.raises(InventoryError, match=rf"device hub-01, field {field}: .*{text}"):
        make_power(device(tmp_path, driver="tasmota", **params))


def test_command_params_must_be_argv_lists(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"field power\.on"):
        make_power(device(tmp_path, driver="command", on="touch /tmp/x", off=["true"]))
