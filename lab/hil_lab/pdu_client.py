"""Talk to the lab's PDU over its HTTP API, as a user (or the harness) would."""

from __future__ import annotations

from typing import Any

import requests

from hil.errors import InfrastructureError, UserError
from hil.timeouts import DEFAULT_TIMEOUTS
from hil_lab.topology import LOOPBACK, PDU_PORT

PDU_URL = f"http://{LOOPBACK}:{PDU_PORT}"


def ask_pdu(outlet: int, action: str | None = None, *,
            timeout: float = DEFAULT_TIMEOUTS.power_request) -> bool:
    """Send ``Power<outlet> [action]``; return whether the outlet is on afterwards."""
    cmnd = f"Power{outlet}" + (f" {action}" if action else "")
    try:
        resp = requests.get(f"{PDU_URL}/cm", params={"cmnd": cmnd}, timeout=timeout)
        body: Any = resp.json()
    except requests.ConnectionError:
        raise UserError(f"the lab's PDU does not answer on {PDU_URL}: is the lab up? "
                        "(`hil lab up` starts it)") from None
    except (requests.RequestException, ValueError) as exc:
        raise InfrastructureError(f"the lab's PDU failed on {cmnd!r}: {exc}") from None
    state = body.get(f"POWER{outlet}") if isinstance(body, dict) else None
    if state not in ("ON", "OFF"):
        raise InfrastructureError(f"the lab's PDU answered {cmnd!r} with {body!r}")
    return bool(state == "ON")
