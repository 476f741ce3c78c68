"""File-store fencing tokens, forced release, and the hub-side fence file (real processes, real files)."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hil.drivers.base import CommandResult
from hil.lease import LeaseLost, LeaseStoreUnsafe, default_lease_directory
from hil.lease.fencing import FencedOutlet, check_fence, fence_hub, read_fence, require_held, write_fence
from hil.lease.filelock import FileLeaseStore


class LocalShell:
    device = "hub-01"

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None) -> CommandResult:
        t = time.perf_counter()
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
        return CommandResult(tuple(argv), p.returncode, p.stdout, p.stderr, time.perf_counter() - t, "local")


def test_file_store_tokens_grow_with_every_take(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path)
    tokens = []
    for _ in range(5):
        lease = store.acquire("hub-01", timeout=1)
        tokens.append(lease.fencing_token)
        assert store.holders()["hub-01"].fencing_token == lease.fencing_token
        lease.release()
    assert tokens == [1, 2, 3, 4, 5]
    # a second store object (another process) continues the count: it lives on disk
    assert FileLeaseStore(tmp_path).acquire("hub-01", timeout=1).fencing_token == 6


def test_torn_counter_never_goes_backwards(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path)
    store.acquire("hub-01", timeout=1).release()
    (tmp_path / "hub-01.lock").write_text("garbage")
    assert store.acquire("hub-01", timeout=1).fencing_token > 1


def test_force_release_takes_the_device_from_a_live_holder(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path)
    old = store.acquire("hub-01", timeout=1)
    assert not old.lost
    assert store.try_acquire("hub-01") is None
    dropped = store.force_release("hub-01")
    assert dropped is not None and dropped.fencing_token == old.fencing_token
    assert old.lost
    new = store.acquire("hub-01", timeout=1)
    assert new.fencing_token > old.fencing_token
    assert store.holders()["hub-01"].fencing_token == new.fencing_token
    old.release()  # the old holder letting go must not free the new holder's lock
    assert store.try_acquire("hub-01") is None
    new.release()
    assert store.force_release("hub-01") is None  # nobody held it


def test_fence_refuses_an_older_token(tmp_path: Path) -> None:
    shell, fence = LocalShell(), str(tmp_path / "var" / "fence")
    assert read_fence(shell, path=fence, sudo=False) == 0
    write_fence(shell, 5, path=fence, sudo=False)
    check_fence(shell, 5, path=fence, sudo=False)
    write_fence(shell, 5, path=fence, sudo=False)  # the same holder again: fine
    write_fence(shell, 7, path=fence, sudo=False)
    with pytest.raises(LeaseLost, match="7 on the hub is newer than ours \\(5\\)"):
        check_fence(shell, 5, path=fence, sudo=False)
    with pytest.raises(LeaseLost):
        write_fence(shell, 6, path=fence, sudo=False)
    assert read_fence(shell, path=fence, sudo=False) == 7


# -- hostile lease folders and lost counters ------------------------------------------------------

def test_planted_symlink_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    leases = tmp_path / "leases"
    store = FileLeaseStore(leases)
    (leases / "hub-01.lock").symlink_to(victim)
    with pytest.raises(LeaseStoreUnsafe, match=r"hub-01.lock is a symbolic link"):
        store.try_acquire("hub-01")
    with pytest.raises(LeaseStoreUnsafe):
        store.acquire("hub-01", timeout=0.2)
    assert victim.read_text() == "precious\n"
    assert store.holders() == {}  # listing does not follow it either


def test_hard_linked_lock_file_is_refused(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path / "leases")
    other = tmp_path / "leases" / "elsewhere"
    other.write_text("keep")
    os.link(other, tmp_path / "leases" / "hub-01.lock")
    with pytest.raises(LeaseStoreUnsafe, match="hard links"):
        store.try_acquire("hub-01")
    assert other.read_text() == "keep"


def test_symlinked_or_foreign_or_open_folders_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(LeaseStoreUnsafe, match="symbolic link"):
        FileLeaseStore(tmp_path / "link")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)  # noqa: S103  (the hostile folder under test)
    with pytest.raises(LeaseStoreUnsafe, match="sticky"):
        FileLeaseStore(open_dir)
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        os.chown(foreign, 65534, 65534)
        with pytest.raises(LeaseStoreUnsafe, match="belongs to uid 65534"):
            FileLeaseStore(foreign)


def test_modes_are_explicit_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        store = FileLeaseStore(tmp_path / "a" / "leases" / "lab")
        store.acquire("hub-01", timeout=1).release()
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "a") == 0o755
    assert mode(tmp_path / "a" / "leases") == 0o1777
    assert mode(tmp_path / "a" / "leases" / "lab") == 0o1777
    assert mode(tmp_path / "a" / "leases" / "lab" / "hub-01.lock") == 0o666


def test_default_folder_is_under_var_lib(tmp_path: Path) -> None:
    assert default_lease_directory("my-lab") == Path("/var/lib/hil/leases/my-lab")


def test_deleted_counter_never_makes_the_holder_refuse_itself(tmp_path: Path) -> None:
    """A cleaner deletes the lease files: the count restarts at 1, but the hub remembers 5."""
    shell, fence = LocalShell(), str(tmp_path / "hub" / "fence")
    store = FileLeaseStore(tmp_path / "leases")
    for _ in range(5):
        lease = store.acquire("hub-01", timeout=1)
        fence_hub(shell, lease, path=fence, sudo=False)
        lease.release()
    assert read_fence(shell, path=fence, sudo=False) == 5
    for p in (tmp_path / "leases").iterdir():
        p.unlink()  # the cleaner
    lease = store.acquire("hub-01", timeout=1)
    assert lease.fencing_token == 1
    assert fence_hub(shell, lease, path=fence, sudo=False) == 6  # max(local, hub) + 1, no LeaseLost
    assert lease.fencing_token == 6 and store.holders()["hub-01"].fencing_token == 6
    check_fence(shell, lease.fencing_token, path=fence, sudo=False)
    lease.release()
    assert store.acquire("hub-01", timeout=1).fencing_token == 7  # the count continues from there


def test_a_stale_holder_cannot_raise_its_token_over_the_new_one(tmp_path: Path) -> None:
    shell, fence = LocalShell(), str(tmp_path / "fence")
    store = FileLeaseStore(tmp_path / "leases")
    old = store.acquire("hub-01", timeout=1)
    store.force_release("hub-01")
    new = store.acquire("hub-01", timeout=1)
    fence_hub(shell, new, path=fence, sudo=False)
    with pytest.raises(LeaseLost):
        fence_hub(shell, old, path=fence, sudo=False)
    with pytest.raises(LeaseLost):
        old.raise_token_above(100)
    assert read_fence(shell, path=fence, sudo=False) == new.fencing_token
    new.release()


class _Outlet:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.is_on = True

    def on(self) -> None:
        self.calls.append("on")

    def off(self) -> None:
        self.calls.append("off")

    def cycle(self, off_time: float = 2.0) -> None:
        self.calls.append("cycle")

    def status(self) -> bool:
        return self.is_on


def test_power_is_fenced_by_the_lease(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path / "leases")
    lease = store.acquire("hub-01", timeout=1)
    outlet = _Outlet()
    fenced = FencedOutlet(outlet, lambda: require_held(lease, "hub-01", "switching its power"))
    fenced.off()
    fenced.on()
    store.force_release("hub-01")  # the lease is someone else's now
    for action in (fenced.off, fenced.on, fenced.cycle):
        with pytest.raises(LeaseLost, match="not switching its power"):
            action()
    assert fenced.status() is True  # reading is harmless
    assert outlet.calls == ["off", "on"]
    lease.release()


@pytest.mark.parametrize("planted", ["garbage\n", "9" * 40 + "\n", "-5\n", "12 34\n", ""])
def test_a_corrupt_fence_on_the_hub_reads_as_zero_and_is_repaired(tmp_path: Path, planted: str) -> None:
    shell, fence = LocalShell(), tmp_path / "fence"
    fence.write_text(planted)
    assert read_fence(shell, path=str(fence), sudo=False) == 0
    lease = FileLeaseStore(tmp_path / "leases").acquire("hub-01", timeout=1)
    assert fence_hub(shell, lease, path=str(fence), sudo=False) == lease.fencing_token
    assert fence.read_text() == f"{lease.fencing_token}\n"
    lease.release()
