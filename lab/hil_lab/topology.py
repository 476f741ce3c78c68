"""Names and numbers of the virtual rack (lab/CONTRACT.md), computed in one place."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
"""The hil_lab package: its image inputs (hub/, images/) live beside the code."""
REPO_ROOT = LAB_DIR.parents[1]
STATE_DIR = REPO_ROOT / "lab" / ".state"

SLOT_ENV = "HIL_LAB_SLOT"
MAX_SLOT = 9


def _slot_from_env() -> int:
    raw = os.environ.get(SLOT_ENV, "0").strip() or "0"
    if not raw.isdigit() or int(raw) > MAX_SLOT:
        raise ValueError(f"{SLOT_ENV}={raw!r}: a lab slot is a number 0..{MAX_SLOT}")
    return int(raw)


SLOT = _slot_from_env()
"""Several virtual racks can share one Docker engine (parallel checkouts, CI jobs on one
host): slot N shifts every name, subnet and host port. Slot 0 is the default lab that the
checked-in devices.yaml describes; `lab up` writes devices.slot-N.yaml for the others."""
_SUFFIX = "" if SLOT == 0 else f"-s{SLOT}"
_OCTET = 77 + SLOT
_PORT_SHIFT = 1000 * SLOT

LABEL = "hil-lab"
"""Label (value "1") on every container, network and volume the lab creates."""
SLOT_LABEL = "hil-lab.slot"
"""On every container, network and volume: `down` and lookups touch only their own slot's."""
HUB_LABEL = "hil-lab.hub"
ROLE_LABEL = "hil-lab.role"
"""On the containers `lab up` runs (hub|registry). Lab images carry hil-lab=1 too, and a
container inherits its image's labels: `down` must not remove containers that someone
ran by hand from a lab image, so it selects on this label as well."""
NETWORK = f"hil-lab{_SUFFIX}"
SUBNET = f"172.28.{_OCTET}.0/24"
GATEWAY = f"172.28.{_OCTET}.1"
REGISTRY_CONTAINER = f"hil-lab{_SUFFIX}-registry"
REGISTRY_ADDRESS = f"172.28.{_OCTET}.5"
REGISTRY_NAME = "registry.lab"
"""The name hubs and candidates use for the lab registry (each hub resolves it to its own
slot's registry), so candidates do not depend on the slot's addresses."""
REGISTRY_PORT = 5000
REGISTRY_HOST_PORT = 47500 + _PORT_SHIFT
LOOPBACK = "127.0.0.1"
PDU_PORT = 47080 + _PORT_SHIFT
CONSOLE_BASE_PORT = 47100 + _PORT_SHIFT
VULN_INDEX = 90
MAX_HUBS = 60
"""Addresses .11 .. .70 stay clear of the registry (.5), the vulnerable hub (.90) and the
plain hub (.95)."""

PLAIN_NAME = "hub-plain"
"""A second kind of hub: plain Debian with its own image and configuration (not hil-lab-init),
sshd and a mutual-TLS broker only, on other ports and paths (lab/hil_lab/plain_hub.py)."""
PLAIN_ADDRESS = f"172.28.{_OCTET}.95"
PLAIN_CONTAINER = f"hil-lab{_SUFFIX}-{PLAIN_NAME}"
PLAIN_SSH_PORT = 2222
PLAIN_BROKER_PORT = 8884
PLAIN_USER = "qa"
DEFAULT_HUBS = 3


def lab_inventory_path(hub_count: int = 3) -> Path:
    """The inventory describing this slot's lab: the checked-in devices.yaml for the default rack."""
    if SLOT == 0:
        return REPO_ROOT / ("devices.yaml" if hub_count == 3 else f"devices.lab-{hub_count}.yaml")
    return REPO_ROOT / (f"devices.slot-{SLOT}.yaml" if hub_count == 3
                        else f"devices.slot-{SLOT}-lab-{hub_count}.yaml")


COMPONENT_REPOSITORIES = {"web": "hil/web:1.0", "app": "hil/app:1.0", "db": "hil/db:1.0",
                          "agent": "hil/agent:0.9", "ml-infer": "hil/ml-infer:1.0"}


class Profile(StrEnum):
    HARDENED = "hardened"
    VULNERABLE = "vulnerable"


@dataclass(frozen=True)
class HubSpec:
    """One hub of the virtual rack and every name derived from its index."""

    index: int

    @property
    def name(self) -> str:
        return "hub-vuln" if self.index == VULN_INDEX else f"hub-{self.index:02d}"

    @property
    def profile(self) -> Profile:
        return Profile.VULNERABLE if self.index == VULN_INDEX else Profile.HARDENED

    @property
    def container(self) -> str:
        return f"hil-lab{_SUFFIX}-{self.name}"

    @property
    def volume(self) -> str:
        return f"hil-lab{_SUFFIX}-{self.name}-docker"

    @property
    def address(self) -> str:
        return f"172.28.{_OCTET}.90" if self.index == VULN_INDEX else f"172.28.{_OCTET}.{10 + self.index}"

    @property
    def outlet(self) -> int:
        return self.index

    @property
    def console_port(self) -> int:
        return CONSOLE_BASE_PORT + self.index

    @property
    def console_url(self) -> str:
        return f"socket://{LOOPBACK}:{self.console_port}"


_NAME_RE = re.compile(r"^hub-(?:(?P<n>\d{2})|vuln)$")


def hub_by_name(name: str) -> HubSpec | None:
    """The hub called ``name`` (hub-NN or hub-vuln), or None when the name is not a hub's."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    if m.group("n") is None:
        return HubSpec(VULN_INDEX)
    n = int(m.group("n"))
    return HubSpec(n) if 1 <= n <= MAX_HUBS else None


def rack(hubs: int, *, with_vulnerable: bool) -> list[HubSpec]:
    specs = [HubSpec(i) for i in range(1, hubs + 1)]
    if with_vulnerable:
        specs.append(HubSpec(VULN_INDEX))
    return specs
