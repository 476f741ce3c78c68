"""Device leases: a hub is used by exactly one test process at a time.

Callers see only the ``LeaseStore`` protocol; ``make_lease_store`` picks a backend
from the inventory's ``lease.store`` URL scheme through a registry, so a shared
store for several CI runners can be added without touching callers.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlparse

from hil.errors import InfrastructureError, InventoryError, UserError

if TYPE_CHECKING:
    from hil.inventory import Inventory

_CI_JOB_VARS = ("CI_JOB_ID", "GITHUB_RUN_ID", "BUILD_TAG")
RUNNER_ID_VAR = "HIL_RUNNER_ID"
STORE_URL_VAR = "HIL_LEASE_STORE"
"""Overrides the inventory's ``lease.store`` (an explicit URL argument overrides both)."""


class LeaseTimeout(InfrastructureError):
    """No device became free before the lease timeout."""


class LeaseLost(InfrastructureError):
    """This process no longer holds the lease (expired and taken over, or released by force)."""


class LeaseStoreUnsafe(InfrastructureError):
    """The lease folder or a lock file in it is not what the harness made (a symlink, a foreign
    owner, a world-writable folder without the sticky bit): refused rather than written through."""


def current_runner_id() -> str:
    """Which CI runner this is: $HIL_RUNNER_ID, else the host name."""
    return os.environ.get(RUNNER_ID_VAR) or socket.gethostname()


def current_ci_job() -> str | None:
    """The CI job id from GitLab (CI_JOB_ID), GitHub (GITHUB_RUN_ID) or Jenkins (BUILD_TAG)."""
    for var in _CI_JOB_VARS:
        if value := os.environ.get(var):
            return f"{var}={value}"
    return None


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a device and since when."""

    device: str
    holder_host: str = field(default_factory=socket.gethostname)
    holder_pid: int = field(default_factory=os.getpid)
    ci_job: str | None = field(default_factory=current_ci_job)
    since: float = field(default_factory=time.time)
    runner_id: str | None = None
    fencing_token: int = 0
    """Grows with every take of this device; a hub refuses destructive steps from lower tokens."""
    expires: float | None = None
    """Epoch seconds when a shared-store lease runs out without a heartbeat (None: never)."""

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json_dict(cls, raw: dict[str, Any]) -> LeaseInfo:
        return cls(device=str(raw["device"]), holder_host=str(raw["holder_host"]),
                   holder_pid=int(raw["holder_pid"]), ci_job=raw.get("ci_job"),
                   since=float(raw["since"]), runner_id=raw.get("runner_id"),
                   fencing_token=int(raw.get("fencing_token") or 0),
                   expires=None if raw.get("expires") is None else float(raw["expires"]))

    def describe(self) -> str:
        job = f", {self.ci_job}" if self.ci_job else ""
        runner = ""
        if self.runner_id and self.runner_id != self.holder_host:
            runner = f" (runner {self.runner_id})"
        age = time.time() - self.since
        fence = f", token {self.fencing_token}" if self.fencing_token else ""
        left = ""
        if self.expires is not None:
            left = f", expires in {self.expires - time.time():.0f}s"
        return f"pid {self.holder_pid} on {self.holder_host}{runner}{job}, for {age:.0f}s{fence}{left}"


class Lease(Protocol):
    device: str
    info: LeaseInfo

    @property
    def fencing_token(self) -> int:
        """Higher than every earlier holder's token of this device."""
        ...

    @property
    def lost(self) -> bool:
        """True once this process knows another holder may have the device."""
        ...

    @property
    def lost_reason(self) -> str | None:
        """Why ``lost`` turned True (None while the lease is ours)."""
        ...

    def raise_token_above(self, seen: int) -> int:
        """Make our token higher than ``seen`` (a token a hub already holds) and return it.

        Local counters can be lost (a cleaner empties the lease folder, a database is rebuilt),
        but the hub remembers the highest token it saw: the first fence of a lease takes
        max(our token, the hub's + 1). Raises LeaseLost when the lease is no longer ours, so a
        stale holder can never use this to overrun the new one."""
        ...

    def release(self) -> None: ...


class LeaseStore(Protocol):
    def acquire(self, device: str, *, timeout: float) -> Lease:
        """Wait up to ``timeout`` for ``device``; raises LeaseTimeout."""
        ...

    def try_acquire(self, device: str) -> Lease | None: ...

    def acquire_any(self, devices: Sequence[str], *, timeout: float) -> Lease:
        """The first of ``devices`` that is free (xdist workers use this); raises LeaseTimeout."""
        ...

    def holders(self) -> dict[str, LeaseInfo]:
        """Currently held devices and their holders."""
        ...

    def force_release(self, device: str) -> LeaseInfo | None:
        """Operator override: drop whoever holds ``device``; returns the holder it dropped."""
        ...


LeaseStoreFactory = Callable[["Inventory", str | None], LeaseStore]
"""(inventory, store URL or None) -> store."""

LEASE_STORES: dict[str, LeaseStoreFactory] = {}
"""URL scheme -> factory. "" is the default (file locks on this host)."""

LEASE_STORE_MODULES: dict[str, tuple[str, str | None]] = {
    "": ("hil.lease.filelock", None), "file": ("hil.lease.filelock", None),
    "postgresql": ("hil.lease.postgres", "postgres"), "postgres": ("hil.lease.postgres", "postgres"),
}
"""URL scheme -> (module that registers its factory, pip extra it needs): imported on first use."""


def register_lease_store(scheme: str) -> Callable[[LeaseStoreFactory], LeaseStoreFactory]:
    def deco(factory: LeaseStoreFactory) -> LeaseStoreFactory:
        LEASE_STORES[scheme] = factory
        return factory
    return deco


def lease_store_url(inventory: Inventory, url: str | None = None) -> str | None:
    """``url``, else $HIL_LEASE_STORE, else the inventory's ``lease.store`` (None: file locks).

    A URL carrying a password is refused (the inventory refuses one in ``lease.store`` itself):
    the password comes by reference, ``lease.password``, or libpq's PGPASSWORD / .pgpass."""
    for value, source in ((url, "the lease store URL given"), (os.environ.get(STORE_URL_VAR),
                                                               f"${STORE_URL_VAR}")):
        if value:
            if urlparse(value).password is not None:
                raise UserError(f"{source} ({redact_url(value)}) carries a password: secrets are "
                                "references, never values (set lease.password in the inventory, or "
                                "PGPASSWORD)", field="lease.store")
            return value
    return inventory.lease.store


def make_lease_store(inventory: Inventory, url: str | None = None) -> LeaseStore:
    """The lease store asked for (see ``lease_store_url``); file locks by default."""
    import importlib

    from hil.extras import needs_extra

    url = lease_store_url(inventory, url)
    scheme = "" if not url else (urlparse(url).scheme or "file")
    if scheme not in LEASE_STORES and scheme in LEASE_STORE_MODULES:
        module, extra = LEASE_STORE_MODULES[scheme]
        if extra is None:
            importlib.import_module(module)
        else:
            with needs_extra(extra):
                importlib.import_module(module)
    factory = LEASE_STORES.get(scheme)
    if factory is None:
        schemes = set(LEASE_STORES) | set(LEASE_STORE_MODULES)
        known = ", ".join(sorted(s + "://" if s else "(default: file locks)" for s in schemes))
        raise InventoryError(f"no lease store for {redact_url(url or '')!r}; known: {known}",
                             file=str(inventory.path), field="lease.store")
    return factory(inventory, url)


LEASE_DIRECTORY = Path("/var/lib/hil/leases")
"""Default root of file leases: shared by every process of every user on this host, survives
reboots, and (unlike /var/tmp) is not emptied by tmp cleaners. ``lease.directory`` overrides it."""
MAX_TOKEN = 10**18 - 1
"""The highest fencing token: 18 digits, what a hub's shell compares safely (its arithmetic
stops at 2^63); a counter above it is treated as torn."""


def default_lease_directory(lab: str) -> Path:
    return LEASE_DIRECTORY / lab


WAIT_LOGGER = "hil.lease.wait"
"""Where a lease wait says who holds the device and how long it will wait (the pytest
plugin shows these lines on the terminal as they happen)."""
WAIT_REMINDER = 60.0
"""Seconds between "still waiting" lines."""


def _announce_wait(devices: Sequence[str], holders: Callable[[], dict[str, LeaseInfo]], timeout: float,
                   left: float) -> None:
    import datetime as dt
    import logging

    try:
        held = holders()
    except InfrastructureError as exc:  # the store itself is in trouble: say so, keep waiting
        who = f"holder unknown ({exc})"
    else:
        who = "; ".join(f"{d} by {held[d].describe()}" for d in devices if d in held) or "holder unknown"
    until = (dt.datetime.now() + dt.timedelta(seconds=left)).strftime("%H:%M:%S")
    verb = "waiting" if left >= timeout - 1 else "still waiting"
    logging.getLogger(WAIT_LOGGER).info(
        "%s for %s: held (%s); waiting up to %.0f s more (until %s, lease timeout %g s)",
        verb, ", ".join(devices), who, left, until, timeout)


def wait_deadline(timeout: float) -> float:
    return time.monotonic() + max(0.0, timeout)


L = TypeVar("L")


def wait_for_lease(take: Callable[[], L | None], devices: Sequence[str], *, timeout: float,
                   holders: Callable[[], dict[str, LeaseInfo]], poll_max: float) -> L:
    """Call ``take`` with jittered back-off until it yields a lease or ``timeout`` passes
    (then LeaseTimeout naming who holds the devices). Shared by every store."""
    deadline = wait_deadline(timeout)
    pause = 0.05
    next_notice = time.monotonic()
    while True:
        lease = take()
        if lease is not None:
            return lease
        now = time.monotonic()
        left = deadline - now
        if left > 0 and now >= next_notice:
            _announce_wait(devices, holders, timeout, left)
            next_notice = now + WAIT_REMINDER
        if left <= 0:
            held = holders()
            who = "; ".join(f"{d}: {held[d].describe()}" for d in devices if d in held)
            raise LeaseTimeout(f"no free device among {', '.join(devices)} within {timeout:g}s"
                               + (f" (held by {who})" if who else ""))
        time.sleep(min(left, pause * (0.5 + random.random())))
        pause = min(pause * 1.5, poll_max)


def redact_url(url: str) -> str:
    """``url`` without its password (store URLs end up in messages and logs)."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
