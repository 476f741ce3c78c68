"""Leases as ``flock`` file locks: one file per device, on this host.

The kernel drops an flock when the holding process dies (exit, crash, SIGKILL), so a
cancelled CI job never leaves a lease behind. The holder writes its ``LeaseInfo`` as
JSON into the locked file; ``holders()`` reads it back for files that are locked.

Fencing: ``<device>.fence`` next to the lock counts takes of the device (written only
while holding the lock), so every lease gets a higher token than the one before.
``force_release`` unlinks a held lock file: the old holder keeps a lock on a file that
no longer has a name, the next taker creates a fresh one, and the old lease reads as lost.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from hil.errors import InfrastructureError
from hil.lease import (
    LeaseInfo,
    current_runner_id,
    default_lease_directory,
    register_lease_store,
    wait_for_lease,
)

if TYPE_CHECKING:
    from hil.inventory import Inventory

_POLL_MAX = 0.5


class FileLease:
    """A held lock file. ``release()`` is idempotent; process death releases it too."""

    def __init__(self, device: str, path: Path, fd: int, info: LeaseInfo) -> None:
        self.device = device
        self.path = path
        self.info = info
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def fencing_token(self) -> int:
        return self.info.fencing_token

    @property
    def lost(self) -> bool:
        """True when an operator force-released the device (our lock file lost its name)."""
        if self._fd is None:
            return False
        try:
            return os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # holder info is stale from now on
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FileLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FileLease({self.device!r}, held={self.held})"


class FileLeaseStore:
    """``LeaseStore`` over flock'ed files in ``directory`` (shared by all processes on this host)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o1777)
        except OSError as exc:
            raise InfrastructureError(
                f"lease directory {self.directory} cannot be created: {exc.strerror}") from None

    def _path(self, device: str) -> Path:
        if "/" in device or device.startswith("."):
            raise ValueError(f"bad device name for a lease: {device!r}")
        return self.directory / f"{device}.lock"

    def try_acquire(self, device: str) -> FileLease | None:
        path = self._path(device)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            # force-released between our open and flock: that lock guards nothing any more
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return None
        try:
            info = LeaseInfo(device=device, runner_id=current_runner_id(),
                             fencing_token=self._next_token(device))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info.to_json_dict()).encode(), 0)
        except OSError:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        return FileLease(device, path, fd, info)

    def _next_token(self, device: str) -> int:
        """Only called with the device's lock held, so read-increment-write does not race."""
        path = self.directory / f"{device}.fence"
        try:
            last = int(path.read_text().strip() or 0)
        except FileNotFoundError:
            last = 0
        except ValueError:
            # a torn counter must never go backwards: start above any token handed out so far
            last = time.time_ns() // 1000
        token = last + 1
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(f"{token}\n")
        os.chmod(tmp, 0o666)  # noqa: S103  (shared by every user's runs, like the lock files)
        os.replace(tmp, path)
        return token

    def force_release(self, device: str) -> LeaseInfo | None:
        """Unlink ``device``'s lock file; its holder (if any) is returned and its lease is lost."""
        held = self.holders().get(device)
        with contextlib.suppress(FileNotFoundError):
            self._path(device).unlink()
        return held

    def acquire(self, device: str, *, timeout: float) -> FileLease:
        return self.acquire_any([device], timeout=timeout)

    def acquire_any(self, devices: Sequence[str], *, timeout: float) -> FileLease:
        if not devices:
            raise ValueError("acquire_any needs at least one device")
        order = list(devices)

        def take() -> FileLease | None:
            # Start at a random device so that N waiters do not all hammer the first one.
            start = random.randrange(len(order))
            for dev in order[start:] + order[:start]:
                lease = self.try_acquire(dev)
                if lease is not None:
                    return lease
            return None

        return wait_for_lease(take, order, timeout=timeout, holders=self.holders, poll_max=_POLL_MAX)

    def holders(self) -> dict[str, LeaseInfo]:
        out: dict[str, LeaseInfo] = {}
        for path in sorted(self.directory.glob("*.lock")):
            device = path.name.removesuffix(".lock")
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                try:
                    # flock on a separate open file description conflicts even within one process.
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:
                    info = _read_info(fd, device)
                    if info is not None:
                        out[device] = info
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)  # nobody holds it
            finally:
                os.close(fd)
        return out


def _read_info(fd: int, device: str) -> LeaseInfo | None:
    # The holder may be between lock and write: a brief retry avoids a blank holder.
    for _ in range(3):
        raw = os.pread(fd, 4096, 0)
        if raw:
            try:
                return LeaseInfo.from_json_dict(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                pass
        time.sleep(0.01)
    return LeaseInfo(device=device, holder_host="?", holder_pid=0, ci_job=None, since=0.0)


@register_lease_store("")
@register_lease_store("file")
def _file_store(inventory: Inventory, url: str | None) -> FileLeaseStore:
    if url:
        return FileLeaseStore(Path(urlparse(url).path))
    directory = inventory.lease.directory or default_lease_directory(inventory.lab)
    return FileLeaseStore(directory)
