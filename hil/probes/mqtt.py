"""MQTT broker checks (OWASP IoT I3/I7): the mutual-TLS matrix, plaintext 1883, round trips.

"Accepted" means a CONNACK with reason code 0 arrived within the timeout. Under TLS
1.3 a broker that requires a client certificate still completes the handshake and
only fails the first read, so a finished handshake proves nothing; and paho-mqtt 2.x
does not raise on a refused certificate (``on_connect`` simply never fires).
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from hil.errors import DeviceUnreachable, ProductError
from hil.inventory import BrokerExpectation
from hil.steps import step

Identity = Literal["valid", "none", "expired", "foreign", "anonymous-plaintext"]

CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate to present (or none), with the name the matrix reports it under."""

    name: Identity
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class ConnectAttempt:
    identity: str
    host: str
    port: int
    tls: bool
    accepted: bool
    """True only when CONNACK reason code 0 arrived within the timeout."""
    reason_code: int | None
    """CONNACK reason code, None when no CONNACK came."""
    reason: str | None
    error: str | None
    """What went wrong instead: TLS alert, connection refused, timeout, disconnect."""
    duration: float


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


def _tls_context(ca_file: Path, cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file and key_file:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=mqtt.MQTTv311, clean_session=True)


def connect_attempt(host: str, port: int, *, identity: str, tls: ssl.SSLContext | None,
                    timeout: float = CONNECT_TIMEOUT, username: str | None = None) -> ConnectAttempt:
    """Send CONNECT and wait for CONNACK; report what happened. Never raises for a refusal."""
    client = _client(f"hil-probe-{identity}-{uuid.uuid4().hex[:8]}")
    if tls is not None:
        client.tls_set_context(tls)
    if username:
        client.username_pw_set(username)
    seen: dict[str, Any] = {}

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        seen["rc"] = int(rc.value)
        seen["reason"] = str(rc)

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        seen.setdefault("disconnect", str(rc))

    def on_log(_c: mqtt.Client, _u: Any, level: int, text: str) -> None:
        # paho reports socket/TLS errors of its loop only here (e.g. the TLS 1.3 alert)
        if level == mqtt.MQTT_LOG_ERR:
            seen.setdefault("log", text)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_log = on_log
    error: str | None = None
    t0 = time.perf_counter()
    deadline = t0 + timeout
    try:
        client.connect(host, port, keepalive=max(5, int(timeout) * 2))
        while "rc" not in seen and time.perf_counter() < deadline:
            rc = client.loop(timeout=0.05)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                error = f"connection lost before CONNACK ({rc.name})"
                if "log" in seen:
                    error += f": {seen['log']}"
                break
        else:
            if "rc" not in seen:
                error = f"no CONNACK within {timeout:.1f} s"
    except ssl.SSLError as exc:
        error = f"TLS: {exc.reason or exc}"
    except (OSError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        duration = time.perf_counter() - t0
        # send DISCONNECT if a socket is still open, and let paho close it
        with contextlib.suppress(OSError, ssl.SSLError):
            client.disconnect()
            client.loop(timeout=0.01)
    if error is None and seen.get("disconnect") and "rc" not in seen:
        error = f"disconnected: {seen['disconnect']}"
    rc_value = seen.get("rc")
    if rc_value not in (None, 0):
        error = error or f"CONNACK refused: {seen.get('reason')}"
    return ConnectAttempt(identity=identity, host=host, port=port, tls=tls is not None,
                          accepted=rc_value == 0, reason_code=rc_value, reason=seen.get("reason"),
                          error=error, duration=round(duration, 4))


def broker_identities(broker: BrokerExpectation) -> tuple[ClientIdentity, ...]:
    """The matrix rows the inventory allows: valid and none always, expired/foreign when configured."""
    rows = [ClientIdentity("valid", broker.cert_file, broker.key_file), ClientIdentity("none")]
    if broker.expired_cert_file and broker.expired_key_file:
        rows.append(ClientIdentity("expired", broker.expired_cert_file, broker.expired_key_file))
    if broker.foreign_cert_file and broker.foreign_key_file:
        rows.append(ClientIdentity("foreign", broker.foreign_cert_file, broker.foreign_key_file))
    return tuple(rows)


def mtls_matrix(host: str, port: int, ca_file: Path, identities: tuple[ClientIdentity, ...], *,
                timeout: float = CONNECT_TIMEOUT, device: str | None = None) -> MtlsMatrix:
    """Try CONNECT with each identity over TLS (server verified against ``ca_file``)."""
    attempts = []
    for ident in identities:
        with step(f"MQTT CONNECT as {ident.name}", device=device, host=host, port=port) as st:
            att = connect_attempt(host, port, identity=ident.name,
                                  tls=_tls_context(ca_file, ident.cert_file, ident.key_file),
                                  timeout=timeout)
            st.record(att.accepted)
            st.attach("outcome", f"accepted={att.accepted} rc={att.reason_code} error={att.error}")
        attempts.append(att)
    return MtlsMatrix(host=host, port=port, attempts=tuple(attempts))


def mtls_matrix_for(broker: BrokerExpectation, default_host: str, *, timeout: float = CONNECT_TIMEOUT,
                    device: str | None = None) -> MtlsMatrix:
    """The matrix for a device's broker expectation from devices.yaml."""
    return mtls_matrix(broker.host or default_host, broker.port, broker.ca_file, broker_identities(broker),
                       timeout=timeout, device=device)


def plaintext_connect(host: str, port: int = 1883, *, timeout: float = CONNECT_TIMEOUT,
                      device: str | None = None) -> ConnectAttempt:
    """Anonymous CONNECT without TLS: on a hub this must not get CONNACK 0 (best: port closed)."""
    with step("MQTT plaintext anonymous CONNECT", device=device, host=host, port=port) as st:
        att = connect_attempt(host, port, identity="anonymous-plaintext", tls=None, timeout=timeout)
        st.record(att.accepted)
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
