"""The timed, logged step record: written once, read by Allure, latency and logs.

Every driver action goes through ``step(...)``. Listeners (the Allure wiring in the
pytest plugin, a run log writer) subscribe with ``add_listener``; the library itself
does not import pytest or allure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hil.redact import redact

log = logging.getLogger("hil.steps")


@dataclass
class Step:
    """One device action: what, on which device, how long, and what came back."""

    title: str
    device: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    duration: float | None = None
    exit_status: int | None = None
    error: str | None = None
    attachments: dict[str, str] = field(default_factory=dict)

    def attach(self, name: str, text: str) -> None:
        if text:
            self.attachments[name] = redact(text)


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


@contextmanager
def step(title: str, *, device: str | None = None, **params: Any) -> Iterator[Step]:
    """Time a device action and publish it to the listeners."""
    st = Step(title=redact(title), device=device, params={k: redact(str(v)) for k, v in params.items()})
    _emit("start", st)
    t0 = time.perf_counter()
    try:
        yield st
    except BaseException as exc:
        st.error = redact(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        st.duration = time.perf_counter() - t0
        log.debug("%s %s %.3fs exit=%s", device or "-", st.title, st.duration, st.exit_status)
        _emit("stop", st)
