"""Replay a labelled set through a hub's broker to its model component, and collect what it says.

One mutual-TLS client publishes each row as a sensor message on the card's input topic, on a
fixed schedule, and receives the component's scores and health messages; publisher and
receiver are the same client on the same clock, so end-to-end latency (intended send time ->
score received) needs no clock comparison between hosts, and a component that falls behind
carries its queue in the figures (no coordinated omission). Every message id carries a nonce
of this replay, so scores of earlier replays are ignored. Everything the component sends is
untrusted: a message that does not parse is counted, never believed.
"""

from __future__ import annotations

import json
import math
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.errors import DeviceUnreachable, ProductError
from hil.ml.card import ModelCard
from hil.probes.latency import LatencyEvidence, evidence_from_histogram, new_histogram

CONNECT_TIMEOUT = 10.0
MAX_PAYLOAD = 8192


@dataclass(frozen=True)
class BrokerAccess:
    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass
class Score:
    score: float
    label: int
    inference_us: int | None
    model_sha256: str | None
    received: float
    """perf_counter seconds."""


@dataclass
class HealthEvent:
    at_s: float
    """Seconds since the replay started (harness clock)."""
    drift_detected: bool | None
    drift_enabled: bool | None
    model_sha256: str | None
    doc: dict[str, Any]


@dataclass
class ReplayResult:
    name: str
    rate_hz: float
    sent: int
    scores: list[Score | None]
    """Per row of the set, in order; None: no score came back."""
    health: list[HealthEvent]
    e2e: LatencyEvidence
    inference: LatencyEvidence | None
    """The component's own inference times, as it reported them; None if it reported none."""
    seconds: float
    rejected: int = 0
    """Messages on the score topic that did not parse."""

    @property
    def missing(self) -> int:
        return sum(s is None for s in self.scores)

    def labels(self, default: int = 0) -> list[int]:
        return [s.label if s is not None else default for s in self.scores]

    def score_values(self) -> list[float | None]:
        return [s.score if s is not None else None for s in self.scores]

    def first_drift_s(self) -> float | None:
        return next((h.at_s for h in self.health if h.drift_detected), None)

    @property
    def model_sha256s(self) -> set[str]:
        return {s.model_sha256 for s in self.scores if s is not None and s.model_sha256}


def _context(access: BrokerAccess) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(access.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(access.cert_file), str(access.key_file))
    return ctx


@dataclass
class _Inbox:
    nonce: str
    started: float = 0.0
    scores: dict[int, Score] = field(default_factory=dict)
    health: list[HealthEvent] = field(default_factory=list)
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)


def _parse_score(payload: bytes, nonce: str) -> tuple[int, Score] | None:
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        doc = json.loads(payload)
        ident = doc["id"]
        score = float(doc["score"])
        label = int(doc["label"])
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(ident, str) or not ident.startswith(nonce + "-") or not math.isfinite(score):
        return None
    try:
        index = int(ident[len(nonce) + 1:])
    except ValueError:
        return None
    us = doc.get("inference_us")
    model: dict[str, Any] = m if isinstance(m := doc.get("model"), dict) else {}
    sha = model.get("sha256")
    return index, Score(score=score, label=1 if label else 0,
                        inference_us=int(us) if isinstance(us, int) and us >= 0 else None,
                        model_sha256=sha if isinstance(sha, str) and len(sha) == 64 else None,
                        received=time.perf_counter())


def _parse_health(payload: bytes, at_s: float) -> HealthEvent | None:
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    drift: dict[str, Any] = d if isinstance(d := doc.get("drift"), dict) else {}
    model: dict[str, Any] = m if isinstance(m := doc.get("model"), dict) else {}
    detected, enabled, sha = drift.get("detected"), drift.get("enabled"), model.get("sha256")
    return HealthEvent(at_s=at_s, drift_detected=detected if isinstance(detected, bool) else None,
                       drift_enabled=enabled if isinstance(enabled, bool) else None,
                       model_sha256=sha if isinstance(sha, str) else None, doc=doc)


class ModelChannel:
    """A connected client on the component's topics (a context manager)."""

    def __init__(self, access: BrokerAccess, card: ModelCard, *, timeout: float = CONNECT_TIMEOUT) -> None:
        self.access, self.card, self.timeout = access, card, timeout
        self.inbox = _Inbox(nonce=uuid.uuid4().hex[:12])
        self._ready = threading.Event()
        self._connack: int | None = None
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"hil-ml-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
        self.client.tls_set_context(_context(access))
        self.client.max_inflight_messages_set(1000)

    def __enter__(self) -> ModelChannel:
        c = self.client
        topics = [(self.card.outputs.score_topic, 1), (self.card.outputs.health_topic, 1)]

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            self._connack = int(rc.value)
            if self._connack == 0:
                c.subscribe(topics)

        def on_subscribe(_c: mqtt.Client, _u: Any, _m: Any, _rcs: Any, _p: Any) -> None:
            self._ready.set()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            inbox = self.inbox
            if msg.topic == self.card.outputs.score_topic:
                parsed = _parse_score(bytes(msg.payload), inbox.nonce)
                with inbox.lock:
                    if parsed is None:
                        inbox.rejected += 1
                    elif parsed[0] not in inbox.scores:
                        inbox.scores[parsed[0]] = parsed[1]
                    inbox.arrived.notify_all()
            elif not msg.retain:  # a retained health message is old news
                event = _parse_health(bytes(msg.payload), time.perf_counter() - inbox.started)
                if event is not None:
                    with inbox.lock:
                        inbox.health.append(event)

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        try:
            c.connect(self.access.host, self.access.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise DeviceUnreachable(f"MQTT {self.access.host}:{self.access.port}: {exc}") from None
        c.loop_start()
        if not self._ready.wait(self.timeout):
            self.close()
            raise ProductError(f"MQTT {self.access.host}:{self.access.port}: no CONNACK 0 + SUBACK within "
                               f"{self.timeout:.0f} s (CONNACK {self._connack})")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def _message(self, index: int, row: Sequence[float]) -> bytes:
        doc: dict[str, Any] = {"id": f"{self.inbox.nonce}-{index}"}
        doc.update(zip(self.card.features, row, strict=True))
        return json.dumps(doc).encode()

    def replay(self, name: str, rows: Sequence[Sequence[float]], *, rate_hz: float, drain_timeout: float,
               clock: Callable[[], float] = time.perf_counter) -> ReplayResult:
        """Publish every row at ``rate_hz``; wait up to ``drain_timeout`` s after the last for scores."""
        inbox = self.inbox
        with inbox.lock:  # one channel, several replays: each starts afresh under a new nonce
            inbox.nonce, inbox.scores, inbox.health, inbox.rejected = uuid.uuid4().hex[:12], {}, [], 0
        interval = 1.0 / rate_hz
        intended: list[float] = []
        start = clock()
        inbox.started = start
        for i, row in enumerate(rows):
            due = start + i * interval
            now = clock()
            if due > now:
                time.sleep(due - now)
            intended.append(due)
            self.client.publish(self.card.input_schema.topic, self._message(i, row), qos=1)
        deadline = clock() + drain_timeout
        with inbox.lock:
            while len(inbox.scores) < len(rows) and clock() < deadline:
                inbox.arrived.wait(timeout=min(0.5, max(0.0, deadline - clock())))
            scores = dict(inbox.scores)
            health = list(inbox.health)
            rejected = inbox.rejected
        e2e = new_histogram()
        inf = new_histogram()
        for i, s in scores.items():
            if 0 <= i < len(intended):
                e2e.record_value(max(1, round((s.received - intended[i]) * 1e6)))
            if s.inference_us is not None:
                inf.record_value(max(1, s.inference_us))
        missing = len(rows) - len(scores)
        return ReplayResult(
            name=name, rate_hz=rate_hz, sent=len(rows),
            scores=[scores.get(i) for i in range(len(rows))], health=health,
            e2e=evidence_from_histogram("ml_e2e_latency", e2e, errors=missing, rate_hz=rate_hz),
            inference=evidence_from_histogram("ml_inference_time", inf, rate_hz=rate_hz)
            if inf.get_total_count() else None,
            seconds=clock() - start, rejected=rejected)

    def first_score(self, row: Sequence[float], *, timeout: float, every: float = 0.2) -> float | None:
        """Seconds from now until the component scores a message (one sent every ``every`` s)."""
        start = time.perf_counter()
        inbox = self.inbox
        with inbox.lock:
            inbox.nonce, inbox.scores = uuid.uuid4().hex[:12], {}
        i = 0
        while time.perf_counter() - start < timeout:
            self.client.publish(self.card.input_schema.topic, self._message(i, row), qos=1)
            i += 1
            with inbox.lock:
                inbox.arrived.wait(timeout=every)
                if inbox.scores:
                    first = min(s.received for s in inbox.scores.values())
                    return first - start
        return None

    def wait_health(self, timeout: float) -> HealthEvent | None:
        """The next health message (the component sends one every few seconds)."""
        deadline = time.perf_counter() + timeout
        with self.inbox.lock:
            seen = len(self.inbox.health)
        while time.perf_counter() < deadline:
            with self.inbox.lock:
                if len(self.inbox.health) > seen:
                    return self.inbox.health[-1]
            time.sleep(0.1)
        return None
