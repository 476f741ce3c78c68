"""Serial consoles of the virtual rack, served like ser2net in raw TCP mode.

Each hub's container runs without a tty; its PID 1 prints the boot log on stdout
and then bridges a getty to its stdin/stdout. A ``ConsolePort`` listens on the
lab host (127.0.0.1:47100+N) for the whole life of rackd: bytes from TCP clients
go to the container's stdin, the container's stdout goes to every client. The
listener survives a power-off (a connected client just sees silence, as with a
real UART) and shows the next boot from its first line: rackd attaches to a
stopped container before starting it (like `docker start -a`); a start by anyone
else is caught up from the container's log since its StartedAt.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

import docker
import docker.errors
from docker.models.containers import Container

from hil_lab.topology import LOOPBACK, HubSpec

log = logging.getLogger("lab.console")

BOOT_LOG_BYTES = 256 * 1024
REPLAY_WINDOW = 120.0
"""A client connecting this long after power-on still gets the boot log replayed: the
output from power-on until the first byte anyone typed (never somebody's session)."""
REPLAY_DELAY = 0.3
"""Seconds between a client's connect and the replay (see _welcome)."""
WATCH_INTERVAL = 1.0
HEADER = struct.Struct(">BxxxL")


class StreamDemuxer:
    """Splits Docker's multiplexed attach stream (8-byte headers) into payload bytes."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._pending += data
        out = bytearray()
        while len(self._pending) >= HEADER.size:
            _stream, length = HEADER.unpack_from(self._pending)
            if len(self._pending) < HEADER.size + length:
                break
            out += self._pending[HEADER.size:HEADER.size + length]
            del self._pending[:HEADER.size + length]
        return bytes(out)


class _Attachment:
    """One attach stream to the container: from one start until the container stops."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.write_lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.write_lock:
            self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _parse_docker_time(value: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds; Python parses microseconds."""
    head, _, frac = value.rstrip("Z").partition(".")
    stamp = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    return stamp + (float(f"0.{frac}") if frac else 0.0)


class ConsolePort:
    """One hub's console server: a TCP listener bridged to the hub container's stdio."""

    def __init__(self, client: docker.DockerClient, hub: HubSpec, *, host: str = LOOPBACK,
                 port: int | None = None) -> None:
        self.client = client
        self.hub = hub
        self.host = host
        self.port = hub.console_port if port is None else port
        self._lock = threading.RLock()
        self._clients: set[socket.socket] = set()
        self._waiting: dict[socket.socket, bytearray] = {}
        """New clients in their welcome delay: live output queued for them, in order."""
        self._attachment: _Attachment | None = None
        self._boot_log = bytearray()
        self._booted_at = 0.0
        self._interacted = False
        """Someone typed since power-on: later output is a session, not the boot log."""
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None

    # ------------------------------------------------------------------ lifecycle

    def serve(self) -> None:
        """Bind the listener (raises OSError if the port is taken) and start the threads."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(8)
        self._listener = listener
        self._attach_if_running()  # a hub already on when rackd starts: attached before we are ready
        self._thread(self._accept_loop, "accept")
        self._thread(self._watch_loop, "watch")

    def close(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            for conn in list(self._clients):
                with contextlib.suppress(OSError):
                    conn.close()
            if self._attachment is not None:
                self._attachment.close()

    def _thread(self, target: Callable[..., None], what: str, *args: object) -> None:
        threading.Thread(target=target, args=args, name=f"{self.hub.name}-{what}", daemon=True).start()

    # ------------------------------------------------------------------ power

    def power_on(self, container: Container) -> None:
        """Attach to the stopped container, then start it: the console sees the first line."""
        with self._lock:
            container.reload()
            if self._attachment is not None and container.status != "running":
                # a stream from the last boot whose EOF the relay has not seen yet: replace it
                stale, self._attachment = self._attachment, None
                stale.close()
            if self._attachment is None:
                self._attach(container, catch_up_since=None)
        container.start()

    def _attach(self, container: Container, *, catch_up_since: float | None) -> None:
        """Open the attach stream (caller holds the lock) and start relaying it."""
        raw = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        sock: socket.socket = raw._sock
        sock.settimeout(None)
        attachment = _Attachment(sock)
        self._attachment = attachment
        self._boot_log.clear()
        self._booted_at = time.monotonic()
        self._interacted = False
        log.info("%s: console attached (%s)", self.hub.name,
                 "power-on" if catch_up_since is None else "started elsewhere: catching up")
        if catch_up_since is not None:
            self._catch_up(container, catch_up_since)
        self._thread(self._relay_container, "relay", attachment)

    def _catch_up(self, container: Container, since: float) -> None:
        """Output the container printed between its start (by someone else) and our attach."""
        try:
            text = container.logs(stdout=True, stderr=True, since=since, until=time.time())
        except docker.errors.DockerException as exc:
            log.warning("%s: cannot replay the boot log: %s", self.hub.name, exc)
            return
        self._broadcast(bytes(text))

    # ------------------------------------------------------------------ threads

    def _relay_container(self, attachment: _Attachment) -> None:
        demux = StreamDemuxer()
        try:
            while True:
                data = attachment.sock.recv(65536)
                if not data:
                    break
                payload = demux.feed(data)
                if payload:
                    self._broadcast(payload)
        except OSError as exc:
            log.info("%s: attach stream ended: %s", self.hub.name, exc)
        finally:
            attachment.close()
            with self._lock:
                if self._attachment is attachment:
                    self._attachment = None
                    self._boot_log.clear()  # powered off: nothing to replay
            log.info("%s: console detached (hub powered off)", self.hub.name)

    def _broadcast(self, data: bytes) -> None:
        with self._lock:
            if not self._interacted and len(self._boot_log) < BOOT_LOG_BYTES:
                self._boot_log += data[:BOOT_LOG_BYTES - len(self._boot_log)]
            for queued in self._waiting.values():
                queued += data
            clients = list(self._clients)
        for conn in clients:
            try:
                conn.sendall(data)
            except OSError:
                self._drop(conn)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            log.info("%s: console client %s:%d connected", self.hub.name, *_addr[:2])
            welcomed = threading.Event()
            with self._lock:
                # what the client will be shown first: the boot so far (a late client of a
                # fresh boot), then everything printed from now on, nothing twice, nothing lost
                recent = self._boot_log and time.monotonic() - self._booted_at < REPLAY_WINDOW
                replay = bytes(self._boot_log) if recent else b""
                self._waiting[conn] = bytearray()
            self._thread(self._welcome, "welcome", conn, replay, welcomed)
            self._thread(self._relay_client, "client", conn, welcomed)

    def _welcome(self, conn: socket.socket, replay: bytes, welcomed: threading.Event) -> None:
        """Send the replay and the output queued since connect, then relay live output. Not at
        once: pyserial's socket:// open() discards whatever already arrived, which would eat it."""
        time.sleep(REPLAY_DELAY)
        try:
            with self._lock:
                queued = self._waiting.pop(conn, None)
                if queued is None or conn.fileno() < 0:
                    return  # the client left during the delay
                with contextlib.suppress(OSError):
                    conn.sendall(replay + bytes(queued))
                self._clients.add(conn)
        finally:
            welcomed.set()

    def _relay_client(self, conn: socket.socket, welcomed: threading.Event) -> None:
        try:
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                # keys typed before the client gets output would have their answer (a
                # login prompt) sent to nobody: hold them until the welcome is done
                welcomed.wait(REPLAY_DELAY + 2.0)
                with self._lock:
                    self._interacted = True
                # do not wait for the watcher's next round if the hub came up meanwhile
                attachment = self._attach_if_running()
                if attachment is None:
                    continue  # the hub is off: typing into a dead UART goes nowhere
                try:
                    attachment.send(data)
                except OSError:
                    continue
        except OSError:
            pass
        finally:
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            self._clients.discard(conn)
            self._waiting.pop(conn, None)
        with contextlib.suppress(OSError):
            conn.close()

    def _watch_loop(self) -> None:
        """Attach to a hub that someone else started (docker start, restart, unpause...)."""
        while not self._stopping.wait(WATCH_INTERVAL):
            self._attach_if_running()

    def _attach_if_running(self) -> _Attachment | None:
        """The current attachment; attaches first if the container runs and we are not attached."""
        with self._lock:
            if self._attachment is not None:
                return self._attachment
            try:
                container = self.client.containers.get(self.hub.container)
                if container.status in ("running", "paused"):
                    started = _parse_docker_time(container.attrs["State"]["StartedAt"])
                    self._attach(container, catch_up_since=started)
            except docker.errors.NotFound:
                pass
            except docker.errors.DockerException as exc:
                log.warning("%s: watching the container failed: %s", self.hub.name, exc)
            return self._attachment
