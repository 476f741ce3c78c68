"""The candidate's model on each hub: provenance, golden-set quality against the model card and
the reference inference, inference latency, footprint and drift (gate.yaml ``ml:``).

The module deploys the candidate once per hub (``deployed``) and runs the component once
(``model_run``: start-up, golden replay with the footprint sampled, drifted replay); each test
judges one part of that evidence with the gate's own judge (hil.ml.judge) and records it in
ml.jsonl or latency.jsonl, so gate.json carries every figure the suite reports.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil.deploy.candidate import Candidate
from hil.extras import MissingExtra
from hil.ml.card import ModelCard
from hil.ml.metrics import agreement, quality
from hil.ml.plots import plot_model
from hil.ml.policy import MlPolicy
from hil.ml.reference import reference_scores
from hil_pytest.allure_labels import labels
from hil_pytest.deploy import DeployedCandidate
from hil_pytest.lanes import quiet_hub
from hil_pytest.latency import LatencyRecorder
from hil_pytest.ml import MlFigures
from suites.ml.model_run import ModelRun, collect, recipe_sha256

pytestmark = [pytest.mark.ml, pytest.mark.needs_service("greengrass", "docker", "mqtt_broker")]


@pytest.fixture(scope="module")
def model_run(model_card: ModelCard, ml_policy: MlPolicy, deployed: DeployedCandidate,
              request: pytest.FixtureRequest) -> Iterator[ModelRun]:
    """``model_card`` first: a candidate without one skips before anything is deployed. The replay
    times inference: the hub's background lane holds still meanwhile (quiet)."""
    with quiet_hub(request.config, deployed.hub.name):
        run = collect(deployed.hub, deployed.candidate, model_card, ml_policy)
    yield run


@labels("ML model", "Provenance (I4)", "blocker")
def test_model_file_is_the_declared_one(model_run: ModelRun, candidate: Candidate,
                                        ml_figures: MlFigures) -> None:
    """The model card, the recipe's digest, the file on the hub and the model the component
    reports running are one and the same."""
    values = {"declared_sha256": model_run.card.sha256,
              "recipe_sha256": recipe_sha256(candidate, model_run.card),
              "hub_sha256": model_run.hub_model_sha256,
              "running_sha256": model_run.health.model_sha256 if model_run.health else None,
              "path": model_run.model_path}
    ml_figures.check("provenance", model_run.hub.name, values, model_run.model)


@labels("ML model", "Golden-set quality", "blocker")
def test_golden_set_quality(model_run: ModelRun, ml_figures: MlFigures) -> None:
    card, replay, golden = model_run.card, model_run.golden_replay, model_run.golden
    q = quality(golden.labels, replay.labels())
    png = None
    try:
        png = plot_model(q, replay.score_values(), golden.labels, card.threshold,
                         ml_figures.plot_path(f"golden-{model_run.hub.name}"),
                         title=f"{card.name} {card.version} on {model_run.hub.name}: golden set")
    except MissingExtra as exc:
        print(f"plot left out: {exc}")
    ml_figures.attach_png(png, "confusion matrix and score distribution")
    declared = card.golden_set.model_dump()
    values = {**q.as_dict(), **{f"card_{m}": declared[m] for m in ("precision", "recall", "f1")},
              "missing": replay.missing, "rows": len(golden), "golden_sha256": golden.sha256,
              "rate_hz": replay.rate_hz}
    ml_figures.check("quality", model_run.hub.name, values, model_run.model)


@labels("ML model", "Agreement with the reference inference", "critical")
def test_agreement_with_reference_inference(model_run: ModelRun, candidate: Candidate,
                                            ml_figures: MlFigures) -> None:
    """The device's labels against onnxruntime on the harness host running the same model file."""
    card = model_run.card
    model = candidate.artifact_dir / card.component / candidate.components[card.component] / card.artifact
    ref = reference_scores(model, model_run.golden.rows)
    ref_labels = [int(s >= card.threshold) for s in ref]
    device = model_run.golden_replay.score_values()
    diffs = [abs(d - r) for d, r in zip(device, ref, strict=True) if d is not None]
    values = {"agreement": round(agreement(ref_labels, model_run.golden_replay.labels(default=-1)), 5),
              "max_score_difference": round(max(diffs), 6) if diffs else None, "rows": len(ref)}
    ml_figures.check("agreement", model_run.hub.name, values, model_run.model)


@labels("ML model", "Inference time in the component", "critical")
def test_inference_time(model_run: ModelRun, latency: LatencyRecorder) -> None:
    ev = model_run.golden_replay.inference
    if ev is None:
        pytest.fail(f"{model_run.hub.name}: the component reported no inference times (inference_us)",
                    pytrace=False)
    from dataclasses import replace

    latency.check(replace(ev, device=model_run.hub.name))


@labels("ML model", "End-to-end inference latency", "critical")
def test_end_to_end_latency(model_run: ModelRun, latency: LatencyRecorder) -> None:
    """Sensor message published -> score received, from the intended send time (one clock)."""
    from dataclasses import replace

    latency.check(replace(model_run.golden_replay.e2e, device=model_run.hub.name))


@labels("ML model", "Footprint", "critical")
def test_footprint(model_run: ModelRun, ml_figures: MlFigures) -> None:
    fp = model_run.footprint
    values = {**fp.as_dict(), "model_bytes": model_run.card.size_bytes,
              "start_to_first_score_s": round(model_run.start_to_first_score_s, 3)
              if model_run.start_to_first_score_s is not None else None}
    if fp.samples == 0:
        values["peak_rss_mib"] = None  # the engine gave no reading: not measured, not zero
    ml_figures.check("footprint", model_run.hub.name, values, model_run.model)


@labels("ML model", "Drift signal", "critical")
def test_drift_signal(model_run: ModelRun, ml_figures: MlFigures) -> None:
    """The drifted set raises the component's drift signal in time; the clean golden set does not."""
    golden, drifted = model_run.golden_replay, model_run.drifted_replay
    assert drifted is not None
    values = {"drifted_first_s": round(first, 2) if (first := drifted.first_drift_s()) is not None else None,
              "clean_raised": golden.first_drift_s() is not None,
              "drifted_health_messages": len(drifted.health), "clean_health_messages": len(golden.health)}
    ml_figures.check("drift", model_run.hub.name, values, model_run.model)
