"""SSH driver: one persistent, pinned paramiko connection per hub.

Why it is built this way (see docs/performance-notes.md):
- paramiko sets no socket options; Nagle plus delayed ACK add ~40 ms to every
  request/response. We open the socket ourselves with TCP_NODELAY and hand it over.
- Host keys are pinned: only the inventory's known_hosts is loaded and a
  RejectPolicy refuses unknown hosts; a changed key is never accepted.
- One connection for the whole run; a dropped transport is re-established on the
  next call, and a command is retried once when it failed before it was sent.
- Commands go to a persistent shell per thread on that connection (hil/drivers/ssh_shell.py:
  framed lines, about a persistent channel's round trip per command instead of an exec
  channel's open/fork/close); large stdin, and a hub where no shell can be kept, use exec
  channels. Same semantics either way (``persistent=False`` forces exec channels).
"""

from __future__ import annotations

import contextlib
import logging
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import paramiko

from hil.drivers.base import CommandResult, sudo_argv
from hil.drivers.ssh_shell import STDIN_MAX, PersistentShell, ShellGone
from hil.errors import CommandTimeout, DeviceUnreachable, HostKeyMismatch, InfrastructureError
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


SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                "/usr/libexec/sftp-server", "/usr/lib/ssh/sftp-server")
"""Where distributions install OpenSSH's sftp-server (Debian first); run through sudo for root SFTP."""
_ROOT_SFTP = ('for p in "$@"; do if [ -x "$p" ]; then exec "$p"; fi; done; '
              'echo "hil: no sftp-server" >&2; exit 127')


class TransferFailed(InfrastructureError):
    """The hub's SFTP server refused a transfer (missing folder, permission, disk full)."""


class _TransferDeadline(Exception):
    """Internal: raised from the progress callback to end a transfer past its deadline."""


def dead_peer_options(sock: socket.socket, timeouts: Timeouts) -> None:
    """Make the kernel give up on a peer that stopped answering within ``ssh_dead_peer`` seconds:
    keepalive probes on an idle connection, TCP_USER_TIMEOUT for unacknowledged data (without it
    Linux retransmits for ~15 minutes). Options this platform lacks are skipped."""
    dead = timeouts.ssh_dead_peer
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", max(1, int(dead / 2))), ("TCP_KEEPINTVL", max(1, int(dead / 6))),
                        ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", int(dead * 1000))):
        opt = getattr(socket, name, None)
        if opt is not None:
            sock.setsockopt(socket.IPPROTO_TCP, opt, value)


class SshConnection:
    """A hub's SSH channel; implements ``hil.drivers.base.Shell``."""

    def __init__(self, device: str, endpoint: SshEndpoint, timeouts: Timeouts = DEFAULT_TIMEOUTS, *,
                 persistent: bool = True) -> None:
        self.device = device
        self.endpoint = endpoint
        self.timeouts = timeouts
        self.persistent = persistent
        """Run commands on a persistent shell per thread (False: an exec channel per command)."""
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.RLock()
        self._shells = threading.local()
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
        dead_peer_options(sock, self.timeouts)
        return sock

    def _drop(self) -> None:
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
            result = st.record(self._run_once_or_retry(tuple(argv), full, command, limit, stdin))
            st.attach("stdout", result.stdout)
            st.attach("stderr", result.stderr)
        if check:
            result.check()
        return result

    def _run_once_or_retry(self, argv: tuple[str, ...], full: list[str], command: str, limit: float,
                           stdin: str | None) -> CommandResult:
        if self.persistent and (stdin is None or len(stdin) <= STDIN_MAX):
            for attempt in (1, 2):
                t0 = time.perf_counter()
                shell = self._shell()
                if shell is None:
                    break  # no shell can be kept on this hub: exec channels
                try:
                    status, out, err = shell.run(full, stdin, t0 + limit, command)
                except CommandTimeout:
                    self._forget_shell()
                    raise CommandTimeout(
                        f"{self.device}: {command!r} did not finish within {limit:g}s") from None
                except ShellGone as exc:
                    self._forget_shell()
                    if not shell.answered and self._transport_now() is not None and self.alive():
                        # a shell that ends before its first answer (a forced command, no sh):
                        # this hub gets exec channels from now on
                        log.info("%s: the persistent shell ended at once (%s); exec channels",
                                 self.device, exc)
                        self.persistent = False
                        break
                    if exc.sent or attempt == 2:
                        raise DeviceUnreachable(f"{self.device}: SSH connection failed while running "
                                                f"{command!r}: {exc}") from None
                    continue  # nothing was sent: a fresh shell (reconnecting if need be), once
                return CommandResult(argv=argv, exit_status=status, stdout=out.decode("utf-8", "replace"),
                                     stderr=err.decode("utf-8", "replace"),
                                     duration=time.perf_counter() - t0, channel="ssh")
        return self._run_exec(argv, command, limit, stdin)

    def _shell(self) -> PersistentShell | None:
        """This thread's persistent shell (started on first use; None: the hub will not keep one)."""
        shell: PersistentShell | None = getattr(self._shells, "shell", None)
        if shell is not None and shell.usable and self._client is not None \
                and shell.transport is self._client.get_transport():
            return shell
        self._forget_shell()
        with self._lock:
            try:
                transport = self._ensure()
                shell = PersistentShell(transport, open_timeout=self.timeouts.ssh_connect)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                log.info("%s: no persistent shell (%s); reconnecting for exec channels", self.device, exc)
                self.connect()
                return None
        self._shells.shell = shell
        return shell

    def _transport_now(self) -> paramiko.Transport | None:
        return self._client.get_transport() if self._client is not None else None

    def _forget_shell(self) -> None:
        shell: PersistentShell | None = getattr(self._shells, "shell", None)
        if shell is not None:
            shell.close()
            self._shells.shell = None

    def _run_exec(self, argv: tuple[str, ...], command: str, limit: float,
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

    # -- streams -------------------------------------------------------------
    def stream(self, argv: Sequence[str], *, sudo: bool = False) -> LineStream:
        """Start ``argv`` on a channel of its own and hand back its output lines as they arrive
        (e.g. ``tail -F`` of a log): commands on this connection keep flowing meanwhile."""
        full = sudo_argv(argv) if sudo else list(argv)
        command = shlex.join(full)
        with step(f"ssh stream: {command}", device=self.device):
            with self._lock:
                chan = self._ensure().open_session(timeout=self.timeouts.ssh_connect)
            try:
                chan.exec_command(command)
                chan.shutdown_write()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                chan.close()
                raise DeviceUnreachable(f"{self.device}: SSH connection failed while starting "
                                        f"{command!r}: {exc}") from None
        return LineStream(chan, self.device, command)

    # -- files ---------------------------------------------------------------
    def _open_sftp(self, sudo: bool) -> paramiko.SFTPClient:
        """A private SFTP session for one transfer (as root through ``sudo -n`` when asked).

        Only opening it holds the connection lock: commands keep flowing during a long upload.
        No byte may take longer than ``ssh_dead_peer`` to move (the channel's timeout)."""
        with self._lock:
            chan = self._ensure().open_session(timeout=self.timeouts.ssh_connect)
        try:
            chan.settimeout(self.timeouts.ssh_dead_peer)
            if sudo:
                chan.exec_command(shlex.join(sudo_argv(["sh", "-c", _ROOT_SFTP, "hil-sftp", *SFTP_SERVERS])))
            else:
                chan.invoke_subsystem("sftp")
            return paramiko.SFTPClient(chan)
        except BaseException:
            chan.close()
            raise

    def put(self, local: Path, remote: str, *, sudo: bool = False) -> None:
        """Upload ``local`` to ``remote`` (pipelined) within ``Timeouts.transfer(size)``."""
        size = Path(local).stat().st_size
        with step(f"sftp put {local} -> {remote}", device=self.device, bytes=size, sudo=sudo):
            self._transfer(f"upload of {local} to {remote}", size, sudo,
                           lambda sftp, progress: _put_file(sftp, Path(local), remote, progress))

    def get(self, remote: str, local: Path, *, sudo: bool = False) -> None:
        """Download ``remote`` to ``local`` (prefetched) within ``Timeouts.transfer(size)``."""
        with step(f"sftp get {remote} -> {local}", device=self.device, sudo=sudo):
            self._transfer(f"download of {remote}", None, sudo,
                           lambda sftp, progress: _get_file(sftp, remote, Path(local), progress))

    def _transfer(self, what: str, size: int | None, sudo: bool,
                  move: Callable[[paramiko.SFTPClient, Callable[[int, int], None]], object]) -> None:
        """Run ``move`` on a fresh SFTP session, bounded by the transfer deadline (from the size; a
        download learns it from the first progress report) and by ``ssh_dead_peer`` per byte. A
        transfer that broke with the connection is retried once (both directions are idempotent)."""
        t0 = time.monotonic()
        limit = self.timeouts.transfer(size or 0)
        for attempt in (1, 2):
            sftp = self._open_sftp(sudo)
            chan = sftp.get_channel()
            moved = 0

            def progress(done: int, total: int, chan: paramiko.Channel | None = chan) -> None:
                nonlocal limit, moved
                moved = done
                limit = max(limit, self.timeouts.transfer(total))
                left = t0 + limit - time.monotonic()
                if left <= 0:
                    raise _TransferDeadline
                if chan is not None:
                    chan.settimeout(max(0.05, min(self.timeouts.ssh_dead_peer, left)))

            try:
                move(sftp, progress)
                return
            except _TransferDeadline:
                raise CommandTimeout(f"{self.device}: {what} did not finish within {limit:.0f}s "
                                     f"(at least {self.timeouts.transfer_min_rate / 1024:.0f} KiB/s; "
                                     f"{moved} bytes moved)") from None
            except TimeoutError:
                self._drop_dead()
                if time.monotonic() - t0 >= limit:
                    raise CommandTimeout(f"{self.device}: {what} did not finish within {limit:.0f}s "
                                         f"({moved} bytes moved)") from None
                raise DeviceUnreachable(f"{self.device}: {what}: no progress for "
                                        f"{self.timeouts.ssh_dead_peer:g}s after {moved} bytes: the hub "
                                        "stopped answering") from None
            except (paramiko.SSHException, EOFError, ConnectionError) as exc:
                # retried only when it broke before any byte moved (a stale connection); a link
                # that died mid-transfer is a dead peer, and reconnecting would only add a timeout
                if attempt == 2 or moved > 0 or time.monotonic() - t0 >= limit:
                    why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    raise DeviceUnreachable(f"{self.device}: {what}: the connection broke after {moved} "
                                            f"bytes ({why})") from None
                # SFTP sessions die with the transport: reconnect and try once more
                log.info("%s: %s failed (%s); reconnecting", self.device, what, exc)
                with self._lock:
                    self.connect()
            except OSError as exc:  # the SFTP server's answer: no such folder, permission, disk full
                raise TransferFailed(f"{self.device}: {what} refused by the hub: "
                                     f"{exc.strerror or exc}") from None
            finally:
                # the channel first: an open remote file would otherwise wait for its CLOSE answer
                with contextlib.suppress(Exception):  # closing a dead session must not mask the cause
                    if chan is not None:
                        chan.close()
                    sftp.close()

    def _drop_dead(self) -> None:
        """The peer stopped answering: drop the connection so the next call reconnects (bounded)."""
        with self._lock:
            self._drop()


class LineStream:
    """The stdout lines of a command that keeps running (``SshConnection.stream``), as they arrive."""

    def __init__(self, chan: paramiko.Channel, device: str, command: str) -> None:
        self._chan = chan
        self.device = device
        self.command = command
        self._pending = b""

    def next_line(self, timeout: float) -> str | None:
        """The next whole line (without its newline), or None when none came within ``timeout``.
        Raises DeviceUnreachable once the command ended or the connection died."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            if self._chan.recv_ready():
                self._pending += self._chan.recv(_READ_CHUNK)
                continue
            if self._chan.closed or self._chan.eof_received or self._chan.exit_status_ready():
                raise DeviceUnreachable(f"{self.device}: {self.command!r} ended (connection lost?)")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([self._chan], [], [], min(left, _POLL_TICK))
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("utf-8", "replace")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._chan.close()


_CHUNK = 32768
"""SFTP write/read size (what paramiko's own put/get use)."""


def _put_file(sftp: paramiko.SFTPClient, local: Path, remote: str,
              progress: Callable[[int, int], None]) -> None:
    """paramiko's put without its blocking close on failure: pipelined writes, then the answer."""
    total = local.stat().st_size
    done = 0
    with local.open("rb") as src:
        remote_file = sftp.open(remote, "wb")
        remote_file.set_pipelined(True)
        while chunk := src.read(_CHUNK):
            remote_file.write(chunk)
            done += len(chunk)
            progress(done, total)
        remote_file.close()  # waits for every write's acknowledgement (each wait bounded)
    got = sftp.stat(remote).st_size
    if got != total:
        raise OSError(f"size mismatch: {got} bytes on the hub, {total} sent")


def _get_file(sftp: paramiko.SFTPClient, remote: str, local: Path,
              progress: Callable[[int, int], None]) -> None:
    """paramiko's get (prefetched reads) without its blocking close on failure."""
    total = sftp.stat(remote).st_size or 0
    progress(0, total)  # sets the deadline from the size
    done = 0
    remote_file = sftp.open(remote, "rb")
    remote_file.prefetch(total)
    with local.open("wb") as dst:
        while data := remote_file.read(_CHUNK):
            dst.write(data)
            done += len(data)
            progress(done, total)
    remote_file.close()
    if done != total:
        raise OSError(f"size mismatch: {done} bytes received, {total} on the hub")
