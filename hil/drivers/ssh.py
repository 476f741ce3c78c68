"""SSH driver: one persistent, pinned paramiko connection per hub.

Why it is built this way (see docs/performance-notes.md):
- paramiko sets no socket options; Nagle plus delayed ACK add ~40 ms to every
  request/response. We open the socket ourselves with TCP_NODELAY and hand it over.
- Host keys are pinned: only the inventory's known_hosts is loaded and a
  RejectPolicy refuses unknown hosts; a changed key is never accepted.
- One connection for the whole run; a dropped transport is re-established on the
  next call, and a command is retried once when it failed before it was sent.
"""

from __future__ import annotations

import logging
import select
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import paramiko

from hil.drivers.base import CommandResult, sudo_argv
from hil.errors import CommandTimeout, DeviceUnreachable, HostKeyMismatch
from hil.inventory import SshEndpoint
from hil.steps import step
from hil.timeouts import DEFAULT_TIMEOUTS, Timeouts

log = logging.getLogger("hil.drivers.ssh")

_READ_CHUNK = 65536
_POLL_TICK = 0.1
"""Upper bound on one wait for EOF after the exit status."""
_DRAIN_TICK = 0.01
"""How often output is drained while a command runs (the exit status wakes us at once)."""


class _PinnedHostKeys(paramiko.RejectPolicy):
    """RejectPolicy whose refusal says which host, which key and which file."""

    def __init__(self, device: str, known_hosts: Path) -> None:
        self.device = device
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
        raise HostKeyMismatch(
            f"{self.device}: host {hostname} is not in {self.known_hosts} (it offered a "
            f"{key.get_name()} key, SHA256:{_fingerprint(key)}); the harness never trusts an "
            "unknown host key"
        )


def _fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint.removeprefix("SHA256:") if hasattr(key, "fingerprint") else key.get_base64()


class SshConnection:
    """A hub's SSH channel; implements ``hil.drivers.base.Shell``."""

    def __init__(self, device: str, endpoint: SshEndpoint, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self.device = device
        self.endpoint = endpoint
        self.timeouts = timeouts
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self.connects = 0
        """How many times a connection was established (1 + reconnects)."""

    # -- connection ----------------------------------------------------------
    def connect(self) -> None:
        """Open and authenticate the connection; raises DeviceUnreachable / HostKeyMismatch."""
        with self._lock:
            self._drop()
            ep = self.endpoint
            with step(f"ssh connect {ep.user}@{ep.host}:{ep.port}", device=self.device):
                sock = self._open_socket()
                client = paramiko.SSHClient()
                # Only the inventory's known_hosts: no ~/.ssh, no system file.
                try:
                    client.get_host_keys().load(str(ep.known_hosts))
                except (OSError, paramiko.SSHException) as exc:
                    sock.close()
                    raise HostKeyMismatch(
                        f"{self.device}: cannot read known_hosts {ep.known_hosts}: {exc}") from None
                client.set_missing_host_key_policy(_PinnedHostKeys(self.device, ep.known_hosts))
                t = self.timeouts.ssh_connect
                try:
                    client.connect(
                        hostname=ep.host, port=ep.port, username=ep.user,
                        key_filename=str(ep.key_file), sock=sock,
                        timeout=t, banner_timeout=t, auth_timeout=t, channel_timeout=t,
                        allow_agent=False, look_for_keys=False,
                    )
                except HostKeyMismatch:
                    client.close()
                    raise
                except paramiko.BadHostKeyException as exc:
                    client.close()
                    raise HostKeyMismatch(
                        f"{self.device}: host key of {ep.known_hosts_name} CHANGED: it offered "
                        f"{exc.key.get_name()} SHA256:{_fingerprint(exc.key)} but {ep.known_hosts} "
                        f"pins SHA256:{_fingerprint(exc.expected_key)}; refusing to connect "
                        "(re-provisioned hub, or someone in the middle)") from None
                except paramiko.AuthenticationException as exc:
                    client.close()
                    raise DeviceUnreachable(
                        f"{self.device}: SSH authentication as {ep.user} with key {ep.key_file} "
                        f"failed: {exc}") from None
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    client.close()
                    raise DeviceUnreachable(
                        f"{self.device}: SSH handshake with {ep.host}:{ep.port} failed: "
                        f"{type(exc).__name__}: {exc}") from None
                transport = client.get_transport()
                assert transport is not None
                transport.set_keepalive(max(1, round(self.timeouts.ssh_keepalive)))
                self._client = client
                self.connects += 1

    def _open_socket(self) -> socket.socket:
        ep = self.endpoint
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=self.timeouts.ssh_connect)
        except OSError as exc:
            raise DeviceUnreachable(
                f"{self.device}: no TCP connection to {ep.host}:{ep.port} within "
                f"{self.timeouts.ssh_connect:g}s: {exc.strerror or exc}") from None
        # Without TCP_NODELAY every command waits ~40 ms on Nagle + delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    def _drop(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # closing a dead session must not mask the real problem
                log.debug("sftp close failed", exc_info=True)
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def alive(self) -> bool:
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active() and t.is_authenticated())

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> SshConnection:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure(self) -> paramiko.Transport:
        if not self.alive():
            if self._client is not None:
                log.info("%s: SSH transport dropped, reconnecting", self.device)
            self.connect()
        assert self._client is not None
        t = self._client.get_transport()
        assert t is not None
        return t

    @property
    def transport(self) -> paramiko.Transport:
        """The pinned, authenticated transport (for testinfra / Docker over SSH)."""
        with self._lock:
            return self._ensure()

    @property
    def client(self) -> paramiko.SSHClient:
        with self._lock:
            self._ensure()
            assert self._client is not None
            return self._client

    # -- commands ------------------------------------------------------------
    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None, check: bool = False) -> CommandResult:
        """Run ``argv`` (no shell) and wait for it; raises CommandTimeout past ``timeout``."""
        if isinstance(argv, str):
            raise TypeError("argv must be a sequence of arguments, not a shell string")
        full = sudo_argv(argv) if sudo else list(argv)
        command = shlex.join(full)
        limit = timeout if timeout is not None else self.timeouts.ssh_command
        with step(f"ssh: {command}", device=self.device, timeout=limit) as st:
            result = st.record(self._run_once_or_retry(tuple(argv), command, limit, stdin))
            st.attach("stdout", result.stdout)
            st.attach("stderr", result.stderr)
        if check:
            result.check()
        return result

    def _run_once_or_retry(self, argv: tuple[str, ...], command: str, limit: float,
                           stdin: str | None) -> CommandResult:
        with self._lock:
            t0 = time.perf_counter()
            try:
                chan = self._ensure().open_session(timeout=self.timeouts.ssh_connect)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                # Nothing was sent yet: the transport died under us. Reconnect and retry once.
                log.info("%s: opening a channel failed (%s); reconnecting", self.device, exc)
                self.connect()
                chan = self._ensure().open_session(timeout=self.timeouts.ssh_connect)
        try:
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            chan.close()
            raise DeviceUnreachable(
                f"{self.device}: SSH connection failed while starting {command!r}: {exc}") from None
        try:
            if stdin is not None:
                chan.sendall(stdin.encode())
            chan.shutdown_write()  # EOF on stdin, so a command reading it cannot hang
            status, out, err = self._collect(chan, t0 + limit, command, limit)
        finally:
            chan.close()
        return CommandResult(argv=argv, exit_status=status, stdout=out, stderr=err,
                             duration=time.perf_counter() - t0, channel="ssh")

    def _collect(self, chan: paramiko.Channel, deadline: float, command: str,
                 limit: float) -> tuple[int, str, str]:
        out: list[bytes] = []
        err: list[bytes] = []
        while True:
            while chan.recv_ready():
                out.append(chan.recv(_READ_CHUNK))
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(_READ_CHUNK))
            done = chan.exit_status_ready()
            # sshd may send exit-status before the last output: like OpenSSH's client, wait
            # for EOF too, so no output is lost.
            if done and chan.eof_received:
                break
            if chan.closed and not done:
                raise DeviceUnreachable(
                    f"{self.device}: SSH channel closed before {command!r} reported an exit status")
            left = deadline - time.perf_counter()
            if left <= 0:
                raise CommandTimeout(f"{self.device}: {command!r} did not finish within {limit:g}s")
            if done:
                # chan.fileno() is a pipe paramiko sets on output and on EOF.
                select.select([chan], [], [], min(left, _POLL_TICK))
            else:
                # The exit status wakes us at once; output is drained every tick meanwhile
                # (the 2 MiB channel window keeps the sender busy in between).
                chan.status_event.wait(min(left, _DRAIN_TICK))
        status = chan.recv_exit_status()
        return (status, b"".join(out).decode("utf-8", "replace"),
                b"".join(err).decode("utf-8", "replace"))

    # -- files ---------------------------------------------------------------
    def _sftp_client(self) -> paramiko.SFTPClient:
        self._ensure()
        if self._sftp is None:
            assert self._client is not None
            self._sftp = self._client.open_sftp()
        return self._sftp

    def put(self, local: Path, remote: str) -> None:
        """Upload ``local`` to ``remote`` (paramiko's put is pipelined)."""
        size = Path(local).stat().st_size
        with self._lock, step(f"sftp put {local} -> {remote}", device=self.device, bytes=size):
            try:
                self._sftp_client().put(str(local), remote)
            except (paramiko.SSHException, EOFError) as exc:
                # SFTP sessions die with the transport; a put is idempotent, so retry once.
                log.info("%s: sftp put failed (%s); reconnecting", self.device, exc)
                self.connect()
                self._sftp_client().put(str(local), remote)

    def get(self, remote: str, local: Path) -> None:
        """Download ``remote`` to ``local`` (paramiko's get prefetches)."""
        with self._lock, step(f"sftp get {remote} -> {local}", device=self.device):
            try:
                self._sftp_client().get(remote, str(local))
            except (paramiko.SSHException, EOFError) as exc:
                log.info("%s: sftp get failed (%s); reconnecting", self.device, exc)
                self.connect()
                self._sftp_client().get(remote, str(local))
