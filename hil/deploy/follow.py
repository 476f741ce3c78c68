"""Following the nucleus as it works: its log as lines are written, and stability windows.

``NucleusLog`` runs ``tail -n 0 -F greengrass.log`` on the hub (a stream channel of the SSH
connection) and hands over each record the moment the nucleus writes it. Waits use it to
end on evidence: a deployment's "Current deployment finished" line wakes the wait for its
terminal status at once (``deployment status`` stays the authority; the log only wakes),
and a candidate component's ``service-set-state`` to anything but RUNNING/FINISHED ends a
stability window as failed at once. Where no stream can be had (a console shell), both fall
back to polling, as before.

``StabilityWindow`` watches the candidate's components for a period in a thread of its own
(a hub's background lane, hil.steps.in_lane), so read-only checks and quiet measurements
run on the hub meanwhile; the check that owns the window joins it (``result``). The window
is passive: a log follower and two component lists, nothing that loads the hub.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from hil.deploy.watch import Stability
from hil.drivers.base import Shell
from hil.drivers.greengrass import STABLE_STATES, ComponentState, Greengrass, LogRecord, parse_log_line
from hil.errors import DeviceUnreachable, HilError
from hil.steps import in_lane, step

log = logging.getLogger(__name__)

_WAIT_SLICE = 0.5
"""Longest single wait on the stream (so a window notices its end and a close promptly)."""


class _Lines(Protocol):
    def next_line(self, timeout: float) -> str | None: ...

    def close(self) -> None: ...


class NucleusLog:
    """greengrass.log as the nucleus writes it; ``None``-safe: without a stream every wait is a sleep."""

    def __init__(self, shell: Shell, root: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.shell = shell
        self.path = f"{root.rstrip('/')}/logs/greengrass.log"
        self._sleep = sleep
        self._lines: _Lines | None = None
        self.records: list[LogRecord] = []
        """Every structured record seen since ``open``."""

    @property
    def live(self) -> bool:
        return self._lines is not None

    def open(self) -> NucleusLog:
        stream = getattr(self.shell, "stream", None)  # SshConnection.stream; a console has none
        if stream is None:
            return self
        try:
            # -n 0: only what is written from now on; -F: a rotated log is followed into its new file
            self._lines = stream(["tail", "-n", "0", "-F", self.path], sudo=True)
        except HilError as exc:
            log.info("%s: no live nucleus log (%s); polling instead", self.shell.device, exc)
            self._lines = None
        return self

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()
            self._lines = None

    def __enter__(self) -> NucleusLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, seconds: float, wake: Callable[[LogRecord], bool] | None = None) -> list[LogRecord]:
        """Up to ``seconds``: the records written meanwhile, returned early at the first one ``wake``
        accepts (any record when ``wake`` is None). Without a live stream: a plain sleep."""
        if self._lines is None:
            self._sleep(max(0.0, seconds))
            return []
        got: list[LogRecord] = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                line = self._lines.next_line(min(left, _WAIT_SLICE))
            except HilError:
                self.close()  # the stream died (reconnect, reboot): callers fall back to polling
                return got
            if line is None:
                continue
            rec = parse_log_line(line)
            if rec is None:
                continue
            self.records.append(rec)
            got.append(rec)
            if wake is None or wake(rec):
                return got

    def waker(self, deployment_id: str) -> Callable[[float], None]:
        """A sleep for ``wait_for_terminal``: ends as soon as the log mentions the deployment."""
        def mentions(rec: LogRecord) -> bool:
            ident = rec.context.get("DeploymentId") or rec.context.get("deploymentId")
            return ident == deployment_id

        def sleep(seconds: float) -> None:
            self.wait(seconds, mentions)

        return sleep


def _state_change(rec: LogRecord, names: Mapping[str, str]) -> tuple[str, ComponentState] | None:
    if rec.event != "service-set-state" or rec.context.get("serviceName") not in names:
        return None
    try:
        return rec.context["serviceName"], ComponentState(rec.context["newState"])
    except (KeyError, ValueError):
        return None


class StabilityWindow:
    """Every component of ``expected`` (name -> version) stays RUNNING/FINISHED for ``period`` seconds.

    Started in a thread: a component list at the start, the nucleus log followed meanwhile (a
    state change away from RUNNING/FINISHED ends the window failed at once), a component list
    at the end. Without a live log the window samples the component list every ``poll`` seconds
    (``hil.deploy.watch.watch_stable``)."""

    def __init__(self, gg: Greengrass, expected: Mapping[str, str], period: float, *, title: str,
                 poll: float = 1.0, lane: str = "window") -> None:
        self.gg = gg
        self.expected = dict(expected)
        self.period = period
        self.title = title
        self.poll = poll
        self.lane = lane
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.started_wall: datetime | None = None
        self._result: Stability | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def device(self) -> str:
        return self.gg.device

    def start(self) -> StabilityWindow:
        self.started_at = time.monotonic()
        self.started_wall = datetime.now(UTC)
        # the log follower is opened before the thread starts: no state change can fall between
        self._log = NucleusLog(self.gg.shell, self.gg.root).open()
        self._thread = threading.Thread(target=self._run, name=f"{self.device}-{self.lane}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with in_lane(self.lane, device=self.device), \
                    step(self.title, device=self.device, kind="settle", seconds=self.period) as st:
                self._result = self._watch()
                st.record(self._result.ok)
                if self._result.problem:
                    st.attach("problem", self._result.problem)
        except BaseException as exc:  # handed to whoever joins the window
            self._error = exc
        finally:
            self._log.close()
            self.ended_at = time.monotonic()

    def _sample(self, states: dict[str, ComponentState | None],
                history: dict[str, list[ComponentState | None]]) -> str | None:
        listed = {c.name: c for c in self.gg.component_list()}
        for name, version in self.expected.items():
            comp = listed.get(name)
            state = comp.state if comp else None
            _remember(states, history, name, state)
            if comp is None:
                return f"{name} is not in the component list"
            if comp.version != version:
                return f"{name} is at version {comp.version}, expected {version}"
            if comp.state not in STABLE_STATES:
                return f"{name} went {comp.state.value} while settling"
        return None

    def _watch(self) -> Stability:
        if not self._log.live:
            from hil.deploy.watch import watch_stable

            return watch_stable(self.gg, self.expected, self.period, poll=self.poll)
        assert self.started_at is not None
        end = self.started_at + self.period
        states: dict[str, ComponentState | None] = dict.fromkeys(self.expected)
        history: dict[str, list[ComponentState | None]] = {n: [] for n in self.expected}
        samples = 1
        problem = self._sample(states, history)
        while problem is None and not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            if not self._log.live:  # the stream died: sample the rest of the window
                self._sleep_or_stop(min(self.poll, left))
                samples += 1
                problem = self._sample(states, history)
                continue
            for rec in self._log.wait(min(left, _WAIT_SLICE)):
                if rec.event == "system-shutdown":
                    # the nucleus itself is going down (a reboot, a power cut the lab simulates
                    # gracefully): its services' STOPPING lines say nothing about the candidate.
                    # The hub is lost to the window; recovery finds out why (an outlet found off
                    # is the lab's problem, a nucleus dead on a live hub the candidate's).
                    raise DeviceUnreachable(f"{self.device}: the nucleus shut down at {rec.timestamp} during "
                                            f"'{self.title}': the hub is going down")
                change = _state_change(rec, self.expected)
                if change is None:
                    continue
                name, new = change
                _remember(states, history, name, new)
                if new not in STABLE_STATES:
                    problem = (f"{name} went {new.value} at {rec.timestamp} while settling "
                               "(greengrass.log)")
                    break
        if problem is None and not self._stop.is_set():
            samples += 1
            problem = self._sample(states, history)
        if self._stop.is_set() and problem is None:
            problem = "the window was ended before its time (the candidate was removed)"
        return Stability(problem is None, states, history,
                         f"{self.device}: {problem}" if problem else None, samples)

    def _sleep_or_stop(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def result(self, timeout: float | None = None) -> Stability:
        """Join the window (waiting out what is left of it); raises what the watch raised."""
        if self._thread is None:
            raise RuntimeError("window not started")
        limit = timeout if timeout is not None else self.period + self.gg.timeout * 3
        if self._thread.is_alive():  # what is left of the window is the joining check's wait
            with step(f"wait for the end of: {self.title}", device=self.device, kind="settle"):
                self._thread.join(limit)
        if self._thread.is_alive():
            raise HilError(f"{self.device}: {self.title} did not end within {limit:.0f}s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @property
    def seconds(self) -> float | None:
        """How long the window ran (None until it ended)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def stop(self) -> None:
        """End the window early (the candidate is being removed); ``result`` then says so."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.period + 5)


def _remember(states: dict[str, ComponentState | None], history: dict[str, list[ComponentState | None]],
              name: str, state: ComponentState | None) -> None:
    states[name] = state
    if not history[name] or history[name][-1] != state:
        history[name].append(state)
