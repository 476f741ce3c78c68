"""The timed, logged step record: written once, read by Allure, latency and logs.

Every driver action goes through ``step(...)``. Listeners (the Allure wiring in the
pytest plugin, a run log writer) subscribe with ``add_listener``; the library itself
does not import pytest or allure.

A step records its own outcome, so no call site sets an exit status by hand:

- as a context manager, a block that raises ends the step failed (the error is kept),
  a block that completes ends it with exit status 0, unless the block recorded
  another outcome with ``st.record(...)`` (a ``CommandResult``, a bool or an int);
- as a decorator, ``@step("console state", device="{self.device}")`` runs the function
  inside the step and records what it returned (``None`` counts as success). Title,
  device and parameters are ``str.format`` templates over the call's arguments.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from hil.redact import redact

log = logging.getLogger("hil.steps")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@runtime_checkable
class HasExitStatus(Protocol):
    """A command's result (``hil.drivers.base.CommandResult`` and anything like it)."""

    @property
    def exit_status(self) -> int: ...


@runtime_checkable
class HasOk(Protocol):
    """A result that judges itself (a deployment, a restore)."""

    @property
    def ok(self) -> bool: ...


Outcome = HasExitStatus | HasOk | bool | int | None
"""What a step can record: an exit status, or a verdict (True = 0, False = 1)."""


def exit_status_of(outcome: object) -> int:
    """The exit status a step shows for ``outcome`` (anything not listed counts as success)."""
    if isinstance(outcome, bool):
        return 0 if outcome else 1
    if isinstance(outcome, int):
        return outcome
    status = getattr(outcome, "exit_status", None)  # a command's result: the common case, checked first
    if isinstance(status, int):
        return status
    if isinstance(outcome, HasExitStatus):
        return int(outcome.exit_status)
    if isinstance(outcome, HasOk):
        return 0 if outcome.ok else 1
    return 0


@dataclass
class Step:
    """One device action: what, on which device, how long, and what came back."""

    title: str
    device: str | None = None
    kind: str | None = None
    """What the step waits on, for the run's timeline (``hil.report.timeline.KINDS``); None: judged
    from the title."""
    params: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    duration: float | None = None
    exit_status: int | None = None
    """Set when the step ends: from ``record``, else 0 (completed) or None (raised)."""
    error: str | None = None
    attachments: dict[str, str] = field(default_factory=dict)
    lane: str = "main"
    """Which line of work ran it: "main" (the test's own thread) or a hub's background job
    (``in_lane``), so a timeline does not count a background wait as the test's."""

    def attach(self, name: str, text: str) -> None:
        if text:
            self.attachments[name] = redact(text)

    def record(self, outcome: T) -> T:
        """Record the step's outcome (when it is not plain success) and hand it back."""
        self.exit_status = exit_status_of(outcome)
        return outcome

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.exit_status is not None and self.exit_status != 0)


_context = threading.local()


class in_lane:  # lower case: used like a function, `with in_lane(...)`
    """Steps this thread starts inside the block belong to ``lane`` and, when they name no
    device, to ``device`` (a hub's background job: hil.overlap)."""

    def __init__(self, lane: str, device: str | None = None) -> None:
        self.lane = lane
        self.device = device
        self._saved: tuple[str, str | None] = ("main", None)

    def __enter__(self) -> in_lane:
        self._saved = (getattr(_context, "lane", "main"), getattr(_context, "device", None))
        _context.lane, _context.device = self.lane, self.device
        return self

    def __exit__(self, *exc: object) -> None:
        _context.lane, _context.device = self._saved


def current_lane() -> tuple[str, str | None]:
    """(lane, default device) of the calling thread."""
    return getattr(_context, "lane", "main"), getattr(_context, "device", None)


StepListener = Callable[[str, Step], None]
"""Called with ("start" | "stop", step)."""

_listeners: list[StepListener] = []
_lock = threading.Lock()


def add_listener(fn: StepListener) -> None:
    with _lock:
        if fn not in _listeners:
            _listeners.append(fn)


def remove_listener(fn: StepListener) -> None:
    with _lock:
        if fn in _listeners:
            _listeners.remove(fn)


def _emit(event: str, st: Step) -> None:
    for fn in list(_listeners):
        try:
            fn(event, st)
        except Exception:  # a broken listener must never break a device action
            log.exception("step listener failed")


class step:  # lower case: used like a function, `with step(...)` and `@step(...)`
    """Time a device action and publish it to the listeners (context manager or decorator)."""

    def __init__(self, title: str, *, device: str | None = None, kind: str | None = None,
                 **params: Any) -> None:
        self._title = title
        self._device = device
        self._kind = kind
        self._params = params
        self._open: list[tuple[Step, float]] = []

    # -- context manager ---------------------------------------------------------
    def __enter__(self) -> Step:
        lane, device = current_lane()
        st = Step(title=redact(self._title), device=self._device or device, kind=self._kind,
                  params={k: redact(str(v)) for k, v in self._params.items()}, lane=lane)
        _emit("start", st)
        self._open.append((st, time.perf_counter()))
        return st

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        st, t0 = self._open.pop()
        if exc is not None:
            st.error = redact(f"{type(exc).__name__}: {exc}")
        elif st.exit_status is None:
            st.exit_status = 0
        st.duration = time.perf_counter() - t0
        log.debug("%s %s %.3fs exit=%s", st.device or "-", st.title, st.duration, st.exit_status)
        _emit("stop", st)

    # -- decorator -----------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        sig = inspect.signature(fn)
        title, device, kind, params = self._title, self._device, self._kind, self._params

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            names = bound.arguments
            scope = step(title.format(**names),
                         device=device.format(**names) if device is not None else None, kind=kind,
                         **{k: str(v).format(**names) for k, v in params.items()})
            with scope as st:
                return st.record(fn(*args, **kwargs))

        return cast(F, wrapper)  # functools.wraps keeps fn's name and docs
