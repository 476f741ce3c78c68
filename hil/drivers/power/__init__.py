"""Power drivers behind one protocol (``hil.drivers.base.PowerOutlet``), by name."""

from __future__ import annotations

from hil.drivers.power.registry import POWER_DRIVERS, make_power, power_problems, register_power_driver

# Built-in drivers register themselves on import.
from hil.drivers.power import command as _command  # noqa: F401  isort: skip
from hil.drivers.power import tasmota as _tasmota  # noqa: F401  isort: skip

__all__ = ["POWER_DRIVERS", "make_power", "power_problems", "register_power_driver"]
