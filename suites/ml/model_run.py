"""What the ml suite does once per hub and module: one run of the deployed model component.

``ModelRun.collect`` restarts the component's container (start-up time to the first score),
reads the model it reports, replays the golden set while sampling the container's footprint,
then replays the drifted set. The tests of the module judge the evidence it gathered.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hil.deploy.candidate import Candidate
from hil.drivers.docker import docker_client
from hil.errors import ProductError
from hil.hub import Hub
from hil.ml.card import ModelCard
from hil.ml.dataset import LabelledSet, read_set
from hil.ml.footprint import Footprint, FootprintSampler
from hil.ml.policy import MlPolicy
from hil.ml.replay import BrokerAccess, HealthEvent, ModelChannel, ReplayResult
from hil.steps import step

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden.csv"
DRIFTED = DATA / "drifted.csv"
FIRST_SCORE_TIMEOUT = 90.0
HEALTH_TIMEOUT = 15.0
DRAIN_MIN_S = 20.0


@dataclass
class ModelRun:
    hub: Hub
    card: ModelCard
    golden: LabelledSet
    golden_replay: ReplayResult
    drifted_replay: ReplayResult | None
    footprint: Footprint
    start_to_first_score_s: float | None
    health: HealthEvent | None
    hub_model_sha256: str | None
    model_path: str

    @property
    def model(self) -> dict[str, Any]:
        return {"name": self.card.name, "version": self.card.version, "sha256": self.card.sha256}


def broker_access(hub: Hub) -> BrokerAccess:
    broker = hub.device.expect.broker
    if broker is None:
        raise ProductError(f"{hub.name}: the inventory declares no broker (expect.broker)")
    return BrokerAccess(broker.host or hub.device.ssh.host, broker.port, broker.ca_file, broker.cert_file,
                        broker.key_file)


def model_path(hub: Hub, card: ModelCard, version: str) -> str:
    """Where the nucleus put the model artifact on the hub."""
    root = PurePosixPath(hub.device.expect.greengrass_root)
    return str(root / "packages" / "artifacts" / card.component / version / card.artifact)


def hub_sha256(hub: Hub, path: str) -> str | None:
    got = hub.ssh.run(["sha256sum", "--", path], sudo=True, timeout=hub.timeouts.ssh_command)
    word = got.stdout.split()[0] if got.ok and got.stdout.split() else ""
    return word if len(word) == 64 and all(c in "0123456789abcdef" for c in word) else None


def recipe_sha256(cand: Candidate, card: ModelCard) -> str | None:
    """The model artifact's digest as the recipe declares it (base64 SHA-256 -> hex)."""
    for recipe in cand.recipes:
        if recipe.name != card.component:
            continue
        for art in recipe.artifacts:
            if art.basename == card.artifact and art.digest and (art.algorithm or "").upper() == "SHA-256":
                try:
                    return base64.b64decode(art.digest).hex()
                except ValueError:
                    return None
    return None


def detector_container(engine: Any, path: str) -> Any:
    """The running container that has the model file mounted (whatever its name)."""
    for container in engine.containers.list():
        mounts = container.attrs.get("Mounts") or []
        if any(isinstance(m, dict) and m.get("Source") == path for m in mounts):
            return container
    raise ProductError(f"no running container mounts the model file {path}")


def collect(hub: Hub, cand: Candidate, card: ModelCard, policy: MlPolicy, *,
            drifted: bool = True) -> ModelRun:
    golden = read_set(GOLDEN, card.features)
    path = model_path(hub, card, cand.components[card.component])
    engine = docker_client(hub.ssh, timeout=hub.timeouts.ssh_command)
    rate = policy.replay_rate_hz
    drain = max(DRAIN_MIN_S, len(golden) / rate)
    try:
        with ModelChannel(broker_access(hub), card) as channel:
            with step("restart the model container; time to its first score", device=hub.name):
                container = detector_container(engine, path)
                container.restart(timeout=10)
                first = channel.first_score(golden.rows[0], timeout=FIRST_SCORE_TIMEOUT)
            with step("read the component's model health", device=hub.name):
                health = channel.wait_health(HEALTH_TIMEOUT)
            with step(f"replay the golden set ({len(golden)} rows at {rate:g}/s)", device=hub.name):
                container = detector_container(engine, path)
                sampler = FootprintSampler(lambda: container.stats(stream=False, one_shot=True))
                with sampler as footprint:
                    golden_replay = channel.replay("golden", golden.rows, rate_hz=rate, drain_timeout=drain)
            drifted_replay = None
            if drifted:
                drift_set = read_set(DRIFTED, card.features)
                with step(f"replay the drifted set ({len(drift_set)} rows at {rate:g}/s)", device=hub.name):
                    drifted_replay = channel.replay("drifted", drift_set.rows, rate_hz=rate,
                                                    drain_timeout=policy.drift.raise_within_s)
                    # a health message may trail the last score: wait for the declared time to pass
                    left = policy.drift.raise_within_s - drifted_replay.seconds
                    deadline = time.monotonic() + max(0.0, left)
                    while drifted_replay.first_drift_s() is None and time.monotonic() < deadline:
                        event = channel.wait_health(min(2.5, max(0.1, deadline - time.monotonic())))
                        if event is not None:
                            drifted_replay.health.append(event)
        with step("model file digest on the hub", device=hub.name):
            sha = hub_sha256(hub, path)
    finally:
        engine.close()
    return ModelRun(hub, card, golden, golden_replay, drifted_replay, footprint, first, health, sha, path)
