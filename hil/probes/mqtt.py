"""MQTT broker checks (OWASP IoT I3/I7): the mutual-TLS matrix and refusals, plaintext 1883,
round trips.

One CONNECT is judged by ``hil.probes.mqtt_connect``: accepted (CONNACK 0), refused
(positive evidence: a TLS alert about the certificate, or a non-zero CONNACK) or
inconclusive (timeout, refused TCP connect, the harness rejecting the server).

A refusal counts only next to a success: ``mtls_refusal`` connects with the valid
identity and the identity under test to the same endpoint with the same TLS settings,
so a broker that is down, or a client set-up that cannot work, is never read as "the
broker refused the certificate". Under TLS 1.3 the alert may never reach the client
(mosquitto closes an expired client's session without one; on a fast link the broker
may close before the CONNECT arrives and the alert is lost to the reset): the same pair
is then tried with the client capped at TLS 1.2, where the alert comes in the handshake.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.errors import DeviceUnreachable, ProductError
from hil.inventory import BrokerExpectation
from hil.probes.mqtt_connect import CONNECT_TIMEOUT, ConnectAttempt, Outcome, connect_attempt
from hil.steps import step

__all__ = ["CONNECT_TIMEOUT", "ClientIdentity", "ConnectAttempt", "MqttRoundTrip", "MtlsMatrix",
           "MtlsRefusal", "broker_identities", "mtls_matrix", "mtls_matrix_for", "mtls_refusal",
           "plaintext_connect"]

Identity = Literal["valid", "none", "expired", "foreign", "anonymous-plaintext"]

TLS_CAPS: tuple[ssl.TLSVersion | None, ...] = (None, ssl.TLSVersion.TLSv1_2)
"""Client caps tried in turn until the broker gives positive evidence (None: no cap)."""


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate to present (or none), with the name the matrix reports it under."""

    name: Identity
    cert_file: Path | None = None
    key_file: Path | None = None
    origin: str = "inventory"
    """Where it came from: "inventory", or "throwaway" (made by the harness for this run)."""


@dataclass(frozen=True)
class MtlsMatrix:
    host: str
    port: int
    attempts: tuple[ConnectAttempt, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("accepted_identities",)

    @property
    def accepted_identities(self) -> tuple[str, ...]:
        return tuple(a.identity for a in self.attempts if a.accepted)

    def attempt(self, identity: str) -> ConnectAttempt | None:
        return next((a for a in self.attempts if a.identity == identity), None)


def _tls_context(ca_file: Path, cert_file: Path | None, key_file: Path | None,
                 maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if maximum is not None:
        ctx.maximum_version = maximum
    if cert_file and key_file:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=mqtt.MQTTv311, clean_session=True)


def broker_identities(broker: BrokerExpectation, *, foreign: ClientIdentity | None = None
                      ) -> tuple[ClientIdentity, ...]:
    """The matrix rows: valid and none always, expired when configured, foreign from the
    inventory or else ``foreign`` (a throwaway identity: any certificate the harness makes
    itself is foreign to the hub's CA by construction)."""
    rows = [ClientIdentity("valid", broker.cert_file, broker.key_file), ClientIdentity("none")]
    if broker.expired_cert_file and broker.expired_key_file:
        rows.append(ClientIdentity("expired", broker.expired_cert_file, broker.expired_key_file))
    if broker.foreign_cert_file and broker.foreign_key_file:
        rows.append(ClientIdentity("foreign", broker.foreign_cert_file, broker.foreign_key_file))
    elif foreign is not None:
        rows.append(foreign)
    return tuple(rows)


def harness_connect(broker: BrokerExpectation, default_host: str, *,
                    timeout: float = CONNECT_TIMEOUT) -> ConnectAttempt:
    """CONNECT with the harness's own identity (``expect.broker.cert_file``): does the broker
    accept its client? Readiness asks this, not whether the port is open."""
    return connect_attempt(broker.host or default_host, broker.port, identity="valid",
                           tls=_tls_context(broker.ca_file, broker.cert_file, broker.key_file),
                           timeout=timeout)


def _attempt(host: str, port: int, ca_file: Path, ident: ClientIdentity, cap: ssl.TLSVersion | None,
             timeout: float, device: str | None) -> ConnectAttempt:
    title = f"MQTT CONNECT as {ident.name}" + (f" (client capped at {cap.name})" if cap else "")
    with step(title, device=device, host=host, port=port) as st:
        att = connect_attempt(host, port, identity=ident.name,
                              tls=_tls_context(ca_file, ident.cert_file, ident.key_file, cap),
                              timeout=timeout)
        st.record(att.accepted)
        st.attach("outcome", f"{att.outcome}: rc={att.reason_code} tls={att.tls_version} {att.error or ''}")
    return att


def mtls_matrix(host: str, port: int, ca_file: Path, identities: Sequence[ClientIdentity], *,
                timeout: float = CONNECT_TIMEOUT, device: str | None = None) -> MtlsMatrix:
    """Try CONNECT with each identity over TLS (server verified against ``ca_file``)."""
    attempts = tuple(_attempt(host, port, ca_file, ident, None, timeout, device) for ident in identities)
    return MtlsMatrix(host=host, port=port, attempts=attempts)


def mtls_matrix_for(broker: BrokerExpectation, default_host: str, *, timeout: float = CONNECT_TIMEOUT,
                    device: str | None = None) -> MtlsMatrix:
    """The matrix for a device's broker expectation from devices.yaml."""
    return mtls_matrix(broker.host or default_host, broker.port, broker.ca_file, broker_identities(broker),
                       timeout=timeout, device=device)


@dataclass(frozen=True)
class MtlsRefusal:
    """Does the broker refuse ``identity``? Judged only next to a valid identity's success."""

    host: str
    port: int
    identity: str
    identity_origin: str
    baselines: tuple[ConnectAttempt, ...]
    """The valid identity, once per client TLS cap tried."""
    attempts: tuple[ConnectAttempt, ...]
    """The identity under test, under the caps where the valid one was accepted."""

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("verdict", "why")

    @property
    def verdict(self) -> Outcome:
        if any(a.outcome == "accepted" for a in self.attempts):
            return "accepted"
        if any(a.outcome == "refused" for a in self.attempts):
            return "refused"
        return "inconclusive"

    @property
    def why(self) -> str:
        if not self.baselines or not self.baselines[0].accepted:
            first = self.baselines[0] if self.baselines else None
            return ("the valid identity was not accepted on the same endpoint"
                    f" ({first.error if first else 'not tried'}): a refusal would prove nothing")
        decisive = next((a for a in self.attempts if a.outcome != "inconclusive"), None)
        if decisive is not None:
            return decisive.error or decisive.reason or decisive.outcome
        return "no positive evidence: " + "; ".join(
            f"{a.max_tls_version or 'uncapped'}: {a.error}" for a in self.attempts)


def mtls_refusal(host: str, port: int, ca_file: Path, valid: ClientIdentity, identity: ClientIdentity, *,
                 timeout: float = CONNECT_TIMEOUT, device: str | None = None) -> MtlsRefusal:
    """Connect as ``valid`` then as ``identity`` with the same client settings, per TLS cap,
    until the broker gives positive evidence about ``identity``."""
    baselines: list[ConnectAttempt] = []
    attempts: list[ConnectAttempt] = []
    for cap in TLS_CAPS:
        base = _attempt(host, port, ca_file, valid, cap, timeout, device)
        baselines.append(base)
        if not base.accepted:
            break  # without a success under the same settings nothing below can be judged
        att = _attempt(host, port, ca_file, identity, cap, timeout, device)
        attempts.append(att)
        if att.outcome != "inconclusive":
            break
    return MtlsRefusal(host=host, port=port, identity=identity.name, identity_origin=identity.origin,
                       baselines=tuple(baselines), attempts=tuple(attempts))


def plaintext_connect(host: str, port: int = 1883, *, timeout: float = CONNECT_TIMEOUT,
                      device: str | None = None) -> ConnectAttempt:
    """Anonymous CONNECT without TLS: on a hub this must not get CONNACK 0 (best: port closed)."""
    with step("MQTT plaintext anonymous CONNECT", device=device, host=host, port=port) as st:
        att = connect_attempt(host, port, identity="anonymous-plaintext", tls=None, timeout=timeout)
        st.record(att.accepted)
        st.attach("outcome", f"{att.outcome}: rc={att.reason_code} {att.error or ''}")
    return att


# -- publish/subscribe round trip --------------------------------------------------------------

class MqttRoundTrip:
    """One TLS client that subscribes to a private topic and times publish -> receive.

    Publisher and receiver are the same client on the same clock, so no clock
    comparison between hosts is involved. Use as a context manager; each call of
    ``round_trip()`` publishes one message and returns when it came back.
    """

    def __init__(self, host: str, port: int, *, ca_file: Path, cert_file: Path, key_file: Path,
                 topic: str | None = None, qos: int = 0, timeout: float = CONNECT_TIMEOUT) -> None:
        self.host, self.port, self.qos, self.timeout = host, port, qos, timeout
        self.topic = topic or f"hil/probe/{uuid.uuid4().hex}"
        self._tls = _tls_context(ca_file, cert_file, key_file)
        self._client = _client(f"hil-rt-{uuid.uuid4().hex[:8]}")
        self._client.tls_set_context(self._tls)
        self._inbox: queue.Queue[bytes] = queue.Queue()
        self._ready = threading.Event()
        self._connack: int | None = None
        self._seq = 0

    def __enter__(self) -> MqttRoundTrip:
        c = self._client

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            self._connack = int(rc.value)
            if self._connack == 0:
                c.subscribe(self.topic, qos=self.qos)

        def on_subscribe(_c: mqtt.Client, _u: Any, _m: Any, _rcs: Any, _p: Any) -> None:
            self._ready.set()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            self._inbox.put(bytes(msg.payload))

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        try:
            c.connect(self.host, self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise DeviceUnreachable(f"MQTT {self.host}:{self.port}: {exc}") from None
        c.loop_start()
        if not self._ready.wait(self.timeout):
            self.close()
            raise ProductError(
                f"MQTT {self.host}:{self.port}: no CONNACK 0 + SUBACK within {self.timeout:.1f} s "
                f"(CONNACK {self._connack})")
        return self

    def round_trip(self) -> float:
        """Publish one message and wait for it; returns the round trip in seconds."""
        self._seq += 1
        payload = f"{self._seq}".encode()
        t0 = time.perf_counter()
        self._client.publish(self.topic, payload, qos=self.qos)
        deadline = t0 + self.timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise ProductError(f"MQTT message {self._seq} not received on {self.topic} within "
                                   f"{self.timeout:.1f} s")
            try:
                got = self._inbox.get(timeout=left)
            except queue.Empty:
                continue
            if got == payload:  # late copies of earlier messages are skipped
                return time.perf_counter() - t0

    __call__ = round_trip

    def close(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
