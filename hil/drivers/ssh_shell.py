"""A persistent shell on an SSH channel: commands as framed lines, answers as framed streams.

Why: on an open connection a command over a fresh ``exec`` channel costs a channel open,
sshd's fork of the login shell and the channel's close (2.5-5.5 ms on the lab); a
persistent channel answers in about 0.25 ms (docs/performance-notes.md). So each thread
of the harness keeps one ``sh`` running on a channel of its own (``SshConnection`` owns
them) and sends it one line per command:

    printf 'B<nonce>\\n'; printf 'B<nonce>\\n' >&2; CMD </dev/null; printf '\\nE<nonce>:%d\\n' $?; ...

Same semantics as an exec channel: the argument list is quoted once (``shlex.join``), stdout
and stderr come back separately (the channel's two streams, each framed by its own markers
with a fresh random nonce, so no output - binary, without a final newline, or full of
marker-like text - can end a frame early), the exit status is the command's, stdin is
``/dev/null`` or exactly the given text (through ``base64 -d``: a command that reads stdin
can never read the next command), a command that would change the shell itself (``cd``,
``exec``, ``exit``, ...) runs in a subshell. Output a previous command's stray child
printed later is dropped: only what follows this command's begin marker counts. A command
past its deadline ends the shell (the next command starts a new one), as an exec channel
is closed on timeout.
"""

from __future__ import annotations

import secrets
import select
import shlex
import time
from collections.abc import Sequence

import paramiko

from hil.drivers.base import with_stdin
from hil.errors import CommandTimeout

_READ = 65536
_TICK = 0.05
STDIN_MAX = 48 * 1024
"""Larger stdin goes over an exec channel (the framed line carries stdin as base64)."""

SHELL_STATE_BUILTINS = frozenset({
    ".", "alias", "bg", "break", "builtin", "cd", "command", "continue", "eval", "exec", "exit",
    "export", "fg", "getopts", "hash", "jobs", "local", "read", "readonly", "return", "set",
    "shift", "source", "trap", "type", "ulimit", "umask", "unalias", "unset", "wait",
})
"""Builtins that could change the persistent shell itself: they run in a subshell."""


class ShellGone(Exception):
    """The persistent shell's channel closed; ``sent``: the command may have reached the hub."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


IDLE_PING_S = 1.0
"""A shell idle this long is asked for a marker before the next command: a connection that died
meanwhile (a reboot, a cable) is found before the command is sent, so it is retried on a fresh
one - as an exec channel's open fails before anything is sent. Back-to-back commands skip it."""
DEAD_ON_ARRIVAL_S = 0.5
"""A connection that dies this soon after a command was written, before a byte of its frame came
back, was dead already: the command is retried once, as one that was never sent."""


def frame(argv: Sequence[str], nonce: str, stdin: str | None) -> bytes:
    """The one line the persistent shell reads for ``argv`` (already sudo-wrapped if wanted)."""
    cmd = shlex.join(argv)
    if argv and argv[0] in SHELL_STATE_BUILTINS:
        cmd = f"( {cmd} )"
    cmd = with_stdin(cmd, stdin)
    return (f"printf 'B{nonce}\\n'; printf 'B{nonce}\\n' >&2; {cmd}; "
            f"printf '\\nE{nonce}:%d\\n' $?; printf '\\nE{nonce}\\n' >&2\n").encode()


class _Stream:
    """One of the channel's two streams, cut at this command's markers (``end`` is followed by the
    exit status and a newline on stdout, by the newline alone on stderr)."""

    def __init__(self, begin: bytes, end: bytes, *, status: bool) -> None:
        self.begin = begin
        self.end = end
        self.with_status = status
        self.buf = b""
        self.started = False
        self.body: bytes | None = None
        self.status: int | None = None

    def feed(self, data: bytes) -> None:
        self.buf += data
        if not self.started:
            at = self.buf.find(self.begin)
            if at < 0:
                # keep a tail that may hold the start of a split marker; drop older strays
                self.buf = self.buf[-len(self.begin):]
                return
            self.started = True
            self.buf = self.buf[at + len(self.begin):]
        at = self.buf.find(self.end)
        if at < 0:
            return
        rest = self.buf[at + len(self.end):]
        if self.with_status:
            digits, newline, _ = rest.partition(b"\n")
            if not newline:
                return  # the status is still on its way
            self.status = int(digits)
        elif not rest.startswith(b"\n"):
            return
        self.body = self.buf[:at]

    @property
    def done(self) -> bool:
        return self.body is not None


class PersistentShell:
    """``sh`` on one channel of a transport; ``run`` is one framed command (not thread-safe)."""

    def __init__(self, transport: paramiko.Transport, *, open_timeout: float) -> None:
        self.transport = transport
        chan = transport.open_session(timeout=open_timeout)
        try:
            chan.exec_command("exec sh")
        except BaseException:
            chan.close()
            raise
        self.chan = chan
        self.last_used = time.monotonic()
        self.answered = False
        """Whether the shell ever answered a command (one that ends before that is no shell)."""

    @property
    def usable(self) -> bool:
        c = self.chan
        return (not c.closed and not c.eof_received and not c.exit_status_ready()
                and self.transport.is_active())

    def close(self) -> None:
        self.chan.close()

    def run(self, argv: Sequence[str], stdin: str | None, deadline: float,
            what: str) -> tuple[int, bytes, bytes]:
        if time.monotonic() - self.last_used > IDLE_PING_S:
            self._exchange(["true"], None, deadline, "a liveness marker", unsent=True)
        return self._exchange(argv, stdin, deadline, what, unsent=False)

    def _exchange(self, argv: Sequence[str], stdin: str | None, deadline: float, what: str, *,
                  unsent: bool) -> tuple[int, bytes, bytes]:
        nonce = secrets.token_hex(8)
        out = _Stream(f"B{nonce}\n".encode(), f"\nE{nonce}:".encode(), status=True)
        err = _Stream(f"B{nonce}\n".encode(), f"\nE{nonce}".encode(), status=False)
        try:
            self.chan.sendall(frame(argv, nonce, stdin))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ShellGone(f"sending {what!r} failed: {exc}", sent=False) from None
        written = time.monotonic()
        chan = self.chan
        while not (out.done and err.done):
            got = False
            while chan.recv_ready():
                out.feed(chan.recv(_READ))
                got = True
            while chan.recv_stderr_ready():
                err.feed(chan.recv_stderr(_READ))
                got = True
            if got:
                continue
            if chan.closed or chan.eof_received or chan.exit_status_ready():
                never_arrived = (not out.started and not err.started and not self.transport.is_active()
                                 and time.monotonic() - written < DEAD_ON_ARRIVAL_S)
                raise ShellGone(f"the shell ended while running {what!r}",
                                sent=not (unsent or never_arrived))
            left = deadline - time.perf_counter()
            if left <= 0:
                raise CommandTimeout(what)
            # paramiko sets the channel's pipe for stdout, stderr and close alike
            select.select([chan], [], [], min(left, _TICK))
        assert out.body is not None and err.body is not None and out.status is not None
        self.answered = True
        self.last_used = time.monotonic()
        return out.status, out.body, err.body
