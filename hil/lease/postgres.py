"""Leases in PostgreSQL, shared by every CI runner that can reach the database.

A row in ``hil_lease`` per held device: holder, acquired/renewed/expires times and a
fencing token drawn from a sequence at every take. A holder's heartbeat thread renews
``expires_at`` every ttl/3; a holder that dies (SIGKILL, lost host) stops renewing and
its row can be taken over once it expires - by then the new holder's token is higher,
so the old one's ``check_fence`` on the hub fails. All times are the server's clock.

Fair waiting: a waiter draws a ticket in ``hil_lease_queue`` (kept alive while it
waits); a free device goes to the oldest live ticket that asks for it. Acquisition is
one short transaction under a per-lab advisory lock, so takes never interleave.

The database may restart under us: rows survive it, and every operation reconnects
(the heartbeat keeps retrying until the server answers again). A holder that could not
renew for a whole TTL counts its lease as lost (``lost``; destructive steps stop): its
row may have expired and been taken by another runner meanwhile. The password comes by
reference (``lease.password: ${ENV}``, or libpq's PGPASSWORD / .pgpass), never in the URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from hil.errors import InfrastructureError, InventoryError
from hil.lease import (
    MAX_TOKEN,
    LeaseInfo,
    LeaseLost,
    current_runner_id,
    redact_url,
    register_lease_store,
    wait_for_lease,
)

if TYPE_CHECKING:
    from hil.inventory import Inventory

log = logging.getLogger("hil.lease.postgres")

CONNECT_TIMEOUT = 5
"""Seconds to reach the server; a store that does not answer is an infrastructure fault."""
STATEMENT_TIMEOUT_MS = 10_000
_POLL_MAX = 0.25
_RECONNECT_PAUSE = 0.5

_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS hil_lease_fence;
CREATE TABLE IF NOT EXISTS hil_lease (
    lab          text        NOT NULL,
    device       text        NOT NULL,
    holder_host  text        NOT NULL,
    holder_pid   integer     NOT NULL,
    runner_id    text        NOT NULL,
    ci_job       text,
    acquired_at  timestamptz NOT NULL,
    renewed_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    fencing_token bigint     NOT NULL,
    PRIMARY KEY (lab, device)
);
CREATE TABLE IF NOT EXISTS hil_lease_queue (
    ticket       bigserial   PRIMARY KEY,
    lab          text        NOT NULL,
    devices      text[]      NOT NULL,
    holder_host  text        NOT NULL,
    holder_pid   integer     NOT NULL,
    runner_id    text        NOT NULL,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    alive_until  timestamptz NOT NULL
);
"""
_SCHEMA_LOCK = 0x68696C5F6C656173  # "hil_leas": serializes CREATE ... IF NOT EXISTS races

# Take the first of %(devices)s (in the given order) that is free or expired and that no
# older live ticket also waits for. One statement, under the lab's advisory lock.
_TAKE = """
WITH wanted AS (
    SELECT d.device, d.ord FROM unnest(%(devices)s::text[]) WITH ORDINALITY AS d(device, ord)
), free AS (
    SELECT w.device, w.ord FROM wanted w
    LEFT JOIN hil_lease l ON l.lab = %(lab)s AND l.device = w.device
    WHERE (l.device IS NULL OR l.expires_at < now())
      AND NOT EXISTS (SELECT 1 FROM hil_lease_queue q
                      WHERE q.lab = %(lab)s AND q.ticket < %(ticket)s AND q.alive_until >= now()
                        AND w.device = ANY(q.devices))
    ORDER BY w.ord LIMIT 1
)
INSERT INTO hil_lease AS l (lab, device, holder_host, holder_pid, runner_id, ci_job,
                            acquired_at, renewed_at, expires_at, fencing_token)
SELECT %(lab)s, free.device, %(host)s, %(pid)s, %(runner)s, %(ci_job)s,
       now(), now(), now() + make_interval(secs => %(ttl)s), nextval('hil_lease_fence')
FROM free
ON CONFLICT (lab, device) DO UPDATE SET
    holder_host = EXCLUDED.holder_host, holder_pid = EXCLUDED.holder_pid,
    runner_id = EXCLUDED.runner_id, ci_job = EXCLUDED.ci_job,
    acquired_at = EXCLUDED.acquired_at, renewed_at = EXCLUDED.renewed_at,
    expires_at = EXCLUDED.expires_at, fencing_token = EXCLUDED.fencing_token
WHERE l.expires_at < now()
RETURNING l.device, l.fencing_token, extract(epoch FROM l.acquired_at) AS since,
          extract(epoch FROM l.expires_at) AS expires
"""

T = TypeVar("T")
Conn = psycopg.Connection[dict[str, Any]]


class PostgresLease:
    """A held row. A heartbeat thread renews it; ``lost`` turns True if someone else has it, or
    once no renewal succeeded for a whole TTL (the row may have expired and been taken over)."""

    def __init__(self, store: PostgresLeaseStore, info: LeaseInfo, *, renewed_at: float) -> None:
        self.store = store
        self.device = info.device
        self.info = info
        self._lost = threading.Event()
        self._released = threading.Event()
        self._token_lock = threading.Lock()
        """Held around a renewal and a token change: a renewal must carry the token the row has."""
        self._renewed_at = renewed_at
        """time.monotonic() just BEFORE the last successful take/renewal was sent: the server's
        expiry is later than this + ttl, so judging by it is on the safe side."""
        self.lost_reason: str | None = None
        self.renewals = 0
        self._thread = threading.Thread(target=self._heartbeat, name=f"hil-lease-{self.device}",
                                        daemon=True)
        self._thread.start()

    @property
    def fencing_token(self) -> int:
        return self.info.fencing_token

    @property
    def lost(self) -> bool:
        if self._lost.is_set():
            return True
        if self._released.is_set():
            return False
        silent = time.monotonic() - self._renewed_at
        if silent > self.store.ttl:  # even while the heartbeat thread hangs in a dead connection
            self._mark_lost(f"no renewal for {silent:.1f}s, longer than the lease TTL "
                            f"({self.store.ttl:g}s): another runner may hold it now")
        return self._lost.is_set()

    @property
    def held(self) -> bool:
        return not self._released.is_set() and not self.lost

    def _mark_lost(self, why: str) -> None:
        if not self._lost.is_set():
            self.lost_reason = why
            log.error("%s: lease lost: %s", self.device, why)
            self._lost.set()

    def raise_token_above(self, seen: int) -> int:
        with self._token_lock:
            if self.lost:
                raise LeaseLost(f"{self.device}: lease lost ({self.lost_reason})")
            if seen < self.fencing_token:
                return self.fencing_token
            new = min(seen + 1, MAX_TOKEN)
            if not self.store.set_token(self.device, self.fencing_token, new):
                self._mark_lost("another holder took it or it was released by force")
                raise LeaseLost(f"{self.device}: lease lost ({self.lost_reason})")
            self.info = dataclasses.replace(self.info, fencing_token=new)
            return new

    def _heartbeat(self) -> None:
        period = self.store.ttl / 3
        conn: Conn | None = None
        try:
            while not self._released.wait(period):
                if self.lost:
                    return
                sent = time.monotonic()
                try:
                    with self._token_lock:
                        if conn is None or conn.closed:
                            conn = self.store.connect()
                        still_ours = self.store.renew(conn, self.device, self.fencing_token)
                except psycopg.Error as exc:
                    # server restarting or unreachable: retry until the TTL is used up (then `lost`)
                    log.warning("%s: lease renewal failed (%s); retrying", self.device, _first_line(exc))
                    if conn is not None:
                        conn.close()
                    conn = None
                    self._released.wait(_RECONNECT_PAUSE)
                    continue
                if not still_ours:
                    self._mark_lost("another holder took it or it was released by force")
                    return
                self._renewed_at = sent
                self.renewals += 1
        finally:
            if conn is not None:
                conn.close()

    def release(self) -> None:
        """Idempotent; deletes the row only if it still carries our token."""
        if self._released.is_set():
            return
        lost = self.lost
        self._released.set()
        # a lost lease's heartbeat may hang in a dead connection: do not wait for it
        self._thread.join(timeout=0.1 if lost else CONNECT_TIMEOUT + 1)
        if lost:
            return
        try:
            self.store.delete(self.device, self.fencing_token)
        except InfrastructureError:
            # the row expires on its own; the next taker gets a higher token anyway
            log.warning("%s: lease release failed; it will expire after %gs", self.device,
                        self.store.ttl)

    def __enter__(self) -> PostgresLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"PostgresLease({self.device!r}, token={self.fencing_token}, held={self.held})"


class PostgresLeaseStore:
    """``LeaseStore`` over a PostgreSQL database (``postgresql://user@host/db``)."""

    def __init__(self, url: str, *, lab: str, ttl: float, password: str | None = None) -> None:
        self.url = url
        self.lab = lab
        self.ttl = float(ttl)
        self._password = password
        self._conn: Conn | None = None
        self._lock = threading.Lock()
        self._schema_ready = False

    # -- connections -------------------------------------------------------------------
    def connect(self) -> Conn:
        # A peer that vanishes (cable, firewall) must not hang a call for the kernel's ~15 min
        # retransmission time: TCP keepalives find an idle dead link, tcp_user_timeout a busy one.
        io_bound = max(1.0, min(self.ttl / 3, float(CONNECT_TIMEOUT)))
        extra: dict[str, Any] = {} if self._password is None else {"password": self._password}
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               application_name="hil-lease", row_factory=dict_row,
                               keepalives=1, keepalives_idle=max(1, round(io_bound)),
                               keepalives_interval=1, keepalives_count=3,
                               tcp_user_timeout=int(io_bound * 1000), **extra)
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        if not self._schema_ready:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(_SCHEMA)
            self._schema_ready = True
        return conn

    def _with_conn(self, what: str, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on the shared connection; reconnect once when the server went away."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self.connect()
                    return fn(self._conn)
                except psycopg.OperationalError as exc:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise InfrastructureError(
                            f"lease store {redact_url(self.url)} did not answer ({what}): "
                            f"{_first_line(exc)}") from None
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- the protocol ------------------------------------------------------------------
    def try_acquire(self, device: str) -> PostgresLease | None:
        return self._take([device], ticket=None)

    def acquire(self, device: str, *, timeout: float) -> PostgresLease:
        return self.acquire_any([device], timeout=timeout)

    def acquire_any(self, devices: Sequence[str], *, timeout: float) -> PostgresLease:
        if not devices:
            raise ValueError("acquire_any needs at least one device")
        order = list(devices)
        lease = self._take(order, ticket=None)
        if lease is not None:
            return lease
        ticket = self._enqueue(order)
        try:
            return wait_for_lease(lambda: self._take(order, ticket=ticket), order, timeout=timeout,
                                  holders=self.holders, poll_max=_POLL_MAX)
        finally:
            # on failure the ticket dies by itself when its alive_until passes
            with contextlib.suppress(InfrastructureError):
                self._dequeue(ticket)

    def holders(self) -> dict[str, LeaseInfo]:
        def q(conn: Conn) -> list[dict[str, Any]]:
            return conn.execute(
                "SELECT device, holder_host, holder_pid, runner_id, ci_job, fencing_token,"
                " extract(epoch FROM acquired_at) AS since, extract(epoch FROM expires_at) AS expires"
                " FROM hil_lease WHERE lab = %s AND expires_at >= now() ORDER BY device",
                (self.lab,)).fetchall()

        return {r["device"]: _info(r) for r in self._with_conn("list holders", q)}

    def waiters(self) -> list[tuple[int, list[str], str]]:
        """Live queue tickets, oldest first: (ticket, devices, "pid P on HOST (runner R)")."""
        def q(conn: Conn) -> list[dict[str, Any]]:
            return conn.execute(
                "SELECT ticket, devices, holder_host, holder_pid, runner_id FROM hil_lease_queue"
                " WHERE lab = %s AND alive_until >= now() ORDER BY ticket", (self.lab,)).fetchall()

        return [(int(r["ticket"]), list(r["devices"]),
                 f"pid {r['holder_pid']} on {r['holder_host']} (runner {r['runner_id']})")
                for r in self._with_conn("list waiters", q)]

    def force_release(self, device: str) -> LeaseInfo | None:
        def q(conn: Conn) -> dict[str, Any] | None:
            return conn.execute(
                "DELETE FROM hil_lease WHERE lab = %s AND device = %s RETURNING device, holder_host,"
                " holder_pid, runner_id, ci_job, fencing_token, extract(epoch FROM acquired_at) AS"
                " since, extract(epoch FROM expires_at) AS expires", (self.lab, device)).fetchone()

        row = self._with_conn("force release", q)
        return None if row is None else _info(row)

    # -- statements ----------------------------------------------------------------------
    def _take(self, devices: list[str], *, ticket: int | None) -> PostgresLease | None:
        info = LeaseInfo(device=devices[0], runner_id=current_runner_id())
        params = {"lab": self.lab, "devices": devices, "host": info.holder_host,
                  "pid": info.holder_pid, "runner": info.runner_id, "ci_job": info.ci_job,
                  "ttl": self.ttl, "ticket": ticket if ticket is not None else 2**62}

        def q(conn: Conn) -> dict[str, Any] | None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('hil_lease:' || %s))",
                             (self.lab,))
                if ticket is not None:  # keep our place in the queue alive while we wait
                    conn.execute("UPDATE hil_lease_queue SET alive_until = now() + make_interval("
                                 "secs => %s) WHERE ticket = %s", (self.ttl, ticket))
                return conn.execute(_TAKE, params).fetchone()

        sent = time.monotonic()
        row = self._with_conn("acquire", q)
        if row is None:
            return None
        return PostgresLease(self, LeaseInfo(
            device=row["device"], holder_host=info.holder_host, holder_pid=info.holder_pid,
            ci_job=info.ci_job, since=float(row["since"]), runner_id=info.runner_id,
            fencing_token=int(row["fencing_token"]), expires=float(row["expires"])), renewed_at=sent)

    def _enqueue(self, devices: list[str]) -> int:
        info = LeaseInfo(device=devices[0], runner_id=current_runner_id())

        def q(conn: Conn) -> int:
            with conn.transaction():
                # stale tickets (waiters that died) must not block the queue
                conn.execute("DELETE FROM hil_lease_queue WHERE lab = %s AND alive_until < now()",
                             (self.lab,))
                row = conn.execute(
                    "INSERT INTO hil_lease_queue (lab, devices, holder_host, holder_pid, runner_id,"
                    " alive_until) VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
                    " RETURNING ticket",
                    (self.lab, devices, info.holder_host, info.holder_pid, info.runner_id,
                     self.ttl)).fetchone()
            assert row is not None
            return int(row["ticket"])

        return self._with_conn("queue", q)

    def _dequeue(self, ticket: int) -> None:
        self._with_conn("leave queue", lambda c: c.execute(
            "DELETE FROM hil_lease_queue WHERE ticket = %s", (ticket,)))

    def renew(self, conn: Conn, device: str, token: int) -> bool:
        """Extend our row by ttl; False when the row is gone or carries another token."""
        cur = conn.execute(
            "UPDATE hil_lease SET renewed_at = now(), expires_at = now() + make_interval(secs => %s)"
            " WHERE lab = %s AND device = %s AND fencing_token = %s", (self.ttl, self.lab, device, token))
        return cur.rowcount == 1

    def set_token(self, device: str, old: int, new: int) -> bool:
        """Move our live row from token ``old`` to ``new`` (and the sequence past it, so later takes
        stay higher); False when the row is gone, expired or carries another token."""
        def q(conn: Conn) -> bool:
            with conn.transaction():
                cur = conn.execute(
                    "UPDATE hil_lease SET fencing_token = %s WHERE lab = %s AND device = %s"
                    " AND fencing_token = %s AND expires_at >= now()", (new, self.lab, device, old))
                if cur.rowcount != 1:
                    return False
                conn.execute("SELECT setval('hil_lease_fence', greatest(%s, (SELECT last_value FROM"
                             " hil_lease_fence)))", (new,))
                return True

        return self._with_conn("raise the fencing token", q)

    def delete(self, device: str, token: int) -> None:
        self._with_conn("release", lambda c: c.execute(
            "DELETE FROM hil_lease WHERE lab = %s AND device = %s AND fencing_token = %s",
            (self.lab, device, token)))


def _info(r: dict[str, Any]) -> LeaseInfo:
    return LeaseInfo(device=r["device"], holder_host=r["holder_host"], holder_pid=int(r["holder_pid"]),
                     ci_job=r["ci_job"], since=float(r["since"]), runner_id=r["runner_id"],
                     fencing_token=int(r["fencing_token"]), expires=float(r["expires"]))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@register_lease_store("postgresql")
@register_lease_store("postgres")
def _postgres_store(inventory: Inventory, url: str | None) -> PostgresLeaseStore:
    assert url is not None  # the registry only calls us for postgresql:// URLs
    secret = inventory.lease.password
    password = None
    if secret is not None:
        try:
            password = secret.resolve()
        except InventoryError as exc:
            raise InventoryError(exc.detail, file=str(inventory.path), field="lease.password") from None
    return PostgresLeaseStore(url, lab=inventory.lab, ttl=inventory.lease.ttl, password=password)
