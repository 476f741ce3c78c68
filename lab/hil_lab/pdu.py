"""The virtual rack's PDU: Tasmota's HTTP API, each outlet switching one hub container.

``GET /cm?cmnd=Power<N> On|Off|Toggle`` switches outlet N, ``GET /cm?cmnd=Power<N>``
reads it; both answer ``{"POWER<N>": "ON"|"OFF"}``. Anything else answers
``{"Command": "Unknown"}`` as Tasmota does. The outlet's state is the container's
state, so it survives across calls and across rackd restarts.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, urlparse

import docker
import docker.errors
from docker.models.containers import Container

log = logging.getLogger("lab.pdu")

STOP_GRACE = 5
"""Seconds between SIGTERM and SIGKILL on power-off (the hub's init shuts down in that time)."""
_POWER_RE = re.compile(r"^power(?P<n>\d*)(?:\s+(?P<arg>\S+))?$", re.IGNORECASE)
_ON = {"on", "1"}
_OFF = {"off", "0"}
_TOGGLE = {"toggle", "2"}


class Outlet(Protocol):
    def is_on(self) -> bool: ...

    def on(self) -> None: ...

    def off(self) -> None: ...


class ContainerOutlet:
    """An outlet whose load is a hub container: off = docker stop, on = start."""

    def __init__(self, client: docker.DockerClient, container_name: str,
                 power_on: Callable[[Container], None] | None = None) -> None:
        self.client = client
        self.container_name = container_name
        # how to start the container: the console server attaches first to see the boot
        self._power_on = power_on or (lambda c: c.start())
        self._lock = threading.Lock()

    def _container(self) -> Container:
        return self.client.containers.get(self.container_name)

    def is_on(self) -> bool:
        try:
            return self._container().status in ("running", "paused", "restarting")
        except docker.errors.NotFound:
            return False

    def on(self) -> None:
        with self._lock:
            container = self._container()
            if container.status == "paused":
                return  # a hung hub still has power
            if container.status != "running":
                self._power_on(container)

    def off(self) -> None:
        with self._lock:
            try:
                container = self._container()
            except docker.errors.NotFound:
                return
            if container.status == "paused":
                container.unpause()  # a power cut also ends a hang
            if container.status in ("running", "paused", "restarting"):
                container.stop(timeout=STOP_GRACE)


class TasmotaPdu:
    """Interprets Tasmota ``cmnd`` strings against a set of numbered outlets."""

    def __init__(self, outlets: Mapping[int, Outlet]) -> None:
        self.outlets = outlets

    def command(self, cmnd: str) -> dict[str, str]:
        m = _POWER_RE.match(cmnd.strip())
        if not m:
            return {"Command": "Unknown"}
        n = int(m.group("n") or "1")
        outlet = self.outlets.get(n)
        if outlet is None:
            return {"Command": "Unknown"}
        arg = (m.group("arg") or "").lower()
        if arg in _ON or (arg in _TOGGLE and not outlet.is_on()):
            outlet.on()
        elif arg in _OFF or arg in _TOGGLE:
            outlet.off()
        elif arg:
            return {"Command": "Unknown"}
        return {f"POWER{n}": "ON" if outlet.is_on() else "OFF"}


def make_server(pdu: TasmotaPdu, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server for ``pdu`` (call ``serve_forever``); raises OSError if the port is taken."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "Tasmota-virtual-lab"

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path != "/cm":
                self._answer(404, {"Error": "not found"})
                return
            cmnd = parse_qs(url.query).get("cmnd", [""])[0]
            try:
                body = pdu.command(cmnd)
            except docker.errors.DockerException as exc:
                log.error("PDU command %r failed: %s", cmnd, exc)
                self._answer(500, {"Error": str(exc)})
                return
            log.info("PDU %r -> %s", cmnd, body)
            self._answer(200, body)

        def _answer(self, status: int, body: Mapping[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
