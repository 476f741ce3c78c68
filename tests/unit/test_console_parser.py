"""Console parsing on transcripts recorded from a real agetty/login/bash (tests/data/console/record.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.drivers.base import ConsoleState
from hil.drivers.console import (
    _StreamCleaner,
    classify,
    clean,
    framed_command,
    parse_framed,
    strip_kernel_messages,
)

DATA = Path(__file__).parent.parent / "data" / "console"


def transcript(name: str) -> str:
    return clean((DATA / f"{name}.raw").read_bytes().decode("utf-8"))


@pytest.mark.parametrize(("name", "state"), [
    ("login_prompt", ConsoleState.LOGIN_PROMPT),
    ("login_prompt_kernel_noise", ConsoleState.LOGIN_PROMPT),
    ("login_incorrect", ConsoleState.LOGIN_PROMPT),
    ("password_prompt", ConsoleState.PASSWORD_PROMPT),
    ("shell", ConsoleState.SHELL),
    ("shell_newline", ConsoleState.SHELL),
    ("command_output", ConsoleState.SHELL),
])
def test_classify_recorded_states(name: str, state: ConsoleState) -> None:
    assert classify(transcript(name)) is state


def test_classify_silence_and_boot_noise_only() -> None:
    assert classify("") is ConsoleState.SILENT
    assert classify("\r\n\r\n") is ConsoleState.SILENT
    # A booting hub prints only kernel lines: no prompt yet.
    assert classify("[    0.000000] Booting Linux on physical CPU 0x0\n"
                    "[    1.234567] systemd[1]: Starting...\n") is ConsoleState.SILENT
    # "Last login:" and banner lines are not prompts.
    assert classify("Last login: Fri Nov 27 23:09:10 UTC 2026 on pts/0\n") is ConsoleState.SILENT


def test_clean_strips_ansi_and_carriage_returns() -> None:
    raw = (DATA / "shell_newline.raw").read_bytes().decode()
    assert "\x1b" in raw and "\r" in raw
    text = clean(raw)
    assert "\x1b" not in text and "\r" not in text
    assert text.endswith("hilrec@vm:~$ ")


def test_stream_cleaner_handles_escape_split_across_reads() -> None:
    raw = (DATA / "command_output.raw").read_bytes().decode()
    whole = clean(raw)
    for cut in range(1, len(raw)):
        sc = _StreamCleaner()
        assert sc.feed(raw[:cut]) + sc.feed(raw[cut:]) == whole, cut


def test_parse_command_with_output() -> None:
    status, out = parse_framed(transcript("command_output"), "0123456789ab") or (None, "")
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 2 and out.endswith("\n")
    assert lines[0].endswith("/etc/hostname")
    assert lines[1].endswith("/etc/os-release -> ../usr/lib/os-release")


def test_parse_failed_command_without_trailing_newline() -> None:
    assert parse_framed(transcript("command_failed"), "a1b2c3d4e5f6") == (3, "to-stderr\nno-newline")


def test_parse_empty_output() -> None:
    assert parse_framed(transcript("command_empty"), "00000000cafe") == (0, "")


def test_parse_tolerates_kernel_messages_even_mid_line() -> None:
    text = transcript("command_kernel_noise")
    assert "usb 1-1: new high-speed USB device" in text  # the noise is really in there
    assert parse_framed(text, "feedc0ffee42") == (0, "line 1\nline 2\nline 3\nhalf line-end\ndone\n")


def test_echo_of_the_command_line_is_not_a_frame() -> None:
    text = transcript("command_output")
    echo = text.split("\n", 1)[0]
    assert "HIL-BEGIN-" in echo and "0123456789ab" in echo  # the echo is there ...
    assert parse_framed(echo + "\n", "0123456789ab") is None  # ... and never parses as a frame


def test_incomplete_frame_is_not_parsed_yet() -> None:
    text = transcript("command_kernel_noise")
    cut = text.index("HIL-END-")
    assert parse_framed(text[:cut], "feedc0ffee42") is None
    assert parse_framed(text, "000000000000") is None  # another command's nonce


def test_framed_command_shape() -> None:
    line = framed_command(["echo", "a b", "$HOME"], "abc", sudo=True)
    assert "sudo -n -- echo 'a b' '$HOME'" in line
    assert "HIL-BEGIN-abc" not in line and "HIL-END-abc" not in line
    assert "\n" not in line and "\r" not in line


def test_strip_kernel_messages_keeps_ordinary_brackets() -> None:
    assert strip_kernel_messages("[ok] fine\n[  1.5] short\n") == "[ok] fine\n[  1.5] short\n"
