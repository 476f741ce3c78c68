"""Serial console driver (pyserial URLs: /dev/tty*, socket://, rfc2217://).

A console is a noisy, shared byte stream: the tty echoes what we type, the kernel
prints messages at any moment (even mid-line), prompts differ per image. So commands
are framed by markers with a random nonce and only the text between the real markers
is parsed. The markers are printed with ``printf`` from split pieces, so the echoed
command line (which shows the pieces, quoted) can never look like a marker.

Everything the console prints is captured, as it arrives, to a per-hub file.
The parsing functions at the top are pure and tested on recorded transcripts.
"""

from __future__ import annotations

import codecs
import re
import secrets
import select
import shlex
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import serial

from hil.drivers.base import CommandResult, ConsolePattern, ConsoleState, sudo_argv, with_stdin
from hil.errors import CommandTimeout, DeviceUnreachable, InfrastructureError
from hil.inventory import ConsoleSpec
from hil.redact import StreamRedactor, register_secret
from hil.steps import step
from hil.timeouts import DEFAULT_TIMEOUTS, Timeouts

# -- pure parsing -------------------------------------------------------------------

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"          # CSI ... final byte (colours, cursor moves)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC ... BEL / ST (window titles)
    r"|\x1b[PX^_][^\x1b]*\x1b\\"         # DCS/SOS/PM/APC strings
    r"|\x1b[@-Z\\-_]"                    # two-byte escapes
    r"|\x1b[()][0-9A-Za-z]"              # charset selection
)
_INCOMPLETE_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[PX^_][^\x1b]*|[()])?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
KERNEL_LINE = re.compile(r"\[ *\d+\.\d{6}\] [^\n]*\n")
"""A printk line as the kernel writes it to the console (may start mid-line)."""

_LOGIN_PROMPT = re.compile(r"(?i)\blogin: *$")
_PASSWORD_PROMPT = re.compile(r"(?i)\bpassword: *$")
_SHELL_PROMPT = re.compile(r"[$#%>] *$")
_LOGIN_FAILED = re.compile(r"(?i)login incorrect|authentication failure|permission denied")


def clean(text: str) -> str:
    """Strip ANSI escapes, carriage returns and other control characters (keeps \\n, \\t)."""
    text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n").replace("\n\r", "\n")
    return _CONTROL.sub("", text.replace("\r", ""))


def strip_kernel_messages(text: str) -> str:
    """Remove printk lines, including ones the kernel dropped into the middle of a line."""
    return KERNEL_LINE.sub("", text)


def classify(text: str) -> ConsoleState:
    """What the console is waiting for, judged by the last line that is not kernel noise."""
    lines = [ln for ln in strip_kernel_messages(clean(text) + "\n").split("\n") if ln.strip()]
    if not lines:
        return ConsoleState.SILENT
    last = lines[-1].rstrip()
    if _LOGIN_PROMPT.search(last):
        return ConsoleState.LOGIN_PROMPT
    if _PASSWORD_PROMPT.search(last):
        return ConsoleState.PASSWORD_PROMPT
    if _SHELL_PROMPT.search(last):
        return ConsoleState.SHELL
    return ConsoleState.SILENT


def new_nonce() -> str:
    return secrets.token_hex(6)


def begin_marker(nonce: str) -> str:
    return f"HIL-BEGIN-{nonce}"


def end_marker_re(nonce: str) -> re.Pattern[str]:
    return re.compile(rf"\nHIL-END-{nonce}:(\d+)\n")


def framed_command(argv: Sequence[str], nonce: str, *, sudo: bool = False,
                   stdin: str | None = None) -> str:
    """One shell line that runs ``argv`` between markers and prints its exit status.

    The markers are printed from split pieces, so the echo of this very line does
    not contain them. The end marker starts with a newline so that output without a
    trailing newline still ends cleanly; ``parse_framed`` removes exactly that one.
    """
    words = sudo_argv(argv) if sudo else list(argv)
    cmd = with_stdin(shlex.join(words), stdin)
    return (f"printf '%s%s\\n' HIL-BEGIN- {nonce}; {cmd} 2>&1; "
            f"printf '\\n%s%s:%d\\n' HIL-END- {nonce} $?")


def parse_framed(text: str, nonce: str) -> tuple[int, str] | None:
    """(exit status, output) from console text, or None when the end marker is not there yet.

    ``text`` is cleaned console output (any amount before and after the frame);
    kernel messages inside the frame are removed.
    """
    body = strip_kernel_messages(text)
    begin = re.search(rf"(?:^|\n){re.escape(begin_marker(nonce))}\n", body)
    if begin is None:
        return None
    # The end printf starts with "\n", so the frame ends "<output>\nHIL-END-...": the
    # output keeps its own trailing newline, and output without one stays without.
    end = end_marker_re(nonce).search(body, begin.end())
    if end is None:
        return None
    return int(end.group(1)), body[begin.end():end.start()]


class _StreamCleaner:
    """``clean`` for a stream: holds back an escape sequence or CR split across reads."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> str:
        text = self._pending + text
        self._pending = ""
        m = _INCOMPLETE_ANSI.search(text)
        if m:
            self._pending, text = text[m.start():], text[:m.start()]
        if text.endswith("\r"):
            self._pending, text = "\r" + self._pending, text[:-1]
        return clean(text)


# -- the driver ---------------------------------------------------------------------

_QUIET = 0.3
"""After a prompt appeared, how long the console must stay quiet before we trust it."""
_READ_TICK = 0.05


class SerialConsole:
    """A hub's serial console; implements ``hil.drivers.base.Console`` (channel "console")."""

    def __init__(self, device: str, spec: ConsoleSpec, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 capture: Path | None = None) -> None:
        self.device = device
        self.spec = spec
        self.timeouts = timeouts
        self.capture_path = capture
        self._port: serial.SerialBase | None = None
        self._capture: IO[str] | None = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._buf = ""       # cleaned text not yet consumed by expect()
        self._all: list[str] = []
        self._error: str | None = None
        self._run_lock = threading.Lock()
        self._session = threading.RLock()
        """Held by a dialog (``hold``) and by each call that types or reads: one user at a time
        (a hub's console lane and a health check in another thread never interleave)."""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._cleaner = _StreamCleaner()
        self._capture_redactor = StreamRedactor()

    # -- lifecycle -----------------------------------------------------------
    def open(self) -> None:
        if self._port is not None:
            return
        with step(f"console open {self.spec.url}", device=self.device):
            try:
                port = serial.serial_for_url(self.spec.url, baudrate=self.spec.baud,
                                             timeout=0, write_timeout=self.timeouts.console_open)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise DeviceUnreachable(
                    f"{self.device}: console {self.spec.url} cannot be opened: {exc}") from None
            self._port = port
            if self.capture_path is not None:
                self.capture_path.parent.mkdir(parents=True, exist_ok=True)
                self._capture = open(self.capture_path, "a", buffering=1,  # noqa: SIM115
                                     encoding="utf-8")
            self._stop.clear()
            self._error = None
            self._reader = threading.Thread(target=self._read_loop, name=f"console-{self.device}",
                                            daemon=True)
            self._reader.start()

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        if self._port is not None:
            try:
                self._port.close()
            finally:
                self._port = None
        if self._capture is not None:
            self._capture.write(self._capture_redactor.flush())
            self._capture.close()
            self._capture = None

    def hold(self) -> threading.RLock:
        """Hold the console for a dialog of several calls: ``with console.hold(): ...``."""
        return self._session

    def __enter__(self) -> SerialConsole:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_loop(self) -> None:
        port = self._port
        assert port is not None
        try:
            fd: int | None = port.fileno()
        except (AttributeError, NotImplementedError, OSError, serial.SerialException):
            # loop:// raises io.UnsupportedOperation (an OSError): poll instead of select
            fd = None
        while not self._stop.is_set():
            try:
                if fd is not None:
                    select.select([fd], [], [], _READ_TICK)
                data = port.read(4096)
            except (serial.SerialException, OSError, ValueError) as exc:
                with self._cond:
                    self._error = f"console {self.spec.url} failed: {exc}"
                    self._cond.notify_all()
                return
            if not data:
                if fd is None:
                    time.sleep(_READ_TICK / 5)
                continue
            self._ingest(self._decoder.decode(data))

    def _ingest(self, raw: str) -> None:
        text = self._cleaner.feed(raw)
        if not text:
            return
        if self._capture is not None:
            # the capture file is evidence attached to reports: redacted, a line at a time
            self._capture.write(self._capture_redactor.feed(text))
            self._capture.flush()  # a killed run must leave a readable capture
        with self._cond:
            self._buf += text
            self._all.append(text)
            self._cond.notify_all()

    def _write(self, text: str) -> None:
        if self._port is None:
            raise DeviceUnreachable(f"{self.device}: console is not open")
        try:
            self._port.write(text.encode())
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnreachable(f"{self.device}: writing to console {self.spec.url} failed: "
                                    f"{exc}") from None

    @step("console send", device="{self.device}")
    def send(self, text: str) -> None:
        """Type ``text`` on the console as a person would (no newline added)."""
        with self._session:
            self.open()
            self._write(text)

    def logout(self, timeout: float | None = None) -> ConsoleState:
        """End a shell session (``exit``) and report what the console shows afterwards."""
        with self._session:
            return self._logout(timeout)

    def _logout(self, timeout: float | None) -> ConsoleState:
        self.open()
        self._discard()
        self._write("exit\r")
        self._settle(time.monotonic() + (timeout if timeout is not None else self.timeouts.console_open))
        return self.state(timeout)

    def captured(self) -> str:
        """Everything the console printed since open (cleaned)."""
        with self._cond:
            return "".join(self._all)

    def _discard(self) -> None:
        with self._cond:
            self._buf = ""

    # -- waiting -------------------------------------------------------------
    def expect(self, pattern: ConsolePattern, timeout: float) -> re.Match[str]:
        """Wait for ``pattern`` in output not yet consumed; consumes up to the match."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._session, self._cond:
            while True:
                m = rx.search(self._buf)
                if m:
                    self._buf = self._buf[m.end():]
                    return m
                if self._error:
                    raise DeviceUnreachable(f"{self.device}: {self._error} while waiting for "
                                            f"{rx.pattern!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = self._buf[-200:]
                    raise CommandTimeout(
                        f"{self.device}: console did not print {rx.pattern!r} within {timeout:g}s; "
                        f"last output: {tail!r}")
                self._cond.wait(left)

    def _settle(self, deadline: float, *, quiet: bool = True) -> str:
        """Collect output until a prompt is at the end and stays quiet (or, ``quiet=False``,
        until a prompt is at the end), or the deadline."""
        with self._cond:
            while True:
                seen = len(self._buf)
                state = classify(self._buf)
                left = deadline - time.monotonic()
                if left <= 0 or (not quiet and state is not ConsoleState.SILENT):
                    break
                self._cond.wait(min(left, _QUIET) if state is not ConsoleState.SILENT else left)
                if self._error or (state is not ConsoleState.SILENT and len(self._buf) == seen):
                    break
            text, self._buf = self._buf, ""
            return text

    # -- state and login -----------------------------------------------------
    def state(self, timeout: float | None = None, *, settle: bool = True) -> ConsoleState:
        """Send a newline and classify what comes back (SILENT when nothing useful does).

        ``settle=False`` takes the first prompt seen: enough to know the console answers,
        not to know it will not print more (e.g. before typing into it)."""
        limit = timeout if timeout is not None else self.timeouts.console_open
        self.open()
        with self._session, step("console state", device=self.device) as st:
            self._discard()
            self._write("\r")
            text = self._settle(time.monotonic() + limit, quiet=settle)
            if self._error:
                raise DeviceUnreachable(f"{self.device}: {self._error}")
            result = classify(text)
            st.attach("state", str(result))
            st.attach("console", text[-2000:])
            return result

    def login(self) -> None:
        """Get to a shell: log in with the inventory's console credentials if needed."""
        limit = self.timeouts.console_login
        deadline = time.monotonic() + limit
        login = self.spec.login
        with self._session, step("console login", device=self.device, user=login.user if login else "-"):
            state = self.state(timeout=min(self.timeouts.console_open, limit))
            attempts = 0
            while state is not ConsoleState.SHELL:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InfrastructureError(
                        f"{self.device}: no shell on console {self.spec.url} within {limit:g}s "
                        f"(last state: {state})")
                if state is ConsoleState.LOGIN_PROMPT:
                    if login is None:
                        raise InfrastructureError(
                            f"{self.device}: console shows a login prompt but devices.yaml has no "
                            "console.login")
                    if attempts >= 2:
                        raise InfrastructureError(
                            f"{self.device}: console login as {login.user} failed twice "
                            f"(check console.login in devices.yaml)")
                    attempts += 1
                    state = self._submit_login(login.user, login.password.resolve()
                                               if login.password else None, deadline)
                elif state is ConsoleState.PASSWORD_PROMPT:
                    # Someone left a half-finished login: an empty password gets us back.
                    self._write("\r")
                    state = classify(self._settle(deadline))
                else:
                    self._write("\r")
                    state = classify(self._settle(min(deadline, time.monotonic() + 2)))

    def _submit_login(self, user: str, password: str | None, deadline: float) -> ConsoleState:
        self._discard()
        self._write(user + "\r")
        text = self._settle(deadline)
        state = classify(text)
        if state is ConsoleState.PASSWORD_PROMPT:
            if password is None:
                raise InfrastructureError(
                    f"{self.device}: console asks for a password but console.login.password is "
                    "not set in devices.yaml")
            register_secret(password)
            self._write(password + "\r")
            text = self._settle(deadline)
            state = classify(text)
        refused = _LOGIN_FAILED.search(text)
        if state is not ConsoleState.SHELL and refused:
            # A clean refusal: retrying the same credentials only adds PAM's fail delay.
            raise InfrastructureError(
                f"{self.device}: console login as {user} failed ({refused.group(0)}); "
                "check console.login in devices.yaml")
        return state

    # -- commands ------------------------------------------------------------
    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None, check: bool = False) -> CommandResult:
        """Run ``argv`` in the console's shell (call login() first). stderr is merged into stdout."""
        if isinstance(argv, str):
            raise TypeError("argv must be a sequence of arguments, not a shell string")
        limit = timeout if timeout is not None else self.timeouts.console_command
        nonce = new_nonce()
        line = framed_command(argv, nonce, sudo=sudo, stdin=stdin)
        title = shlex.join(sudo_argv(argv) if sudo else list(argv))
        with self._session, self._run_lock, \
                step(f"console: {title}", device=self.device, timeout=limit) as st:
            self.open()
            t0 = time.perf_counter()
            self._discard()
            self._write(line + "\r")
            try:
                status, output = self._wait_frame(nonce, time.monotonic() + limit)
            except CommandTimeout:
                self._write("\x03")  # interrupt, so the console is usable for the next command
                raise CommandTimeout(f"{self.device}: console command {title!r} did not finish "
                                     f"within {limit:g}s") from None
            st.attach("stdout", output)
            result = st.record(CommandResult(argv=tuple(argv), exit_status=status, stdout=output,
                                             stderr="", duration=time.perf_counter() - t0,
                                             channel="console"))
        return result.check() if check else result

    def _wait_frame(self, nonce: str, deadline: float) -> tuple[int, str]:
        """Wait until the command's end marker arrived; kernel noise inside is tolerated."""
        with self._cond:
            while True:
                parsed = parse_framed(self._buf, nonce)
                if parsed is not None:
                    self._buf = ""
                    return parsed
                if self._error:
                    raise DeviceUnreachable(f"{self.device}: {self._error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CommandTimeout(f"{self.device}: no end marker HIL-END-{nonce}")
                self._cond.wait(left)
