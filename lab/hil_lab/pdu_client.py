"""The lab's PDU from the lab's own commands, through the harness's Tasmota driver.

One client for the PDU's HTTP API: hil.drivers.power.tasmota (the lab may import the
harness, never the reverse). Here only the lab's address and a friendlier message when
the PDU is not there at all.
"""

from __future__ import annotations

from hil.drivers.power.tasmota import PduUnreachable, TasmotaOutlet, TasmotaParams
from hil.errors import UserError
from hil.timeouts import DEFAULT_TIMEOUTS
from hil_lab.topology import LOOPBACK, PDU_PORT

PDU_URL = f"http://{LOOPBACK}:{PDU_PORT}"


def lab_outlet(outlet: int) -> TasmotaOutlet:
    return TasmotaOutlet(f"outlet {outlet}", TasmotaParams(url=PDU_URL, outlet=outlet), DEFAULT_TIMEOUTS)


def ask_pdu(outlet: int, action: str | None = None) -> bool:
    """``action`` "On", "Off" or None (just ask); whether the outlet is on afterwards."""
    plug = lab_outlet(outlet)
    try:
        if action is None:
            return plug.status()
        if action.lower() not in ("on", "off"):
            raise ValueError(f"PDU action must be On or Off, not {action!r}")
        if action.lower() == "on":
            plug.on()
            return True
        plug.off()
        return False
    except PduUnreachable:
        raise UserError(f"the lab's PDU does not answer on {PDU_URL}: is the lab up? "
                        "(`hil lab up` starts it)") from None
