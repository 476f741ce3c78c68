"""Cancellation: what the harness does when CI (or a person) tells it to stop.

GitLab, GitHub Actions and Jenkins cancel a job with SIGTERM (GitHub sends SIGINT first),
then kill it some seconds later; Ctrl-C is SIGINT. The first signal starts an orderly
stop within a grace period (``Timeouts.cancel_grace``):

- no new work starts (``check()`` raises ``Cancelled``; pytest stops after the current
  test, whose ``Cancelled`` - a ``KeyboardInterrupt`` - interrupts it like Ctrl-C);
- every hub this process changed is put back to its snapshot, with every wait capped to
  what is left of the grace period (``bounded``), and its lease is released;
- what was recorded is written as it is; the run counts as interrupted, so the gate says
  inconclusive.

A second signal (later than ``REPEAT_WINDOW`` after the first: CI signals a whole process
group, and the harness forwards the first signal to its xdist workers, so copies of one
signal arrive together) aborts at once, and so does the end of the grace period: leases of
file stores die with the process, shared-store leases expire, and the next holder restores
what was left (teardown-on-acquire).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType

from hil.timeouts import Timeouts

log = logging.getLogger("hil.cancel")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_WINDOW = 1.0
"""Seconds after the first signal during which another one is a copy of it, not a second one."""
FINISH_RESERVE = 0.2
"""Share of the grace period kept back from restores for releasing leases and writing results."""


class Cancelled(KeyboardInterrupt):
    """The run was told to stop (SIGTERM/SIGINT). A KeyboardInterrupt, so that pytest, and any code
    that lets KeyboardInterrupt through, stops the way it does for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"cancelled by {signal.Signals(signum).name}")


@dataclass
class _State:
    signum: int | None = None
    at: float = 0.0
    deadline: float = 0.0
    grace: float = Timeouts().cancel_grace
    forward: Callable[[int], None] | None = None
    raise_in_main: bool = True
    on_abort: list[Callable[[], None]] = field(default_factory=list)


_state = _State()
_lock = threading.Lock()


def requested() -> bool:
    """True once the first signal came."""
    return _state.signum is not None


def signum() -> int | None:
    return _state.signum


def remaining() -> float | None:
    """Seconds left of the grace period (None: not cancelled)."""
    if _state.signum is None:
        return None
    return max(0.0, _state.deadline - time.monotonic())


def check() -> None:
    """Raise Cancelled when a stop was asked for: call before starting new work."""
    if _state.signum is not None:
        raise Cancelled(_state.signum)


def bounded(timeouts: Timeouts) -> Timeouts:
    """``timeouts`` with every wait capped to what the grace period leaves for clean-up (unchanged
    when not cancelled)."""
    left = remaining()
    if left is None:
        return timeouts
    cap = max(0.5, left - _state.grace * FINISH_RESERVE)
    fields = ("ssh_command", "console_command", "deployment", "settle", "health", "recovery", "boot",
              "ssh_connect", "power_request")
    return timeouts.model_copy(update={f: min(getattr(timeouts, f), cap) for f in fields})


def exit_status() -> int:
    """The shell's convention for a run ended by a signal: 128 + its number."""
    return 128 + (_state.signum or signal.SIGTERM)


def _handle(signum: int, frame: FrameType | None) -> None:
    now = time.monotonic()
    with _lock:
        first = _state.signum is None
        if first:
            _state.signum, _state.at, _state.deadline = signum, now, now + _state.grace
        elif now - _state.at < REPEAT_WINDOW:
            return  # a copy of the first signal (process group, forwarding)
    if not first:
        _abort(f"second signal ({signal.Signals(signum).name}): aborting at once; the next holder of "
               "each lease restores what this run left")
    name = signal.Signals(signum).name
    _say(f"hil: {name}: stopping; restoring the hubs this run changed (at most {_state.grace:g}s; a "
         "second signal aborts at once)")
    if _state.forward is not None:
        _state.forward(signum)
    threading.Thread(target=_watchdog, name="hil-cancel-watchdog", daemon=True).start()
    if _state.raise_in_main:
        raise Cancelled(signum)


def _watchdog() -> None:
    while (left := remaining()) and left > 0:
        time.sleep(min(left, 0.5))
    _abort(f"the grace period ({_state.grace:g}s) is over: aborting; the next holder of each lease "
           "restores what this run left")


def _abort(why: str) -> None:
    _say(f"hil: {why}")
    for fn in list(_state.on_abort):
        try:
            fn()
        except Exception:  # aborting must not be stopped by a failing clean-up
            log.exception("abort hook failed")
    os._exit(exit_status())


def _say(text: str) -> None:
    # os.write: safe in a signal handler and on the way to os._exit (no buffered stream to flush)
    with suppress(OSError):
        os.write(2, (text + "\n").encode())
    log.info(text)  # (stderr has it already: not a warning, which would print it twice)


def install(*, grace: float, raise_in_main: bool = True, forward: Callable[[int], None] | None = None,
            on_abort: Callable[[], None] | None = None) -> Callable[[], None]:
    """Handle SIGTERM and SIGINT as described above (main thread only); returns the uninstaller.

    ``raise_in_main=False`` for a process that must keep running its event loop after the first
    signal (the xdist controller waits for its workers, to which ``forward`` passes the signal)."""
    _state.grace = grace
    _state.raise_in_main = raise_in_main
    _state.forward = forward
    _state.on_abort = [on_abort] if on_abort else []
    previous = {s: signal.signal(s, _handle) for s in SIGNALS}

    def uninstall() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return uninstall


@contextmanager
def cancellable(grace: float) -> Iterator[None]:
    """``install`` for the duration of a command (`hil deploy`, `hil rollback`)."""
    uninstall = install(grace=grace)
    try:
        yield
    finally:
        uninstall()


def reset() -> None:
    """Forget a cancellation (tests; a process that handled one and goes on)."""
    global _state
    _state = _State()


def child_pids() -> list[int]:
    """Processes whose parent is this one (the xdist workers of a controller); Linux /proc."""
    me = os.getpid()
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            out.append(int(entry))
    return out


def forward_to_children(signum: int) -> None:
    for pid in child_pids():
        with suppress(ProcessLookupError):
            os.kill(pid, signum)
