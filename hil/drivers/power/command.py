"""Labgrid-style external power: the inventory gives on/off/status commands as argv lists.

``status`` exits 0 when the outlet is on and 1 when it is off; any other exit status
or output on stderr is an error. Commands run on the harness host, not on the hub.
"""

from __future__ import annotations

import subprocess
import time

from pydantic import BaseModel, ConfigDict, Field

from hil.drivers.power.registry import register_power_driver
from hil.drivers.power.tasmota import PowerError
from hil.errors import CommandTimeout
from hil.steps import step
from hil.timeouts import Timeouts


class CommandParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    on: list[str] = Field(min_length=1)
    off: list[str] = Field(min_length=1)
    status: list[str] | None = None
    """Exit 0 = on, 1 = off. Without it, status() is not available."""
    cycle: list[str] | None = None
    """Optional single command for a power cycle; default: off, wait, on."""


@register_power_driver("command")
class CommandOutlet:
    Params = CommandParams

    def __init__(self, device: str, params: CommandParams, timeouts: Timeouts) -> None:
        self.device = device
        self.params = params
        self.timeouts = timeouts

    def _exec(self, what: str, argv: list[str], ok: tuple[int, ...] = (0,)) -> int:
        with step(f"power {what}: {' '.join(argv)}", device=self.device) as st:
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                      timeout=self.timeouts.power_request)
            except subprocess.TimeoutExpired:
                raise CommandTimeout(f"{self.device}: power {what} command {argv} did not finish "
                                     f"within {self.timeouts.power_request:g}s") from None
            except OSError as exc:
                raise PowerError(f"{self.device}: power {what} command {argv} cannot run: "
                                 f"{exc.strerror or exc}") from None
            st.record(proc.returncode)
            st.attach("stdout", proc.stdout)
            st.attach("stderr", proc.stderr)
            if proc.returncode not in ok:
                tail = (proc.stderr or proc.stdout).strip()[-300:]
                raise PowerError(f"{self.device}: power {what} command {argv} exited "
                                 f"{proc.returncode}: {tail}")
            return proc.returncode

    def on(self) -> None:
        self._exec("on", self.params.on)

    def off(self) -> None:
        self._exec("off", self.params.off)

    def cycle(self, off_time: float = 2.0) -> None:
        if self.params.cycle:
            self._exec("cycle", self.params.cycle)
            return
        self.off()
        time.sleep(off_time)
        self.on()

    def status(self) -> bool:
        if self.params.status is None:
            raise PowerError(f"{self.device}: power driver 'command' has no status command "
                             "(set power.status in devices.yaml)")
        return self._exec("status", self.params.status, ok=(0, 1)) == 0
