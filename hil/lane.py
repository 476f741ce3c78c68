"""A hub's background lane: evidence gathered beside the hub's tests, one job after another.

Some evidence is mostly waiting on a channel the tests do not use: the console's login
dialogs wait out login's fail delay (about 3 s per refused login on Debian). A ``Lane``
runs such jobs in a thread of its own, in the order they were submitted, while the hub's
tests go on over SSH; the check that judges a piece of evidence joins its job (``result``).

Jobs that load the hub must stay out of measurements: ``quiet()`` (a latency sampling
window) waits until the running job reaches a ``checkpoint`` - jobs call it between their
steps, e.g. between two logins - and holds it there until the measurement is over.
``drain()`` waits until every queued job is done (a power cycle, a test that uses the
console itself). Every job's steps carry the lane's name on the timeline (``in_lane``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from hil.steps import in_lane

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Job:
    def __init__(self, key: str, fn: Callable[[], Any]) -> None:
        self.key = key
        self.fn = fn
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Lane:
    """One hub's background jobs (see the module doc); ``close`` ends the thread after the queue."""

    def __init__(self, device: str, name: str) -> None:
        self.device = device
        self.name = name
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._queue: list[_Job] = []
        self._running: _Job | None = None
        self._parked = False
        self._quiet = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- submitting and joining --------------------------------------------------------------
    def submit(self, key: str, fn: Callable[[], Any]) -> None:
        """Queue ``fn`` under ``key`` (once: a key already submitted is left alone)."""
        with self._cond:
            if key in self._jobs or self._closed:
                return
            job = _Job(key, fn)
            self._jobs[key] = job
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"{self.device}-{self.name}",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def submitted(self, key: str) -> bool:
        with self._cond:
            return key in self._jobs

    def result(self, key: str, fn: Callable[[], T]) -> T:
        """The value of job ``key`` (waiting for it; its exception is raised again); a key never
        submitted runs ``fn`` here and now, like any other evidence."""
        with self._cond:
            job = self._jobs.get(key)
        if job is None:
            return fn()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[no-any-return]

    # -- the thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                self._wait_while_quiet()
                job = self._queue.pop(0)
                self._running = job
            try:
                with in_lane(self.name, device=self.device):
                    job.value = job.fn()
            except BaseException as exc:  # handed to whoever joins the job
                job.error = exc
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()
                job.done.set()

    def _wait_while_quiet(self) -> None:
        self._parked = True
        self._cond.notify_all()
        while self._quiet:
            self._cond.wait()
        self._parked = False

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        """A job's wait that loads nothing on the hub (login's fail delay): a quiet measurement may
        start meanwhile; the job goes on after the block only once no measurement runs."""
        with self._cond:
            self._parked = True
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                while self._quiet:
                    self._cond.wait()
                self._parked = False

    def checkpoint(self) -> None:
        """Called by a job between its steps: waits here while a quiet measurement runs."""
        with self._cond:
            if self._quiet:
                log.debug("%s: %s lane pauses for a quiet measurement", self.device, self.name)
                self._wait_while_quiet()

    # -- what the tests hold ---------------------------------------------------------------------
    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Nothing of this lane runs inside the block (the running job finishes its step first)."""
        with self._cond:
            self._quiet += 1
            while self._running is not None and not self._parked:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._quiet -= 1
                self._cond.notify_all()

    def drain(self) -> None:
        """Wait until every job submitted so far is done."""
        with self._cond:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.done.wait()

    def close(self) -> None:
        """No new jobs; the thread ends once the queue is empty (waited for)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
