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
    ssh_keepalive: PositiveFloat = 15.0
    console_open: PositiveFloat = 5.0
    console_login: PositiveFloat = 20.0
    console_command: PositiveFloat = 30.0
    power_request: PositiveFloat = 10.0
    boot: PositiveFloat = 120.0
    """Power on -> login prompt on the console and SSH answering."""
    recovery: PositiveFloat = 240.0
    """Whole recovery of one hub (console, power cycle, re-check)."""
    lease: PositiveFloat = 600.0
    """How long a test waits for a free device before skipping as infrastructure."""
    deployment: PositiveFloat = 300.0
    settle: PositiveFloat = 10.0
    """How long deployed components must stay RUNNING/FINISHED to count as stable."""
    health: PositiveFloat = 20.0


DEFAULT_TIMEOUTS = Timeouts()
