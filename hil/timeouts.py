"""Every default timeout of the harness, in one place (seconds).

Inventory ``defaults.timeouts`` may override any of these per lab; code takes a
``Timeouts`` value and never hard-codes a number.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, PositiveFloat


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    ssh_connect: PositiveFloat = 10.0
    ssh_command: PositiveFloat = 60.0
    ssh_keepalive: PositiveFloat = 5.0
    """SSH keepalive requests on an idle connection: the traffic that lets ``ssh_dead_peer`` see
    a dead link while the harness only waits (for a command's output, for a deployment)."""
    ssh_dead_peer: PositiveFloat = 10.0
    """A hub whose TCP stops acknowledging (power cut, cable) for this long is declared unreachable:
    TCP_USER_TIMEOUT and keepalive probes on the socket, and the longest an SFTP transfer may go
    without moving a byte. So a dead hub is found within ssh_keepalive + ssh_dead_peer."""
    transfer_base: PositiveFloat = 10.0
    transfer_min_rate: PositiveFloat = 256 * 1024
    """Bytes per second: a file transfer of N bytes must finish within
    transfer_base + N / transfer_min_rate seconds (``transfer``)."""
    console_open: PositiveFloat = 5.0
    console_login: PositiveFloat = 20.0
    console_command: PositiveFloat = 30.0
    power_request: PositiveFloat = 10.0
    boot: PositiveFloat = 120.0
    """Power on -> login prompt on the console and SSH answering."""
    recovery: PositiveFloat = 240.0
    """Whole recovery of one hub (console, power cycle, re-check)."""
    ready: PositiveFloat = 90.0
    """Once a hub answers on SSH (first contact, after boot or recovery): how long its declared
    services (nucleus, engine, broker, console) may take to answer before it counts as unfit."""
    lease: PositiveFloat = 600.0
    """How long a test waits for a free device before skipping as infrastructure."""
    deployment: PositiveFloat = 300.0
    settle: PositiveFloat = 10.0
    """How long deployed components must stay RUNNING/FINISHED to count as stable."""
    health: PositiveFloat = 20.0
    cancel_grace: PositiveFloat = 30.0
    """After the first SIGTERM/SIGINT: how long the harness may take to restore the hubs it
    changed, release its leases and write its results before it stops anyway. Keep it below the
    CI system's kill timeout (see docs/ci.md)."""

    def transfer(self, size: int) -> float:
        """Deadline (seconds) of a file transfer of ``size`` bytes."""
        return self.transfer_base + max(0, size) / self.transfer_min_rate


DEFAULT_TIMEOUTS = Timeouts()
