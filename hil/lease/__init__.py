"""Device leases: a hub is used by exactly one test process at a time.

Callers see only the ``LeaseStore`` protocol; ``make_lease_store`` picks a backend
from the inventory's ``lease.store`` URL scheme through a registry, so a shared
store for several CI runners can be added without touching callers.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from hil.errors import InfrastructureError, InventoryError

if TYPE_CHECKING:
    from hil.inventory import Inventory

_CI_JOB_VARS = ("CI_JOB_ID", "GITHUB_RUN_ID", "BUILD_TAG")


class LeaseTimeout(InfrastructureError):
    """No device became free before the lease timeout."""


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

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json_dict(cls, raw: dict[str, Any]) -> LeaseInfo:
        return cls(device=str(raw["device"]), holder_host=str(raw["holder_host"]),
                   holder_pid=int(raw["holder_pid"]), ci_job=raw.get("ci_job"),
                   since=float(raw["since"]))

    def describe(self) -> str:
        job = f", {self.ci_job}" if self.ci_job else ""
        age = time.time() - self.since
        return f"pid {self.holder_pid} on {self.holder_host}{job}, for {age:.0f}s"


class Lease(Protocol):
    device: str
    info: LeaseInfo

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


LeaseStoreFactory = Callable[["Inventory", str | None], LeaseStore]
"""(inventory, store URL or None) -> store."""

LEASE_STORES: dict[str, LeaseStoreFactory] = {}
"""URL scheme -> factory. "" is the default (file locks on this host)."""


def register_lease_store(scheme: str) -> Callable[[LeaseStoreFactory], LeaseStoreFactory]:
    def deco(factory: LeaseStoreFactory) -> LeaseStoreFactory:
        LEASE_STORES[scheme] = factory
        return factory
    return deco


def make_lease_store(inventory: Inventory) -> LeaseStore:
    """The lease store the inventory asks for (``lease.store``); file locks by default."""
    from hil.lease import filelock  # noqa: F401  (registers the default backend)

    url = inventory.lease.store
    scheme = "" if not url else (urlparse(url).scheme or "file")
    factory = LEASE_STORES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(s + "://" if s else "(default: file locks)" for s in LEASE_STORES))
        raise InventoryError(f"no lease store for {url!r}; known: {known}",
                             file=str(inventory.path), field="lease.store")
    return factory(inventory, url)


def default_lease_directory(lab: str) -> Path:
    # Shared by every process of every user on this host, and survives reboots on purpose.
    return Path("/var/tmp/hil-leases") / lab  # noqa: S108


def wait_deadline(timeout: float) -> float:
    return time.monotonic() + max(0.0, timeout)
