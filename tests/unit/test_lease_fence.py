"""File-store fencing tokens, forced release, and the hub-side fence file (real processes, real files)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hil.drivers.base import CommandResult
from hil.lease import LeaseLost
from hil.lease.fencing import check_fence, read_fence, write_fence
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
    (tmp_path / "hub-01.fence").write_text("garbage")
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
