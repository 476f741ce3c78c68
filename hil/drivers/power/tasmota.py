"""Tasmota HTTP API (smart plugs, many PDUs; the virtual lab's PDU speaks it too).

``GET {url}/cm?cmnd=Power<N> On|Off`` switches, ``cmnd=Power<N>`` reads the state as
``{"POWER<N>": "ON"}`` (single-relay devices answer ``{"POWER": "ON"}``). With a web
password the request is a ``POST`` whose form body carries ``user``, ``password`` and
``cmnd`` (Tasmota reads its arguments from the query or the body): credentials never go
into a URL, which proxies and web servers log. A password over plain ``http://`` is
still readable on the wire: the driver warns about it once per outlet.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hil.drivers.power.registry import register_power_driver
from hil.errors import InfrastructureError
from hil.inventory import SecretRef
from hil.redact import redact, register_secret
from hil.steps import step
from hil.timeouts import Timeouts

log = logging.getLogger("hil.drivers.power.tasmota")


class PowerError(InfrastructureError):
    """The PDU did not do what it was asked."""


class PduUnreachable(PowerError):
    """Nothing answers at the PDU's address (no connection at all)."""


class TasmotaParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    url: str = Field(pattern=r"^https?://[^\s/]+")
    outlet: int = Field(default=1, ge=0, le=255)
    user: SecretRef | None = None
    password: SecretRef | None = None

    @field_validator("user", "password", mode="before")
    @classmethod
    def _secret(cls, v: object) -> SecretRef | None:
        return None if v is None else SecretRef.parse(v)


@register_power_driver("tasmota")
class TasmotaOutlet:
    Params = TasmotaParams

    def __init__(self, device: str, params: TasmotaParams, timeouts: Timeouts) -> None:
        self.device = device
        self.params = params
        self.timeouts = timeouts
        self._http = requests.Session()
        if (params.user or params.password) and params.url.lower().startswith("http://"):
            log.warning("device %s, field power.url: %s is plain HTTP, so the PDU password crosses the "
                        "network readable by anyone on it; use https:// if the PDU offers it",
                        device, params.url)

    def _auth(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.params.user is not None:
            out["user"] = self.params.user.resolve()
        if self.params.password is not None:
            out["password"] = pw = self.params.password.resolve()
            register_secret(pw)
        return out

    def _command(self, cmnd: str) -> bool:
        url = self.params.url.rstrip("/") + "/cm"
        auth = self._auth()
        try:
            if auth:  # in the form body, never in the URL
                resp = self._http.post(url, data={**auth, "cmnd": cmnd}, timeout=self.timeouts.power_request)
            else:
                resp = self._http.get(url, params={"cmnd": cmnd}, timeout=self.timeouts.power_request)
            resp.raise_for_status()
            body: Any = resp.json()
        except requests.HTTPError:
            raise PowerError(f"{self.device}: PDU {url} refused {cmnd!r}: HTTP {resp.status_code}"
                             + (" (check power.user / power.password)"
                                if resp.status_code in (401, 403) else "")) from None
        except requests.ConnectionError as exc:
            raise PduUnreachable(redact(f"{self.device}: PDU {url} did not answer {cmnd!r}: "
                                        f"{type(exc).__name__}: {exc}")) from None
        except requests.RequestException as exc:
            # whatever requests quotes (a URL, a body) goes through the redactor
            raise PowerError(redact(f"{self.device}: PDU {url} did not answer {cmnd!r}: "
                                    f"{type(exc).__name__}: {exc}")) from None
        except ValueError:
            raise PowerError(f"{self.device}: PDU {url} answered {cmnd!r} with non-JSON "
                             f"{resp.text[:200]!r}") from None
        n = self.params.outlet
        value = body.get(f"POWER{n}", body.get("POWER")) if isinstance(body, dict) else None
        if value not in ("ON", "OFF"):
            raise PowerError(f"{self.device}: PDU {url} answered {cmnd!r} with {body!r} "
                             f"(expected POWER{n} ON/OFF; is outlet {n} right?)")
        return bool(value == "ON")

    def _switch(self, on: bool) -> None:
        word = "On" if on else "Off"
        with step(f"power {word.lower()}", device=self.device, outlet=self.params.outlet):
            state = self._command(f"Power{self.params.outlet} {word}")
            if state != on:
                raise PowerError(f"{self.device}: outlet {self.params.outlet} still "
                                 f"{'ON' if state else 'OFF'} after Power {word}")

    def on(self) -> None:
        self._switch(True)

    def off(self) -> None:
        self._switch(False)

    def cycle(self, off_time: float = 2.0) -> None:
        with step("power cycle", device=self.device, off_time=off_time):
            self.off()
            time.sleep(off_time)
            self.on()

    def status(self) -> bool:
        with step("power status", device=self.device) as st:
            state = self._command(f"Power{self.params.outlet}")
            st.attach("state", "ON" if state else "OFF")
            return state
