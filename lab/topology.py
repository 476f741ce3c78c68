"""Names and numbers of the virtual rack (lab/CONTRACT.md), computed in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
REPO_ROOT = LAB_DIR.parent
STATE_DIR = LAB_DIR / ".state"

LABEL = "hil-lab"
"""Label (value "1") on every container, network and volume the lab creates."""
HUB_LABEL = "hil-lab.hub"
ROLE_LABEL = "hil-lab.role"
"""On the containers `lab up` runs (hub|registry). Lab images carry hil-lab=1 too, and a
container inherits its image's labels: `down` must not remove containers that someone
ran by hand from a lab image, so it selects on this label as well."""
NETWORK = "hil-lab"
SUBNET = "172.28.77.0/24"
GATEWAY = "172.28.77.1"
REGISTRY_CONTAINER = "hil-lab-registry"
REGISTRY_ADDRESS = "172.28.77.5"
REGISTRY_PORT = 5000
REGISTRY_HOST_PORT = 47500
LOOPBACK = "127.0.0.1"
PDU_PORT = 47080
CONSOLE_BASE_PORT = 47100
VULN_INDEX = 90
MAX_HUBS = 60
"""Addresses .11 .. .70 stay clear of the registry (.5) and the vulnerable hub (.90)."""
DEFAULT_HUBS = 3
COMPONENT_REPOSITORIES = {"web": "hil/web:1.0", "app": "hil/app:1.0", "db": "hil/db:1.0"}


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
        return f"hil-lab-{self.name}"

    @property
    def volume(self) -> str:
        return f"hil-lab-{self.name}-docker"

    @property
    def address(self) -> str:
        return "172.28.77.90" if self.index == VULN_INDEX else f"172.28.77.{10 + self.index}"

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


def hub_by_outlet(outlet: int) -> HubSpec | None:
    if outlet == VULN_INDEX or 1 <= outlet <= MAX_HUBS:
        return HubSpec(outlet)
    return None


def rack(hubs: int, *, with_vulnerable: bool) -> list[HubSpec]:
    specs = [HubSpec(i) for i in range(1, hubs + 1)]
    if with_vulnerable:
        specs.append(HubSpec(VULN_INDEX))
    return specs
