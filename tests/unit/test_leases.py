"""Lease logic with real processes and real flock (no lab needed)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest

from hil.errors import InventoryError
from hil.inventory import load_inventory
from hil.lease import LeaseInfo, LeaseTimeout, make_lease_store
from hil.lease.filelock import FileLease, FileLeaseStore

DEVICES = ["hub-01", "hub-02"]


class _BrokenStore(FileLeaseStore):
    """A store that forgets to lock: the contention check must catch it."""

    def try_acquire(self, device: str) -> FileLease | None:
        fd = os.open(self._path(device), os.O_RDWR | os.O_CREAT)
        return FileLease(device, self._path(device), fd, LeaseInfo(device=device))


def _worker(directory: str, hold: float, results: mp.Queue,  # type: ignore[type-arg]
            broken: bool = False) -> None:
    store = (_BrokenStore if broken else FileLeaseStore)(Path(directory))
    lease = store.acquire_any(DEVICES, timeout=30)
    marker = Path(directory) / f"{lease.device}.in-use"
    try:
        # O_EXCL: if another process already holds this device, this fails loudly.
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        results.put(("DOUBLE", lease.device, os.getpid()))
        return
    time.sleep(hold)
    os.close(fd)
    marker.unlink()
    lease.release()
    results.put(("ok", lease.device, os.getpid()))


def test_contention_never_two_holders_and_everyone_gets_one(tmp_path: Path) -> None:
    n = 8
    results: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_worker, args=(str(tmp_path), 0.15, results)) for _ in range(n)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    got = [results.get(timeout=5) for _ in range(n)]
    assert [g for g in got if g[0] != "ok"] == []
    assert {g[1] for g in got} == set(DEVICES)  # both devices were used
    # 8 holders x 0.15 s over 2 devices cannot take less than 4 x 0.15 s: they really queued.
    assert time.monotonic() - t0 >= 0.6


def test_contention_check_catches_a_store_that_does_not_lock(tmp_path: Path) -> None:
    results: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_worker, args=(str(tmp_path), 0.3, results, True)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    got = [results.get(timeout=5) for _ in range(4)]
    assert any(g[0] == "DOUBLE" for g in got)


def _hold_forever(directory: str, ready: EventType) -> None:
    os.environ["CI_JOB_ID"] = "4711"
    os.environ.pop("GITHUB_RUN_ID", None)
    os.environ.pop("BUILD_TAG", None)
    lease = FileLeaseStore(Path(directory)).acquire("hub-01", timeout=5)
    assert lease.info.holder_pid == os.getpid()
    ready.set()
    time.sleep(120)


def test_sigkill_frees_the_lease_immediately_and_holders_show_who(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path)
    ready = mp.Event()
    child = mp.Process(target=_hold_forever, args=(str(tmp_path), ready))
    child.start()
    try:
        assert ready.wait(10)
        held = store.holders()
        assert set(held) == {"hub-01"}
        info = held["hub-01"]
        assert info.holder_pid == child.pid
        assert info.holder_host == socket.gethostname()
        assert info.ci_job == "CI_JOB_ID=4711"
        assert time.time() - info.since < 30
        assert store.try_acquire("hub-01") is None
        with pytest.raises(LeaseTimeout, match=rf"held by hub-01: pid {child.pid}"):
            store.acquire("hub-01", timeout=0.3)
    finally:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    t0 = time.monotonic()
    lease = store.acquire("hub-01", timeout=5)
    assert time.monotonic() - t0 < 0.5
    assert lease.info.holder_pid == os.getpid()
    lease.release()
    assert store.holders() == {}


def test_timeout_raises_lease_timeout_after_the_deadline(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path)
    mine = store.acquire("hub-02", timeout=1)
    other = FileLeaseStore(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(LeaseTimeout, match=r"no free device among hub-02 within 0\.4s"):
        other.acquire_any(["hub-02"], timeout=0.4)
    assert 0.4 <= time.monotonic() - t0 < 1.5
    mine.release()
    mine.release()  # idempotent
    assert other.try_acquire("hub-02") is not None


def test_acquire_any_takes_the_free_one(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path)
    first = store.acquire("hub-01", timeout=1)
    second = store.acquire_any(DEVICES, timeout=1)
    assert second.device == "hub-02"
    assert set(store.holders()) == {"hub-01", "hub-02"}
    first.release()
    second.release()


def _inventory(tmp_path: Path, lease: str) -> Path:
    p = tmp_path / "devices.yaml"
    p.write_text(
        "lab: test-lab\n" + lease +
        "devices:\n  hub-01:\n    ssh: {host: 127.0.0.1, user: hil, key_file: k, known_hosts: kh}\n")
    return p


def test_make_lease_store_uses_inventory_directory(tmp_path: Path) -> None:
    inv = load_inventory(_inventory(tmp_path, "lease: {directory: leases}\n"))
    store = make_lease_store(inv)
    assert isinstance(store, FileLeaseStore)
    assert store.directory == tmp_path / "leases"


def test_make_lease_store_unknown_scheme_names_the_field(tmp_path: Path) -> None:
    inv = load_inventory(_inventory(tmp_path, "lease: {store: 'redis://x'}\n"))
    with pytest.raises(InventoryError, match=r"field lease.store: no lease store for 'redis://x'"):
        make_lease_store(inv)
