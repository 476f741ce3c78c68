"""One component's lifecycle: NEW -> INSTALLED -> STARTING -> RUNNING/FINISHED, ERRORED, BROKEN.

Each service has one worker thread; requests (reinstall, restart, stop, close) are handed to it
through a condition variable so the state machine itself is single-threaded.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .logfmt import LogFile, Logs
from .recipe import Step, lifecycle_steps

NEW, INSTALLED, STARTING, RUNNING, STOPPING, FINISHED, ERRORED, BROKEN = (
    "NEW", "INSTALLED", "STARTING", "RUNNING", "STOPPING", "FINISHED", "ERRORED", "BROKEN")
SETTLED = (RUNNING, FINISHED)
GENERIC_LOGGER = "com.aws.greengrass.lifecyclemanager.GenericExternalService"
MAX_ERRORS = 3  # the third error from the same state makes the service BROKEN
RUN_KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a Run process

_thread_ids = itertools.count(1)


def _pool_thread_name() -> str:
    return f"pool-2-thread-{next(_thread_ids)}"


@dataclass
class RunAs:
    user: str | None  # None: the daemon's own user (no switch possible or wanted)
    group: str | None


class Service:
    """A built-in or external (recipe-backed) component."""

    def __init__(self, name: str, version: str, *, configuration: Any = None, builtin_state: str | None = None,
                 main_log: LogFile | None = None) -> None:
        self.name = name
        self.version = version
        self.configuration = configuration
        self.builtin = builtin_state is not None
        self.state = builtin_state or NEW
        self._main_log = main_log

    def snapshot(self) -> dict[str, Any]:
        return {"componentName": self.name, "version": self.version, "state": self.state,
                "configuration": self.configuration}

    def is_settled(self) -> bool:
        return self.state in SETTLED

    # built-ins ignore lifecycle requests
    def request(self, what: str) -> None:
        return None

    def close(self, wait: bool = True) -> None:
        return None


class ExternalService(Service):
    def __init__(self, name: str, version: str, *, lifecycle: dict[str, Any], configuration: Any,
                 hard_deps: list[str], root: Path, logs: Logs, env: dict[str, str], run_as: RunAs,
                 dependency_state: Callable[[str], str | None]) -> None:
        super().__init__(name, version, configuration=configuration, main_log=logs.main)
        self.lifecycle = lifecycle
        self.setenv, self.steps = lifecycle_steps(lifecycle)
        self.hard_deps = hard_deps
        self.root = root
        self.log = logs.component(name)
        self.env = env
        self.run_as = run_as
        self._dependency_state = dependency_state
        self._cond = threading.Condition()
        self._pending: list[str] = []
        self._errors: dict[str, int] = {}
        self._run_proc: subprocess.Popen[bytes] | None = None
        self._run_exit: int | None = None
        self._want_running = True
        self._closed = False
        self._busy = True  # until the worker has looked at the service once
        self._thread = threading.Thread(target=self._work, name=_pool_thread_name(), daemon=True)
        self._thread.start()

    # ---- requests from the deployment service / CLI ----------------------------------------

    def request(self, what: str) -> None:
        """what: reinstall | restart | stop | close."""
        with self._cond:
            self._pending.append(what)
            self._busy = True
            self._cond.notify_all()

    def is_settled(self) -> bool:
        with self._cond:
            return not self._busy and not self._pending and self.state in SETTLED

    def close(self, wait: bool = True) -> None:
        self.request("close")
        if wait:
            self._thread.join(timeout=60)

    # ---- state machine --------------------------------------------------------------------------

    def _set_state(self, new: str) -> None:
        with self._cond:
            old = self.state
            self.state = new
            self._cond.notify_all()
        if self._main_log and old != new:
            self._main_log.write("INFO", GENERIC_LOGGER, "service-set-state",
                                 context={"serviceName": self.name, "currentState": old, "newState": new})

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._pending:
                        cmd: str | None = self._pending.pop(0)
                        break
                    if self._progress_possible():
                        cmd = None
                        break
                    self._busy = False
                    self._cond.wait(timeout=0.2 if self._waiting_for_deps() else None)
                    if self._waiting_for_deps() and self._deps_ready():
                        cmd = None
                        break
                self._busy = True
            if cmd is not None:
                if self._handle(cmd):
                    return
                continue
            self._advance()

    def _waiting_for_deps(self) -> bool:
        return self._want_running and self.state == INSTALLED

    def _progress_possible(self) -> bool:
        if not self._want_running:
            return False
        if self.state in (NEW, ERRORED):
            return True
        if self.state == INSTALLED:
            return self._deps_ready()
        return self.state == RUNNING and self._run_exit is not None

    def _deps_ready(self) -> bool:
        return all(self._dependency_state(d) in SETTLED for d in self.hard_deps)

    def _handle(self, cmd: str) -> bool:
        if cmd == "close":
            self._stop(final_state=None)
            self._closed = True
            return True
        self._stop(final_state=None)
        self._errors.clear()
        if cmd == "stop":
            self._want_running = False
            self._set_state(FINISHED)
        elif cmd == "reinstall":
            self._want_running = True
            self._set_state(NEW)
        elif cmd == "restart":
            self._want_running = True
            self._set_state(INSTALLED)
        return False

    def _advance(self) -> None:
        state = self.state
        if state == NEW:
            rc = self._run_step("Install", NEW)
            if rc == 0:
                self._set_state(INSTALLED)
            else:
                self._errored(NEW)
        elif state == INSTALLED:
            self._set_state(STARTING)
            self._start()
        elif state == RUNNING and self._run_exit is not None:
            code, self._run_exit = self._run_exit, None
            self._run_proc = None
            if code == 0:
                self._set_state(FINISHED)
            else:
                self._errored(RUNNING)
        elif state == ERRORED:
            pass  # handled inside _errored

    def _start(self) -> None:
        if "Startup" in self.steps:
            rc = self._run_step("Startup", STARTING)
            if rc == 0:
                self._set_state(RUNNING)
            else:
                self._errored(STARTING)
        elif "Run" in self.steps:
            step = self.steps["Run"]
            if self._skip(step):
                self._set_state(FINISHED)
                return
            try:
                proc = self._spawn(step, STARTING)
            except OSError as exc:
                self.log.write("ERROR", self.name, "shell-runner-error", str(exc), self._ctx("Run"))
                self._errored(STARTING)
                return
            self._run_proc, self._run_exit = proc, None
            self._set_state(RUNNING)
            threading.Thread(target=self._watch_run, args=(proc,), name="Copier-wait", daemon=True).start()
        else:
            self._set_state(FINISHED)

    def _watch_run(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._cond:
            if self._run_proc is proc:
                self.log.write("INFO", self.name, "", "Run script exited",
                               {"exitCode": code, "serviceName": self.name, "currentState": self.state})
                self._run_exit = code
                self._busy = True
                self._cond.notify_all()

    def _errored(self, from_state: str) -> None:
        count = self._errors.get(from_state, 0) + 1
        self._errors[from_state] = count
        if count >= MAX_ERRORS:
            self._set_state(BROKEN)
            self._kill_run()
            self._run_step("Shutdown", BROKEN)
            self._want_running = False  # stays broken until a new deployment or restart
            return
        self._set_state(ERRORED)
        self._run_step("Recover", ERRORED)
        if from_state == NEW:
            self._set_state(NEW)
        else:
            self._set_state(STOPPING)
            self._kill_run()
            self._run_step("Shutdown", STOPPING)
            self._set_state(INSTALLED)

    def _stop(self, final_state: str | None) -> None:
        """Bring an active service down (Shutdown, then end the Run process)."""
        if self.state in (STARTING, RUNNING, ERRORED):
            self._set_state(STOPPING)
            self._run_step("Shutdown", STOPPING)
            self._kill_run()
            self._set_state(FINISHED)
        else:
            self._kill_run()
        if final_state:
            self._set_state(final_state)

    def _kill_run(self) -> None:
        with self._cond:
            proc, self._run_proc, self._run_exit = self._run_proc, None, None
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=RUN_KILL_GRACE)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()

    # ---- scripts ----------------------------------------------------------------------------------

    def _ctx(self, step: str) -> dict[str, object]:
        return {"scriptName": f"services.{self.name}.lifecycle.{step}", "serviceName": self.name,
                "currentState": self.state}

    def _skip(self, step: Step) -> bool:
        if not step.skipif:
            return False
        expr = step.skipif.strip()
        negate = expr.startswith("!")
        words = expr.lstrip("!").split(None, 1)
        if len(words) != 2:
            return False
        kind, arg = words[0].lower(), words[1].strip()
        if kind == "onpath":
            hit = shutil.which(arg, path=self.env.get("PATH")) is not None
        elif kind == "exists":
            hit = Path(arg).exists()
        else:
            return False
        skip = hit != negate
        if skip:
            self.log.write("INFO", self.name, "", f"Skipping {step.name} because {step.skipif}",
                           self._ctx(step.name))
        return skip

    def _spawn(self, step: Step, state: str) -> subprocess.Popen[bytes]:
        work = self.root / "work" / self.name
        env = dict(self.env)
        env.update(self.setenv)
        env.update(step.setenv)
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            if step.privileged:
                kwargs.update(user=0, group=0, extra_groups=[])
            elif self.run_as.user:
                kwargs.update(user=self.run_as.user, group=self.run_as.group or self.run_as.user, extra_groups=[])
                env["HOME"] = str(work)
        self.log.write("INFO", self.name, "shell-runner-start", "",
                       {**self._ctx(step.name), "command": json.dumps([step.script])})
        proc = subprocess.Popen(["sh", "-c", step.script], cwd=str(work), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kwargs)
        for stream, level, event in ((proc.stdout, "INFO", "stdout"), (proc.stderr, "WARN", "stderr")):
            threading.Thread(target=self._copy, args=(stream, level, event, step.name), name="Copier",
                             daemon=True).start()
        return proc

    def _copy(self, stream: Any, level: str, event: str, step: str) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.log.write(level, self.name, event, line, self._ctx(step))
        stream.close()

    def _run_step(self, name: str, state: str) -> int:
        """Run a lifecycle step to completion; 0 when absent or skipped, -1 on timeout."""
        step = self.steps.get(name)
        if step is None or self._skip(step):
            return 0
        try:
            proc = self._spawn(step, state)
        except OSError as exc:
            self.log.write("ERROR", self.name, "shell-runner-error", str(exc), self._ctx(name))
            return 1
        try:
            code = proc.wait(timeout=step.timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            self.log.write("ERROR", self.name, "", f"{name} script timed out",
                           {**self._ctx(name), "timeout": step.timeout})
            return -1
        self.log.write("INFO", self.name, "", f"{name} script exited",
                       {"exitCode": code, "serviceName": self.name, "currentState": self.state})
        return code


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
