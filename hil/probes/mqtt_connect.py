"""One MQTT CONNECT over TCP or TLS, and what the peer did about it, with positive evidence.

"Accepted" is a CONNACK with return code 0. "Refused" needs positive evidence from the
broker: a TLS alert about the client's certificate (during the handshake under TLS 1.2,
on the first read under TLS 1.3) or a CONNACK with a non-zero code. Everything else -
a timeout, a refused TCP connect, the harness rejecting the server's certificate, a
connection closed without an alert - is "inconclusive": it proves nothing about
authentication, and a check must not count it as a refusal.

A minimal hand-written CONNECT (MQTT 3.1.1) rather than paho: paho turns the TLS 1.3
alert into a log line and never raises, so the alert could only be recovered by
parsing text; here it arrives as ``ssl.SSLError.reason``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["accepted", "refused", "inconclusive"]

CONNECT_TIMEOUT = 5.0
KEEPALIVE_S = 30

REFUSAL_ALERTS: frozenset[str] = frozenset({
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV1_ALERT_DECRYPT_ERROR",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
})
"""OpenSSL's names for alerts RECEIVED from the peer that refuse the client's identity.
Alerts about something else (protocol_version, insufficient_security, internal_error)
say nothing about authentication and stay inconclusive."""

CONNACK_CODES = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


@dataclass(frozen=True)
class ConnectAttempt:
    identity: str
    host: str
    port: int
    tls: bool
    outcome: Outcome
    accepted: bool
    """True only when CONNACK return code 0 arrived within the timeout."""
    reason_code: int | None
    """CONNACK return code, None when no CONNACK came."""
    reason: str | None
    """The CONNACK code's meaning or the TLS alert received."""
    error: str | None
    """What happened instead of CONNACK 0: the alert, the code, the timeout, the refused connect."""
    duration: float
    tls_version: str | None = None
    max_tls_version: str | None = None
    """The client's cap for this attempt (None: the highest both sides speak)."""


def connect_packet(client_id: str, keepalive: int = KEEPALIVE_S, username: str | None = None) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session (and an optional user name)."""
    flags = 0x02 | (0x80 if username else 0)
    variable = b"\x00\x04MQTT\x04" + bytes([flags]) + keepalive.to_bytes(2, "big")
    payload = _utf8(client_id) + (_utf8(username) if username else b"")
    return b"\x10" + _remaining_length(len(variable) + len(payload)) + variable + payload


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def parse_connack(data: bytes) -> int | None:
    """The return code of a CONNACK packet, None when ``data`` is not one."""
    if len(data) == 4 and data[0] == 0x20 and data[1] == 0x02:
        return data[3]
    return None


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        sock.settimeout(max(0.01, deadline - time.perf_counter()))
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


class _Result:
    def __init__(self) -> None:
        self.outcome: Outcome = "inconclusive"
        self.code: int | None = None
        self.reason: str | None = None
        self.error: str | None = None
        self.tls_version: str | None = None

    def alert(self, exc: ssl.SSLError, when: str) -> None:
        reason = str(exc.reason or "")
        self.reason = reason or None
        if reason in REFUSAL_ALERTS:
            self.outcome = "refused"
            self.error = f"TLS alert from the broker {when}: {reason}"
        elif isinstance(exc, ssl.SSLCertVerificationError):
            self.error = (f"the harness rejected the broker's certificate ({exc.verify_message}): "
                          "nothing was learnt about the client's identity")
        elif isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            self.error = f"connection closed {when} without a TLS alert"
        else:
            self.error = f"TLS error {when} that does not concern the client identity: {reason or exc}"


def _exchange(res: _Result, host: str, port: int, tls: ssl.SSLContext | None, timeout: float,
              packet: bytes, server_hostname: str, opened: list[socket.socket]) -> None:
    """TCP connect, TLS handshake, CONNECT, CONNACK: fills ``res`` and returns at the first answer."""
    deadline = time.perf_counter() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        res.error = f"TCP connect to {host}:{port} failed ({type(exc).__name__}: {exc}): no broker answered"
        return
    opened.append(sock)
    if tls is not None:
        try:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname)
        except ssl.SSLError as exc:
            res.alert(exc, "during the handshake")
            return
        except OSError as exc:  # includes TimeoutError
            res.error = f"TLS handshake did not complete ({type(exc).__name__}: {exc})"
            return
        opened.append(sock)
        res.tls_version = sock.version()
    try:
        sock.sendall(packet)
        data = _recv_exact(sock, 4, deadline)
    except ssl.SSLError as exc:
        res.alert(exc, "after CONNECT")
        return
    except TimeoutError:
        res.error = f"no CONNACK within {timeout:.1f} s"
        return
    except OSError as exc:
        res.error = f"connection lost before CONNACK ({type(exc).__name__}: {exc})"
        return
    code = parse_connack(data)
    if code is None:
        res.error = ("connection closed without CONNACK or TLS alert" if not data
                     else f"not a CONNACK: {data[:8].hex()}")
    elif code == 0:
        res.outcome, res.code, res.reason = "accepted", 0, CONNACK_CODES[0]
        with contextlib.suppress(OSError):
            sock.sendall(b"\xe0\x00")  # DISCONNECT: a clean end in the broker's log
    else:
        res.outcome, res.code = "refused", code
        res.reason = CONNACK_CODES.get(code, f"code {code}")
        res.error = f"CONNACK refused: {res.reason}"


def connect_attempt(host: str, port: int, *, identity: str, tls: ssl.SSLContext | None,
                    timeout: float = CONNECT_TIMEOUT, username: str | None = None,
                    server_hostname: str | None = None) -> ConnectAttempt:
    """Send one CONNECT and classify what came back. Never raises for a refusal."""
    res = _Result()
    opened: list[socket.socket] = []
    t0 = time.perf_counter()
    packet = connect_packet(f"hil-probe-{identity}-{uuid.uuid4().hex[:8]}", username=username)
    try:
        _exchange(res, host, port, tls, timeout, packet, server_hostname or host, opened)
    finally:
        for sock in reversed(opened):
            with contextlib.suppress(OSError):
                sock.close()
    cap = tls.maximum_version if tls is not None else None
    return ConnectAttempt(
        identity=identity, host=host, port=port, tls=tls is not None, outcome=res.outcome,
        accepted=res.outcome == "accepted", reason_code=res.code, reason=res.reason, error=res.error,
        duration=round(time.perf_counter() - t0, 4), tls_version=res.tls_version,
        max_tls_version=None if cap in (None, ssl.TLSVersion.MAXIMUM_SUPPORTED) else str(cap.name))
