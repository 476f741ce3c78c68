"""Serial console checks (OWASP IoT I1/I10): a newline must give a login prompt, not a
shell, and factory logins must be refused.

A console is shared with whoever used it before: a shell may simply be a session
somebody left logged in. So a shell on the first newline is logged out once and the
console asked again; a shell that comes back after the logout is an auto-login.
Both probes return evidence and leave the console at its login prompt (or, on a
device that auto-logs in, at whatever it gives).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from hil.drivers.base import CommandResult, Console, ConsoleState
from hil.errors import HilError
from hil.steps import step

CONSOLE_DEFAULT_CREDENTIALS: tuple[tuple[str, str], ...] = (
    ("pi", "raspberry"),
    ("root", "root"),
    ("root", "toor"),
    ("admin", "admin"),
)
"""Factory logins tried on the console. Fewer than over SSH: each refusal costs login's
fail delay (about 3 s) and the console takes one attempt at a time."""

_RESPAWN_S = 2.0
"""How long getty may take to print a new prompt after a logout."""
_AFTER_PASSWORD_S = 10.0
"""login's fail delay (3 s on Debian) plus the new prompt."""
_LOGOUT = "exit\r"

_PASSWORD_PROMPT = re.compile(r"(?i)password: *$")
_LOGIN_PROMPT = re.compile(r"(?i)login: *$")
_LOGIN_OUTCOME = re.compile(r"(?i)(login incorrect|authentication failure)|(login: *$)|([$#%>] *$)")

# Every wait below ends on what the console prints (a prompt, login's verdict), bounded by the
# times above; none is a fixed sleep. A newline is never typed at a prompt `login` itself printed
# after a refusal: login reads it as an empty user name and asks for a password, which costs
# another fail delay (util-linux login with PAM).


# -- does a newline give a login prompt? ------------------------------------------------

@dataclass(frozen=True)
class ConsoleLoginGate:
    device: str
    first_state: ConsoleState
    """What a newline gave first."""
    after_logout_state: ConsoleState | None
    """What a newline gave after logging out a shell (None when no shell was found)."""
    transcript: str
    """The console's tail while probing (cleaned)."""

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("asks_for_login", "shell_without_login")

    @property
    def final_state(self) -> ConsoleState:
        return self.after_logout_state or self.first_state

    @property
    def asks_for_login(self) -> bool:
        return self.final_state is ConsoleState.LOGIN_PROMPT

    @property
    def shell_without_login(self) -> bool:
        return self.final_state is ConsoleState.SHELL


def _prompt_after(con: Console, pattern: re.Pattern[str], timeout: float) -> bool:
    """Wait for ``pattern`` at the end of new console output; False when it did not come."""
    try:
        con.expect(pattern, timeout)
    except HilError:
        return False
    return True


def _settled_state(con: Console, timeout: float) -> ConsoleState:
    state = con.state(timeout)
    if state is ConsoleState.PASSWORD_PROMPT:
        # a half-typed login: an empty password ends it; login's refusal and its new prompt follow
        con.send("\r")
        if _prompt_after(con, _LOGIN_PROMPT, _AFTER_PASSWORD_S):
            return ConsoleState.LOGIN_PROMPT
        state = con.state(timeout)
    return state


def _log_out(con: Console, timeout: float) -> ConsoleState:
    """``exit`` a shell; what the console shows then (getty's new prompt ends the wait)."""
    con.send(_LOGOUT)
    _prompt_after(con, _LOGIN_PROMPT, _RESPAWN_S)  # an auto-login console shows none: bounded
    return _settled_state(con, timeout)


def console_login_gate(con: Console, *, timeout: float = 5.0) -> ConsoleLoginGate:
    """Send a newline; if a shell answers, log it out once and send a newline again."""
    with con.hold(), step("console: does a newline give a login prompt?", device=con.device) as st:
        mark = len(con.captured())
        first = _settled_state(con, timeout)
        after: ConsoleState | None = None
        if first is ConsoleState.SHELL:
            after = _log_out(con, timeout)
        gate = ConsoleLoginGate(device=con.device, first_state=first, after_logout_state=after,
                                transcript=con.captured()[mark:][-2000:])
        st.attach("result", f"first={first} after_logout={after}")
        st.record(gate.asks_for_login)
    return gate


# -- default credentials ------------------------------------------------------------------

@dataclass(frozen=True)
class ConsoleCredentialAttempt:
    user: str
    password: str
    """A public factory default, not a secret of ours."""
    outcome: Literal["accepted", "refused", "no-login-prompt", "error"]
    detail: str


@dataclass(frozen=True)
class ConsoleCredentialsEvidence:
    device: str
    attempts: tuple[ConsoleCredentialAttempt, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("accepted", "untested")

    @property
    def accepted(self) -> tuple[str, ...]:
        return tuple(f"{a.user}/{a.password}" for a in self.attempts if a.outcome == "accepted")

    @property
    def untested(self) -> tuple[str, ...]:
        """Logins that could not be tried: no login prompt (an open shell) or a console error."""
        return tuple(f"{a.user}/{a.password}: {a.detail}" for a in self.attempts
                     if a.outcome in ("no-login-prompt", "error"))


class Pauses(Protocol):
    """Where a background lane (hil.lane.Lane) may hold a console dialog for a quiet measurement."""

    def checkpoint(self) -> None: ...

    def idle(self) -> AbstractContextManager[None]: ...


def _try_console_login(con: Console, user: str, password: str, timeout: float, *,
                       at_prompt: bool = False,
                       idle: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
                       ) -> tuple[ConsoleCredentialAttempt, bool]:
    """One factory login; (the attempt, whether the console now shows login's own new prompt).

    ``at_prompt``: the previous refusal was followed by a login prompt, so the user name is
    typed at once (a newline there would be read as an empty user name)."""
    state = ConsoleState.LOGIN_PROMPT if at_prompt else _settled_state(con, timeout)
    if state is ConsoleState.SHELL:
        state = _log_out(con, timeout)
    if state is not ConsoleState.LOGIN_PROMPT:
        return ConsoleCredentialAttempt(user, password, "no-login-prompt",
                                        f"a newline gives {state.value}, not a login prompt"), False
    con.send(user + "\r")
    con.expect(_PASSWORD_PROMPT, timeout)
    con.send(password + "\r")
    with idle():  # login's fail delay: the hub does nothing meanwhile
        m = con.expect(_LOGIN_OUTCOME, _AFTER_PASSWORD_S)
    if m.group(1) or m.group(2):
        # login prints its verdict after the fail delay, then a new prompt (or exits and getty
        # prints one): that prompt is where the next attempt starts
        again = bool(m.group(2)) or _prompt_after(con, _LOGIN_PROMPT, _AFTER_PASSWORD_S)
        return ConsoleCredentialAttempt(user, password, "refused", m.group(0).strip()), again
    # a prompt ending in $ or # may still be a banner line: ask the console what it shows
    if con.state(timeout) is ConsoleState.SHELL:
        _log_out(con, timeout)
        return ConsoleCredentialAttempt(user, password, "accepted", "shell after login"), False
    return ConsoleCredentialAttempt(user, password, "refused", "no shell after login"), False


def console_default_credentials(con: Console, *,
                                credentials: Sequence[tuple[str, str]] = CONSOLE_DEFAULT_CREDENTIALS,
                                timeout: float = 5.0,
                                pauses: Pauses | None = None) -> ConsoleCredentialsEvidence:
    """Type each factory login at the console's login prompt; report which gave a shell.

    Each attempt holds the console. With ``pauses`` (a background lane: hil.lane) a quiet
    measurement on the hub may start between two attempts or while login waits out its fail
    delay; the dialog goes on after it."""
    attempts: list[ConsoleCredentialAttempt] = []
    with step("console default credentials", device=con.device, attempts=len(credentials)) as st:
        at_prompt = False
        for user, password in credentials:
            if attempts and attempts[-1].outcome == "no-login-prompt":
                # the console gives a shell without asking: no login can be typed at all
                att = ConsoleCredentialAttempt(user, password, "no-login-prompt", attempts[-1].detail)
                attempts.append(att)
                continue
            if attempts and pauses is not None:
                pauses.checkpoint()
            try:
                with con.hold():
                    att, at_prompt = _try_console_login(
                        con, user, password, timeout, at_prompt=at_prompt,
                        idle=pauses.idle if pauses is not None else contextlib.nullcontext)
            except HilError as exc:
                att, at_prompt = ConsoleCredentialAttempt(user, password, "error", str(exc)[:300]), False
            attempts.append(att)
        ev = ConsoleCredentialsEvidence(device=con.device, attempts=tuple(attempts))
        st.attach("outcomes", "\n".join(f"{a.user}: {a.outcome} ({a.detail})" for a in attempts))
        st.record(not ev.accepted and not ev.untested)
    return ev


def console_logout(con: Console, *, timeout: float = 5.0) -> ConsoleState:
    """Log out a shell on the console (so the next user finds a login prompt); the state after."""
    with con.hold(), step("console logout", device=con.device) as st:
        state = con.state(timeout)
        if state is ConsoleState.SHELL:
            state = _log_out(con, timeout)
        st.attach("state", state.value)
    return state


# -- a console session: does it ask for a login, and does a login give a working shell? ------------

@dataclass(frozen=True)
class ConsoleSession:
    """One visit to the console: the login gate, then (when it asked for a login) a command run
    after logging in with the inventory's credentials, and the logout."""

    gate: ConsoleLoginGate
    command: CommandResult | None
    """``None`` when the console did not ask for a login (nothing was typed)."""


def console_session(con: Console, argv: Sequence[str] = ("uname", "-n"), *,
                    timeout: float = 5.0) -> ConsoleSession:
    """The login gate; if it asks for a login: log in, run ``argv``, log out (always)."""
    gate = console_login_gate(con, timeout=timeout)
    if not gate.asks_for_login:
        return ConsoleSession(gate, None)
    with con.hold():
        try:
            con.login()
            res = con.run(list(argv))
        finally:
            console_logout(con, timeout=timeout)
    return ConsoleSession(gate, res)
