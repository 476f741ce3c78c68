"""PostgreSQL leases against a real, private PostgreSQL cluster started for this module.

The cluster (Debian's postgresql-15 binaries) listens on 127.0.0.1 on a free port with
its data in a temporary folder, and is stopped and removed at the end. Runners are real
processes; "on the hub" is a fence file written through a local Shell.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hil.drivers.base import CommandResult
from hil.errors import InfrastructureError, UserError
from hil.exitcodes import ExitCode
from hil.inventory import load_inventory
from hil.lease import LeaseLost, LeaseTimeout, make_lease_store
from hil.lease.fencing import check_fence, fence_hub, read_fence, write_fence
from hil.lease.postgres import PostgresLease, PostgresLeaseStore

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REPO = Path(__file__).resolve().parents[2]
HUBS = ["hub-01", "hub-02", "hub-03"]

pytestmark = pytest.mark.skipif(not (PG_BIN / "pg_ctl").is_file(),
                                reason=f"PostgreSQL 15 server binaries not found in {PG_BIN} "
                                       "(Debian package postgresql-15)")


# -- a private cluster -----------------------------------------------------------------

@dataclass
class Cluster:
    data: Path
    port: int
    log: Path
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                        "-w", "-t", "60", *args], check=True, capture_output=True)

    def start(self) -> None:
        self.pg_ctl("-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start")

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1",
                    "restart")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # initdb refuses to run as root: as root, the cluster belongs to the postgres user
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="hil-pg-"))
    data = root / "data"
    if as_user:
        shutil.chown(root, "postgres")
    subprocess.run([*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    c = Cluster(data, _free_port(), root / "server.log", as_user)
    c.start()
    try:
        yield c
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            c.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> str:
    """A lab name of its own per test: rows and queues of other tests never interfere."""
    return "t-" + str(request.node.name).replace("[", "-").replace("]", "")[:40] + f"-{os.getpid()}"


def _store(cluster: Cluster, lab: str, ttl: float = 30.0) -> PostgresLeaseStore:
    return PostgresLeaseStore(cluster.url, lab=lab, ttl=ttl)


class LocalShell:
    """A Shell on this machine: the fence file stands in for the hub's."""

    device = "hub-01"

    def run(self, argv: Sequence[str], *, timeout: float | None = None, sudo: bool = False,
            stdin: str | None = None) -> CommandResult:
        t = time.perf_counter()
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=stdin,
                           check=False)
        return CommandResult(tuple(argv), p.returncode, p.stdout, p.stderr, time.perf_counter() - t, "local")


# -- child processes (module level: multiprocessing pickles them by name) ---------------

def _exclusive_worker(url: str, lab: str, runner: str, marks: str, iterations: int, hold: float,
                      out: Any) -> None:
    os.environ["HIL_RUNNER_ID"] = runner
    store = PostgresLeaseStore(url, lab=lab, ttl=10)
    for _ in range(iterations):
        lease = store.acquire_any(HUBS, timeout=60)
        marker = Path(marks) / f"{lease.device}.in-use"
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            out.put(("DOUBLE", lease.device, runner, lease.fencing_token))
            lease.release()
            return
        time.sleep(hold)
        os.close(fd)
        marker.unlink()
        lease.release()
        out.put(("ok", lease.device, runner, lease.fencing_token))


def _hold(url: str, lab: str, ttl: float, fence: str, ready: Any, out: Any) -> None:
    store = PostgresLeaseStore(url, lab=lab, ttl=ttl)
    lease = store.acquire("hub-01", timeout=10)
    write_fence(LocalShell(), lease.fencing_token, path=fence, sudo=False)
    out.put(lease.fencing_token)
    ready.set()
    time.sleep(3600)


def _stalled_holder(url: str, lab: str, ttl: float, fence: str, ready: Any, out: Any) -> None:
    """Holds, is frozen (SIGSTOP) by the test, then resumes and must find itself fenced off."""
    store = PostgresLeaseStore(url, lab=lab, ttl=ttl)
    lease = store.acquire("hub-01", timeout=10)
    write_fence(LocalShell(), lease.fencing_token, path=fence, sudo=False)
    ready.set()
    # the test stops us here; after SIGCONT the heartbeat finds another token
    deadline = time.monotonic() + 30
    while not lease.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        check_fence(LocalShell(), lease.fencing_token, path=fence, sudo=False)
        fenced = "check_fence passed"
    except LeaseLost as exc:
        fenced = f"LeaseLost: {exc}"
    out.put((lease.lost, fenced))


def _fifo_waiter(url: str, lab: str, name: str, out: Any) -> None:
    store = PostgresLeaseStore(url, lab=lab, ttl=10)
    lease = store.acquire("hub-01", timeout=60)
    out.put((name, time.monotonic()))
    time.sleep(0.2)
    lease.release()


def _wait_for(what: str, cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# -- tests ------------------------------------------------------------------------------

def test_acquire_release_and_latency(cluster: Cluster, lab: str) -> None:
    store = _store(cluster, lab)
    first = store.try_acquire("hub-01")  # creates the schema, opens the connection
    assert first is not None
    first.release()
    acq, rel = [], []
    tokens = []
    for _ in range(50):
        t0 = time.perf_counter()
        lease = store.acquire("hub-01", timeout=5)
        t1 = time.perf_counter()
        lease.release()
        t2 = time.perf_counter()
        acq.append(t1 - t0)
        rel.append(t2 - t1)
        tokens.append(lease.fencing_token)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)  # every take a new token
    assert store.holders() == {}
    print(f"\nPostgreSQL lease: acquire p50 {statistics.median(acq) * 1000:.2f} ms "
          f"(max {max(acq) * 1000:.1f}), release p50 {statistics.median(rel) * 1000:.2f} ms")


def test_busy_device_is_not_given_twice_and_times_out_naming_the_holder(cluster: Cluster, lab: str) -> None:
    os.environ["HIL_RUNNER_ID"] = "runner-x"
    try:
        a = _store(cluster, lab).acquire("hub-01", timeout=5)
    finally:
        del os.environ["HIL_RUNNER_ID"]
    other = _store(cluster, lab)
    assert other.try_acquire("hub-01") is None
    t0 = time.monotonic()
    with pytest.raises(LeaseTimeout, match=r"hub-01.*runner runner-x"):
        other.acquire("hub-01", timeout=0.5)
    assert 0.5 <= time.monotonic() - t0 < 3
    held = other.holders()["hub-01"]
    assert (held.holder_pid, held.runner_id, held.fencing_token) == (os.getpid(), "runner-x",
                                                                     a.fencing_token)
    b = other.acquire("hub-02", timeout=1)  # another device is free
    a.release()
    c = other.acquire("hub-01", timeout=2)
    assert c.fencing_token > a.fencing_token
    for x in (b, c):
        x.release()


def test_contention_never_two_holders(cluster: Cluster, lab: str, tmp_path: Path) -> None:
    out: mp.Queue[Any] = mp.Queue()
    n, iterations = 6, 5
    procs = [mp.Process(target=_exclusive_worker,
                        args=(cluster.url, lab, f"runner-{i % 3}", str(tmp_path), iterations, 0.05, out))
             for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    got = [out.get(timeout=5) for _ in range(n * iterations)]
    assert [g for g in got if g[0] != "ok"] == []
    assert {g[1] for g in got} == set(HUBS)


def test_two_runners_never_overlap_over_many_iterations(cluster: Cluster, lab: str, tmp_path: Path) -> None:
    out: mp.Queue[Any] = mp.Queue()
    iterations = 40
    procs = [mp.Process(target=_exclusive_worker,
                        args=(cluster.url, lab, runner, str(tmp_path), iterations, 0.01, out))
             for runner in ("runner-a", "runner-b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    got = [out.get(timeout=5) for _ in range(2 * iterations)]
    assert [g for g in got if g[0] != "ok"] == []
    assert {g[2] for g in got} == {"runner-a", "runner-b"}


def test_contention_check_catches_overlap(tmp_path: Path) -> None:
    """The O_EXCL marker that the two tests above rely on does see two holders at once."""
    first = os.open(tmp_path / "hub-01.in-use", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with pytest.raises(FileExistsError):
        os.open(tmp_path / "hub-01.in-use", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(first)


def test_sigkilled_holder_expires_and_is_taken_over_with_a_higher_token(
        cluster: Cluster, lab: str, tmp_path: Path) -> None:
    ttl = 2.0
    fence = str(tmp_path / "fence")
    ready, out = mp.Event(), mp.Queue()  # type: ignore[var-annotated]
    p = mp.Process(target=_hold, args=(cluster.url, lab, ttl, fence, ready, out))
    p.start()
    assert ready.wait(20)
    old_token = out.get(timeout=5)
    store = _store(cluster, lab, ttl=ttl)
    assert store.try_acquire("hub-01") is None  # its heartbeat keeps it
    assert p.pid is not None
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    t0 = time.monotonic()
    lease = store.acquire("hub-01", timeout=3 * ttl)
    takeover = time.monotonic() - t0
    print(f"\ntakeover after SIGKILL: {takeover:.2f}s with ttl {ttl}s (heartbeat every {ttl / 3:.2f}s)")
    assert lease.fencing_token > old_token
    assert takeover <= ttl + 1.0
    shell = LocalShell()
    write_fence(shell, lease.fencing_token, path=fence, sudo=False)
    assert read_fence(shell, path=fence, sudo=False) == lease.fencing_token
    with pytest.raises(LeaseLost, match="newer than ours"):
        check_fence(shell, old_token, path=fence, sudo=False)  # the old holder may not deploy
    with pytest.raises(LeaseLost):
        write_fence(shell, old_token, path=fence, sudo=False)
    assert read_fence(shell, path=fence, sudo=False) == lease.fencing_token  # not lowered
    lease.release()


def test_stalled_holder_notices_it_lost_the_lease_and_is_fenced_off(
        cluster: Cluster, lab: str, tmp_path: Path) -> None:
    ttl = 1.5
    fence = str(tmp_path / "fence")
    ready, out = mp.Event(), mp.Queue()  # type: ignore[var-annotated]
    p = mp.Process(target=_stalled_holder, args=(cluster.url, lab, ttl, fence, ready, out))
    p.start()
    assert ready.wait(20)
    assert p.pid is not None
    os.kill(p.pid, signal.SIGSTOP)  # a GC pause / a frozen VM: no heartbeat
    try:
        lease = _store(cluster, lab, ttl=ttl).acquire("hub-01", timeout=3 * ttl)
        write_fence(LocalShell(), lease.fencing_token, path=fence, sudo=False)
    finally:
        os.kill(p.pid, signal.SIGCONT)
    lost, fenced = out.get(timeout=30)
    p.join(timeout=10)
    assert lost is True
    assert fenced.startswith("LeaseLost")
    assert lease.held and not lease.lost
    lease.release()


def test_waiters_are_served_first_come_first_served(cluster: Cluster, lab: str) -> None:
    store = _store(cluster, lab)
    holder = store.acquire("hub-01", timeout=5)
    out: mp.Queue[Any] = mp.Queue()
    procs = []
    for i, name in enumerate(("first", "second", "third")):
        p = mp.Process(target=_fifo_waiter, args=(cluster.url, lab, name, out))
        p.start()
        procs.append(p)
        _wait_for(f"{name} to queue", lambda n=i + 1: len(store.waiters()) == n)
    assert store.try_acquire("hub-01") is None
    holder.release()
    # a newcomer (no ticket) must not jump the queue while the three wait
    assert store.try_acquire("hub-01") is None
    order = [out.get(timeout=30) for _ in range(3)]
    for p in procs:
        p.join(timeout=10)
    assert [name for name, _ in order] == ["first", "second", "third"]
    assert store.waiters() == []


def test_waiting_is_bounded_and_leaves_the_queue(cluster: Cluster, lab: str) -> None:
    store = _store(cluster, lab)
    holder = store.acquire("hub-01", timeout=5)
    with pytest.raises(LeaseTimeout):
        _store(cluster, lab).acquire("hub-01", timeout=0.3)
    assert store.waiters() == []  # a waiter that gave up does not block the queue
    holder.release()
    store.acquire("hub-01", timeout=1).release()


def test_lease_survives_a_postgresql_restart(cluster: Cluster, lab: str) -> None:
    ttl = 3.0
    store = _store(cluster, lab, ttl=ttl)
    lease = store.acquire("hub-01", timeout=5)
    assert isinstance(lease, PostgresLease)
    _wait_for("a first renewal", lambda: lease.renewals >= 1)
    t0 = time.monotonic()
    cluster.restart()
    restart = time.monotonic() - t0
    before = lease.renewals
    _wait_for("the heartbeat to renew over a new connection", lambda: lease.renewals >= before + 2, 4 * ttl)
    assert not lease.lost
    other = _store(cluster, lab, ttl=ttl)
    assert other.try_acquire("hub-01") is None
    assert other.holders()["hub-01"].fencing_token == lease.fencing_token
    # the store's own connection was cut by the restart too: it reconnects transparently
    lease.release()
    assert store.holders() == {}
    print(f"\nPostgreSQL restart took {restart:.2f}s; the lease stayed held (ttl {ttl}s)")


def test_unreachable_store_is_an_infrastructure_error_without_password(lab: str) -> None:
    store = PostgresLeaseStore(f"postgresql://hil:s3cretpw@127.0.0.1:{_free_port()}/x", lab=lab, ttl=5)
    with pytest.raises(InfrastructureError) as err:
        store.try_acquire("hub-01")
    assert "s3cretpw" not in str(err.value)
    assert "***" in str(err.value)


# -- configuration and the CLI ------------------------------------------------------------

def _inventory(tmp_path: Path, lab: str, store: str | None = None) -> Path:
    path = tmp_path / "devices.yaml"
    lease = f"lease:\n  store: {store}\n  ttl: 5\n" if store else ""
    path.write_text(f"lab: {lab}\n{lease}devices:\n" + "".join(
        f"  {h}:\n    ssh: {{host: 10.0.0.{i + 1}, user: hil, key_file: k, known_hosts: kh}}\n"
        for i, h in enumerate(HUBS)))
    return path


def test_store_is_chosen_by_inventory_env_or_explicit_url(cluster: Cluster, lab: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    inv = load_inventory(_inventory(tmp_path, lab, cluster.url))
    assert isinstance(make_lease_store(inv), PostgresLeaseStore)
    (tmp_path / "plain").mkdir()
    plain = load_inventory(_inventory(tmp_path / "plain", lab))
    assert not isinstance(make_lease_store(plain), PostgresLeaseStore)
    monkeypatch.setenv("HIL_LEASE_STORE", cluster.url)
    assert isinstance(make_lease_store(plain), PostgresLeaseStore)
    monkeypatch.delenv("HIL_LEASE_STORE")
    assert isinstance(make_lease_store(plain, cluster.url), PostgresLeaseStore)


def _hil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=60, check=False)


def test_cli_lists_and_force_releases_and_logs_it(cluster: Cluster, lab: str, tmp_path: Path) -> None:
    inv = _inventory(tmp_path, lab, cluster.url)
    os.environ["HIL_RUNNER_ID"] = "runner-cli"
    try:
        lease = _store(cluster, lab, ttl=3).acquire("hub-02", timeout=5)
    finally:
        del os.environ["HIL_RUNNER_ID"]
    listed = _hil("lease", "list", "--devices", str(inv))
    assert listed.returncode == 0, listed.stderr
    assert "hub-02" in listed.stdout and "runner-cli" in listed.stdout
    assert str(lease.fencing_token) in listed.stdout
    devices = _hil("devices", "--devices", str(inv))
    assert devices.returncode == 0 and "runner-cli" in devices.stdout  # `hil devices` sees it too

    refused = _hil("lease", "release", "hub-02", "--devices", str(inv))
    assert refused.returncode == ExitCode.BAD_INPUT and "--force" in refused.stderr
    assert _store(cluster, lab).holders().keys() == {"hub-02"}

    log = tmp_path / "release.log"
    done = _hil("lease", "release", "hub-02", "--force", "--devices", str(inv), "--log", str(log),
                "--reason", "holder VM gone", env={"SUDO_USER": "alice"})
    assert done.returncode == 0, done.stderr
    assert "alice@" in done.stderr and "force-released hub-02" in done.stderr
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["operator"] == "alice" and record["device"] == "hub-02"
    assert record["dropped"]["runner_id"] == "runner-cli"
    assert record["dropped"]["fencing_token"] == lease.fencing_token
    assert record["reason"] == "holder VM gone"
    assert _store(cluster, lab).holders() == {}
    # the dropped holder finds out at its next heartbeat, and the next taker outranks it
    _wait_for("the holder to notice", lambda: lease.lost, 15)
    nxt = _store(cluster, lab).acquire("hub-02", timeout=2)
    assert nxt.fencing_token > lease.fencing_token
    nxt.release()
    lease.release()

    unknown = _hil("lease", "release", "hub-99", "--force", "--devices", str(inv))
    assert unknown.returncode == ExitCode.BAD_INPUT
    assert "hub-99" in unknown.stderr and "Traceback" not in unknown.stderr


def test_cli_names_an_unreachable_store_in_one_line(lab: str, tmp_path: Path) -> None:
    inv = _inventory(tmp_path, lab, f"postgresql://hil@127.0.0.1:{_free_port()}/x")
    inv.write_text(inv.read_text().replace("  ttl: 5\n", "  ttl: 5\n  password: ${HIL_TEST_PG_PW}\n"))
    res = _hil("lease", "list", "--devices", str(inv), env={"HIL_TEST_PG_PW": "pw1234"})
    assert res.returncode == ExitCode.INFRASTRUCTURE
    assert "did not answer" in res.stderr and "Traceback" not in res.stderr and "pw1234" not in res.stderr


# -- a store that stops answering, tokens, secrets ---------------------------------------------

class Blackhole:
    """A TCP relay to the cluster that can stop forwarding without closing anything: the
    runner's packets are accepted and never answered, like a network that silently drops."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.cut = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self._socks += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not self.cut.is_set():
                    dst.sendall(data)

    def close(self) -> None:
        self.server.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()


def test_holder_cut_off_from_the_store_stops_within_ttl_plus_one_heartbeat(
        cluster: Cluster, lab: str, tmp_path: Path) -> None:
    ttl = 3.0
    relay = Blackhole(cluster.port)
    shell, fence = LocalShell(), str(tmp_path / "fence")
    try:
        store = PostgresLeaseStore(f"postgresql://postgres@127.0.0.1:{relay.port}/postgres", lab=lab, ttl=ttl)
        lease = store.acquire("hub-01", timeout=5)
        fence_hub(shell, lease, path=fence, sudo=False)
        _wait_for("a first renewal", lambda: lease.renewals >= 1)
        relay.cut.set()  # the runner's network to the database goes dark
        cut = time.monotonic()
        while not lease.lost:
            assert time.monotonic() - cut < 3 * ttl, "the holder never noticed"
            time.sleep(0.02)
        stopped = time.monotonic() - cut
        with pytest.raises(LeaseLost, match="longer than the lease TTL"):
            fence_hub(shell, lease, path=fence, sudo=False)  # destructive steps stop
        print(f"\nstore cut off: holder stopped after {stopped:.2f}s (ttl {ttl:g}s, "
              f"heartbeat every {ttl / 3:g}s)")
        assert stopped <= ttl + ttl / 3
        # meanwhile another runner, which still reaches the database, gets the hub after the TTL
        other = _store(cluster, lab, ttl=ttl).acquire("hub-01", timeout=3 * ttl)
        assert fence_hub(shell, other, path=fence, sudo=False) > lease.fencing_token
        t0 = time.monotonic()
        lease.release()  # does not hang on the dead connection
        assert time.monotonic() - t0 < 1.0
        other.release()
    finally:
        relay.close()


def test_lost_counter_is_raised_above_the_hubs_token(cluster: Cluster, lab: str, tmp_path: Path) -> None:
    """The database was rebuilt (the sequence restarted) but the hub remembers a higher token."""
    shell, fence = LocalShell(), str(tmp_path / "fence")
    store = _store(cluster, lab)
    write_fence(shell, 10**9, path=fence, sudo=False)  # from before the rebuild
    lease = store.acquire("hub-01", timeout=5)
    assert lease.fencing_token < 10**9
    assert fence_hub(shell, lease, path=fence, sudo=False) == 10**9 + 1
    assert store.holders()["hub-01"].fencing_token == 10**9 + 1
    _wait_for("a renewal with the new token", lambda: lease.renewals >= 1, 60)
    assert not lease.lost
    lease.release()
    nxt = store.acquire("hub-01", timeout=5)
    assert nxt.fencing_token > 10**9 + 1  # the sequence moved past it too
    nxt.release()


def test_inline_password_in_lease_store_is_refused_naming_file_and_field(lab: str, tmp_path: Path) -> None:
    inv = _inventory(tmp_path, lab, "postgresql://hil:pw1234@127.0.0.1:5432/x")
    res = _hil("lease", "list", "--devices", str(inv))
    assert res.returncode == ExitCode.BAD_INPUT, res.stderr
    assert f"file {inv}" in res.stderr and "field lease.store" in res.stderr
    assert "pw1234" not in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(UserError, match=r"HIL_LEASE_STORE.*carries a password"):
        os.environ["HIL_LEASE_STORE"] = "postgresql://hil:pw1234@127.0.0.1:5432/x"
        try:
            make_lease_store(load_inventory(_inventory(tmp_path, lab)))
        finally:
            del os.environ["HIL_LEASE_STORE"]


def test_password_by_reference_reaches_the_server(cluster: Cluster, lab: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS hil_pw")
        conn.execute("CREATE ROLE hil_pw LOGIN SUPERUSER PASSWORD 'Zq9'")
    hba = cluster.data / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all hil_pw 127.0.0.1/32 scram-sha-256\n" + original)
    cluster.pg_ctl("reload")
    try:
        inv = _inventory(tmp_path, lab, f"postgresql://hil_pw@127.0.0.1:{cluster.port}/postgres")
        inv.write_text(inv.read_text().replace("  ttl: 5\n", "  ttl: 5\n  password: ${HIL_TEST_PG_PW}\n"))
        monkeypatch.setenv("HIL_TEST_PG_PW", "Zq9")
        store = make_lease_store(load_inventory(inv))
        store.acquire("hub-01", timeout=5).release()
        monkeypatch.setenv("HIL_TEST_PG_PW", "wrong")
        with pytest.raises(InfrastructureError, match="did not answer"):
            make_lease_store(load_inventory(inv)).try_acquire("hub-01")
    finally:
        hba.write_text(original)
        cluster.pg_ctl("reload")
