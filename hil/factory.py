"""Builds a hub from its inventory record: its channels (drivers), its recovery strategy.

Which class serves which channel is decided here and only here: SSH by
``SshConnection``, the console by ``SerialConsole`` (any pyserial URL), the outlet by
the power-driver registry (``power: {driver: ...}``), the recovery steps by
``hil.recovery.RECOVERY_STEPS`` (``recovery: [...]``). Nothing is connected yet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hil.channels import ConsoleFactory, HubChannels
from hil.drivers.base import Console, PowerOutlet
from hil.drivers.console import SerialConsole
from hil.drivers.power import make_power
from hil.drivers.ssh import SshConnection
from hil.hub import Hub
from hil.inventory import Device
from hil.recovery import RecoveryStrategy
from hil.timeouts import DEFAULT_TIMEOUTS, Timeouts

OutletWrapper = Callable[[PowerOutlet], PowerOutlet]
"""Wraps the outlet a hub gets (the pool: power only while the lease is held)."""


def build_channels(device: Device, timeouts: Timeouts = DEFAULT_TIMEOUTS, *, capture_dir: Path | None = None,
                   wrap_power: OutletWrapper | None = None) -> HubChannels:
    power = make_power(device, timeouts) if device.power is not None else None
    if power is not None and wrap_power is not None:
        power = wrap_power(power)
    console: ConsoleFactory | None = None
    if device.console is not None:
        spec = device.console
        capture = capture_dir / f"{device.name}.console.log" if capture_dir else None

        def console() -> Console:
            return SerialConsole(device.name, spec, timeouts, capture)

    return HubChannels(device.name, SshConnection(device.name, device.ssh, timeouts), console=console,
                       power=power, timeouts=timeouts)


def build_hub(device: Device, timeouts: Timeouts = DEFAULT_TIMEOUTS, *, capture_dir: Path | None = None,
              wrap_power: OutletWrapper | None = None) -> Hub:
    """A hub with the drivers and the recovery strategy its inventory entry names."""
    return Hub(device, build_channels(device, timeouts, capture_dir=capture_dir, wrap_power=wrap_power),
               RecoveryStrategy.for_device(device), timeouts=timeouts)
