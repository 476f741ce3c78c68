"""Pure logic of rackd: Docker's multiplexed stream and the Tasmota command grammar."""

from __future__ import annotations

import struct

from hil_lab.console_server import StreamDemuxer, _parse_docker_time
from hil_lab.pdu import TasmotaPdu


def _frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_demuxer_joins_frames_split_anywhere() -> None:
    stream = _frame(1, b"Booting Linux\n") + _frame(2, b"warn\n") + _frame(1, b"login: ")
    for cut in range(1, len(stream)):
        demux = StreamDemuxer()
        assert demux.feed(stream[:cut]) + demux.feed(stream[cut:]) == b"Booting Linux\nwarn\nlogin: "


def test_docker_timestamps_keep_sub_second_precision() -> None:
    assert _parse_docker_time("2026-01-02T03:04:05.123456789Z") == 1767323045.123456789
    assert _parse_docker_time("2026-01-02T03:04:05Z") == 1767323045.0


class FakeOutlet:
    """An outlet as pure state (the real one switches a container)."""

    def __init__(self) -> None:
        self.powered = False

    def is_on(self) -> bool:
        return self.powered

    def on(self) -> None:
        self.powered = True

    def off(self) -> None:
        self.powered = False


def test_tasmota_grammar() -> None:
    outlet = FakeOutlet()
    pdu = TasmotaPdu({3: outlet})
    assert pdu.command("Power3") == {"POWER3": "OFF"}
    assert pdu.command("Power3 On") == {"POWER3": "ON"} and outlet.powered
    assert pdu.command("POWER3 off") == {"POWER3": "OFF"} and not outlet.powered
    assert pdu.command("Power3 Toggle") == {"POWER3": "ON"}
    assert pdu.command("Power3 2") == {"POWER3": "OFF"}
    assert pdu.command("Power3 1") == {"POWER3": "ON"}
    assert pdu.command("Power4 On") == {"Command": "Unknown"}
    assert pdu.command("Power3 Blink") == {"Command": "Unknown"}
    assert pdu.command("Status 0") == {"Command": "Unknown"}
