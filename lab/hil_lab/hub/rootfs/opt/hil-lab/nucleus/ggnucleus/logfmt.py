"""Log files in the aws-greengrass-logging-java text format.

    <ISO-8601 instant> [<LEVEL>] (<thread>) <logger>: <eventType>. <message>. {k=v, k=v}

Empty parts are omitted.
"""

from __future__ import annotations

import datetime as _dt
import threading
from pathlib import Path


def instant() -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def format_line(level: str, thread: str, logger: str, event: str = "", message: str = "",
                context: dict[str, object] | None = None) -> str:
    parts = [f"{instant()} [{level}] ({thread}) {logger}:"]
    if event:
        parts.append(f" {event}.")
    if message:
        parts.append(f" {message}.")
    if context:
        parts.append(" {" + ", ".join(f"{k}={v}" for k, v in context.items()) + "}")
    return "".join(parts)


class LogFile:
    """One append-only log file shared by threads; each line is written and flushed whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, level: str, logger: str, event: str = "", message: str = "",
              context: dict[str, object] | None = None, thread: str | None = None) -> None:
        line = format_line(level, thread or threading.current_thread().name, logger, event, message, context)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


class Logs:
    """logs/greengrass.log plus one logs/<Component>.log per component."""

    def __init__(self, logs_dir: Path) -> None:
        self.dir = logs_dir
        self.main = LogFile(logs_dir / "greengrass.log")
        self._components: dict[str, LogFile] = {}
        self._lock = threading.Lock()

    def component(self, name: str) -> LogFile:
        with self._lock:
            if name not in self._components:
                self._components[name] = LogFile(self.dir / f"{name}.log")
            return self._components[name]
