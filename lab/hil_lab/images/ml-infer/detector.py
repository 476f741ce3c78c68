"""The anomaly detector component: an ONNX model served on the hub's MQTT broker.

Edge Manager style: it loads the model file it was deployed with, scores every sensor
message it receives and publishes the score, and reports the model's health (identity,
message count, inference time, input drift) on a topic of its own.

Reads (environment, set by the component's docker-compose file):
  HBS_MODEL            the ONNX file (default /model/model.onnx)
  HBS_BROKER_HOST/PORT the hub's broker (mutual TLS); HBS_CERT_DIR holds ca.pem, device.pem, device.key
  HBS_INPUT_TOPIC, HBS_SCORE_TOPIC, HBS_HEALTH_TOPIC
  HBS_DRIFT_ENABLED    "false" turns the drift monitor off (it then never reports drift)
  HBS_HEALTH_PERIOD_S  seconds between health messages (also sent at once when drift changes)

Input message (JSON): {"id": str, "temperature_c": num, "humidity_pct": num, "pump_current_a": num}.
Score message: {"id", "score", "label", "inference_us", "model": {"name", "version", "sha256"}}.
Health message: {"status", "model", "messages", "rejected", "drift": {...}, "inference_us": {...}}.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import signal
import ssl
import sys
import threading
import time
from collections import deque

import numpy as np
import onnxruntime as ort
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ENV = os.environ
MAX_PAYLOAD = 4096


def log(msg: str) -> None:
    print(f"detector: {msg}", flush=True)


class Model:
    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            data = f.read()
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.size = len(data)
        ort.disable_telemetry_events()  # read-only file system: nothing to persist, no warning
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.name = meta.get("hbs.model.name", "unknown")
        self.version = meta.get("hbs.model.version", "unknown")
        self.features = json.loads(meta["hbs.features"])
        self.threshold = float(meta["hbs.threshold"])
        self.mean = np.array(json.loads(meta["hbs.training.mean"]), dtype=np.float64)
        self.std = np.array(json.loads(meta["hbs.training.std"]), dtype=np.float64)
        self.drift = json.loads(meta["hbs.drift"])

    def identity(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "size_bytes": self.size}

    def score(self, row: list[float]) -> tuple[float, int]:
        x = np.array([row], dtype=np.float32)
        t0 = time.perf_counter_ns()
        probabilities = self.session.run(["probabilities"], {self.input: x})[0]
        elapsed_us = (time.perf_counter_ns() - t0) // 1000
        return float(probabilities[0][1]), int(elapsed_us)


class DriftMonitor:
    """Per feature: |mean of the last `window` messages - training mean| / training std."""

    def __init__(self, model: Model, enabled: bool) -> None:
        self.enabled = enabled
        self.window = int(model.drift["window"])
        self.min_messages = int(model.drift["min_messages"])
        self.z_threshold = float(model.drift["z_threshold"])
        self.mean, self.std, self.features = model.mean, model.std, model.features
        self.rows: deque[list[float]] = deque(maxlen=self.window)
        self.z: list[float] = [0.0] * len(self.features)
        self.detected = False

    def add(self, row: list[float]) -> bool:
        """Add one message; True when the drift state changed."""
        if not self.enabled:
            return False
        self.rows.append(row)
        if len(self.rows) < self.min_messages:
            return False
        m = np.mean(np.array(self.rows, dtype=np.float64), axis=0)
        self.z = [round(float(v), 3) for v in np.abs(m - self.mean) / self.std]
        now = max(self.z) > self.z_threshold
        changed, self.detected = now != self.detected, now
        return changed

    def report(self) -> dict[str, object]:
        return {"enabled": self.enabled, "detected": self.detected, "window": len(self.rows),
                "z_threshold": self.z_threshold, "z": dict(zip(self.features, self.z, strict=True))}


class Detector:
    def __init__(self) -> None:
        self.model = Model(ENV.get("HBS_MODEL", "/model/model.onnx"))
        self.drift = DriftMonitor(self.model, ENV.get("HBS_DRIFT_ENABLED", "true").lower() != "false")
        self.input_topic = ENV.get("HBS_INPUT_TOPIC", "hbs/pump/sensors")
        self.score_topic = ENV.get("HBS_SCORE_TOPIC", "hbs/pump/anomaly")
        self.health_topic = ENV.get("HBS_HEALTH_TOPIC", "hbs/pump/model-health")
        self.period = float(ENV.get("HBS_HEALTH_PERIOD_S", "2"))
        self.inbox: queue.Queue[bytes] = queue.Queue()
        self.messages = 0
        self.rejected = 0
        self.recent_us: deque[int] = deque(maxlen=1000)
        self.started = time.time()
        self.stop = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"hbs-anomaly-{os.getpid()}", protocol=mqtt.MQTTv311)
        certs = ENV.get("HBS_CERT_DIR", "/certs")
        ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(f"{certs}/device.pem", f"{certs}/device.key")
        self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        log(f"connected to the broker ({rc}); subscribing to {self.input_topic}")
        client.subscribe(self.input_topic, qos=1)
        self.publish_health()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(bytes(msg.payload))  # scoring runs on its own thread: the socket keeps draining

    def parse(self, payload: bytes) -> tuple[str, list[float]] | None:
        if len(payload) > MAX_PAYLOAD:
            return None
        try:
            doc = json.loads(payload)
            ident = doc["id"]
            row = [float(doc[f]) for f in self.model.features]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(ident, str) or len(ident) > 128 or not all(math.isfinite(v) for v in row):
            return None
        return ident, row

    def score_loop(self) -> None:
        while not self.stop.is_set():
            try:
                payload = self.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            parsed = self.parse(payload)
            if parsed is None:
                self.rejected += 1
                continue
            ident, row = parsed
            score, us = self.model.score(row)
            self.messages += 1
            self.recent_us.append(us)
            out = {"id": ident, "score": round(score, 6), "label": int(score >= self.model.threshold),
                   "inference_us": us, "model": {"name": self.model.name, "version": self.model.version,
                                                 "sha256": self.model.sha256}}
            self.client.publish(self.score_topic, json.dumps(out), qos=1)
            if self.drift.add(row):
                log(f"drift {'detected' if self.drift.detected else 'cleared'}: {self.drift.z}")
                self.publish_health()

    def publish_health(self) -> None:
        us = sorted(self.recent_us)
        pct = {f"p{p}": us[min(len(us) - 1, int(len(us) * p / 100))] for p in (50, 95, 99)} if us else {}
        doc = {"status": "ok", "model": self.model.identity(), "messages": self.messages,
               "rejected": self.rejected, "uptime_s": round(time.time() - self.started, 1),
               "drift": self.drift.report(), "inference_us": pct, "ts": round(time.time(), 3)}
        self.client.publish(self.health_topic, json.dumps(doc), qos=1)

    def run(self) -> None:
        log(f"model {self.model.name} {self.model.version} sha256 {self.model.sha256} "
            f"({self.model.size} bytes), threshold {self.model.threshold}, drift "
            f"{'on' if self.drift.enabled else 'off'}")
        self.client.reconnect_delay_set(1, 10)
        self.client.connect_async(ENV.get("HBS_BROKER_HOST", "localhost"),
                                  int(ENV.get("HBS_BROKER_PORT", "8883")), keepalive=30)
        self.client.loop_start()
        worker = threading.Thread(target=self.score_loop, name="score", daemon=True)
        worker.start()
        while not self.stop.wait(self.period):
            if self.client.is_connected():
                self.publish_health()
        self.client.disconnect()
        self.client.loop_stop()


def main() -> int:
    detector = Detector()
    signal.signal(signal.SIGTERM, lambda *_: detector.stop.set())
    signal.signal(signal.SIGINT, lambda *_: detector.stop.set())
    detector.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
