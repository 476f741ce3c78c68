"""Leases as ``flock`` file locks: one file per device, on this host.

The kernel drops an flock when the holding process dies (exit, crash, SIGKILL), so a
cancelled CI job never leaves a lease behind. The holder writes its ``LeaseInfo`` as
JSON into the locked file; ``holders()`` reads it back for files that are locked.

Fencing: the lock file keeps the last token handed out for its device (also after
release), so every lease gets a higher token than the one before. If a cleaner deletes
the file the count restarts, which is safe: the first fence of a lease takes
max(our token, the hub's token + 1) (``raise_token_above``). ``force_release`` replaces
a held lock file by a fresh one carrying the count: the old holder keeps a lock on a
file that no longer has a name, the next taker locks the new one, and the old lease
reads as lost.

The folder is shared by every user's runs on the host (mode 1777, set explicitly so
the umask cannot cut it), and everything in it is untrusted: the folder must belong
to root or to us and be sticky if others may write, lock files are opened relative to
it with ``O_NOFOLLOW`` (a planted symlink is refused, never written through) and must
be plain single-link files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import random
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from hil.errors import InfrastructureError
from hil.lease import (
    MAX_TOKEN,
    LeaseInfo,
    LeaseLost,
    LeaseStoreUnsafe,
    current_runner_id,
    default_lease_directory,
    register_lease_store,
    wait_for_lease,
)

if TYPE_CHECKING:
    from hil.inventory import Inventory

_POLL_MAX = 0.5
SHARED_DIR_MODE = 0o1777
"""Every user's runs create lock files here; the sticky bit keeps them from removing each other's."""
PARENT_DIR_MODE = 0o755
LOCK_MODE = 0o666
"""Any user's run must be able to lock any device's file."""
_MAX_INFO = 4096
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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
            return os.lstat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return True

    @property
    def lost_reason(self) -> str | None:
        return "released by force (its lock file was replaced or removed)" if self.lost else None

    def raise_token_above(self, seen: int) -> int:
        if self._fd is None or self.lost:
            raise LeaseLost(f"{self.device}: lease lost ({self.lost_reason or 'released'})")
        if seen >= self.info.fencing_token:
            self.info = dataclasses.replace(self.info, fencing_token=min(seen + 1, MAX_TOKEN))
            _write_json(self._fd, self.info.to_json_dict())
        return self.info.fencing_token

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # the holder info is stale from now on; the count stays for the next taker
            _write_json(fd, {"device": self.device, "fencing_token": self.info.fencing_token,
                             "released": time.time()})
        except OSError:
            pass  # the next taker then continues from the hub's token
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
        _make_directory(self.directory)
        with self._dir():
            pass  # checked once up front: a bad folder is reported before anything else

    @contextlib.contextmanager
    def _dir(self) -> Iterator[int]:
        """The lease folder, opened without following a symlink and checked (owner, mode)."""
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LeaseStoreUnsafe(f"lease folder {self.directory} is a symbolic link or not a "
                                       "folder: refusing to use it") from None
            raise InfrastructureError(f"lease folder {self.directory} cannot be opened: "
                                      f"{exc.strerror}") from None
        try:
            _check_directory(self.directory, os.fstat(fd))
            yield fd
        finally:
            os.close(fd)

    def _name(self, device: str) -> str:
        if "/" in device or device.startswith(".") or "\0" in device:
            raise ValueError(f"bad device name for a lease: {device!r}")
        return f"{device}.lock"

    def _path(self, device: str) -> Path:
        return self.directory / self._name(device)

    def _open_lock(self, dfd: int, device: str) -> int:
        name = self._name(device)
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, LOCK_MODE, dir_fd=dfd)
        except OSError as exc:
            raise _unsafe_open(self.directory / name, exc) from None
        try:
            st = os.fstat(fd)
            _check_lock_file(self.directory / name, st)
            if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != LOCK_MODE:
                os.fchmod(fd, LOCK_MODE)  # ours, just made: the umask must not lock others out
        except BaseException:
            os.close(fd)
            raise
        return fd

    def try_acquire(self, device: str) -> FileLease | None:
        path = self._path(device)
        with self._dir() as dfd:
            fd = self._open_lock(dfd, device)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return None
                raise
            try:
                same = os.lstat(self._name(device), dir_fd=dfd).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        if not same:
            # force-released between our open and flock: that lock guards nothing any more
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return None
        try:
            # only called with the device's lock held, so read-increment-write does not race
            info = LeaseInfo(device=device, runner_id=current_runner_id(),
                             fencing_token=_read_token(fd) + 1)
            _write_json(fd, info.to_json_dict())
        except OSError:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        return FileLease(device, path, fd, info)

    def force_release(self, device: str) -> LeaseInfo | None:
        """Replace ``device``'s lock file; its holder (if any) is returned and its lease is lost."""
        held = self.holders().get(device)
        name = self._name(device)
        with self._dir() as dfd:
            token = held.fencing_token if held else 0
            if not held:
                with contextlib.suppress(OSError, LeaseStoreUnsafe):
                    fd = self._open_lock(dfd, device)
                    try:
                        token = _read_token(fd)
                    finally:
                        os.close(fd)
            tmp = f".{name}.{os.getpid()}.new"
            try:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, LOCK_MODE, dir_fd=dfd)
                try:
                    os.fchmod(fd, LOCK_MODE)
                    _write_json(fd, {"device": device, "fencing_token": token, "released": time.time()})
                finally:
                    os.close(fd)
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except OSError:
                # e.g. a sticky folder and another user's file: dropping the name is enough (the
                # next taker's first fence continues from the hub's token)
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dfd)
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
        with self._dir() as dfd:
            for name in sorted(os.listdir(dfd)):
                if not name.endswith(".lock") or name.startswith("."):
                    continue
                device = name.removesuffix(".lock")
                try:
                    fd = os.open(name, os.O_RDONLY | _OPEN_FLAGS, dir_fd=dfd)
                except OSError:
                    continue
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        continue
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


# -- the folder and the files: untrusted -------------------------------------------------

def _make_directory(path: Path) -> None:
    """Create ``path`` with explicit modes: the lease folder and the one above it are shared
    (1777, so another user's run can add a lab folder and lock files), the rest 755."""
    missing: list[Path] = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue  # another process was quicker; checked below like any existing folder
        except OSError as exc:
            raise InfrastructureError(
                f"lease folder {path} cannot be created ({d}: {exc.strerror}): create it once as root "
                f"(install -d -m 1777 {path}) or set lease.directory in the inventory") from None
        os.chmod(d, SHARED_DIR_MODE if d in (path, path.parent) else PARENT_DIR_MODE)


def _check_directory(path: Path, st: os.stat_result) -> None:
    if st.st_uid not in (0, os.geteuid()):
        raise LeaseStoreUnsafe(f"lease folder {path} belongs to uid {st.st_uid}, not to root or to us: "
                               f"refusing to use it (make it root's: chown root {path})")
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise LeaseStoreUnsafe(f"lease folder {path} is writable by everyone without the sticky bit "
                               f"(mode {mode:o}): anyone could swap lock files (chmod 1777 {path})")


def _check_lock_file(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise LeaseStoreUnsafe(f"lock file {path} is not a plain file: refusing to use it (remove it)")
    if st.st_nlink != 1:
        raise LeaseStoreUnsafe(f"lock file {path} has {st.st_nlink} hard links: refusing to write "
                               "through it (remove it)")
    if st.st_uid not in (0, os.geteuid()) and stat.S_IMODE(st.st_mode) != LOCK_MODE:
        raise LeaseStoreUnsafe(f"lock file {path} belongs to uid {st.st_uid} and has mode "
                               f"{stat.S_IMODE(st.st_mode):o}: not a lock file the harness made (remove it)")


def _unsafe_open(path: Path, exc: OSError) -> Exception:
    if exc.errno == errno.ELOOP:
        return LeaseStoreUnsafe(f"lock file {path} is a symbolic link: refusing to open it (a planted "
                                "link would make the harness write through it); remove it")
    if exc.errno == errno.EACCES:
        return LeaseStoreUnsafe(f"lock file {path} cannot be opened for writing: it was not made by the "
                                "harness for every user (remove it)")
    return InfrastructureError(f"lock file {path} cannot be opened: {exc.strerror}")


def _write_json(fd: int, doc: dict[str, object]) -> None:
    data = json.dumps(doc).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read_token(fd: int) -> int:
    """The last token handed out for this device (0 for a new or emptied file).

    A torn or tampered count must never go backwards: start above any token handed out so far."""
    raw = os.pread(fd, _MAX_INFO, 0)
    if not raw.strip():
        return 0
    try:
        token = json.loads(raw)["fencing_token"]
        if isinstance(token, int) and not isinstance(token, bool) and 0 <= token < MAX_TOKEN:
            return token
    except (ValueError, KeyError, TypeError):
        pass
    return time.time_ns() // 1000


def _read_info(fd: int, device: str) -> LeaseInfo | None:
    # The holder may be between lock and write: a brief retry avoids a blank holder.
    for _ in range(3):
        raw = os.pread(fd, _MAX_INFO, 0)
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
