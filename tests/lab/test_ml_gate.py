"""The gate on model releases, end to end on one lab hub: one gated session per candidate kind,
with the repository's own gate.yaml (its ml: section and ml_* latency budgets).

- candidates/ml-good promotes, and every figure the ml suite reports is in gate.json;
- candidates/ml-regressed is rejected as product naming recall (the quality floor and the
  regression against the champion, ml-good);
- candidates/ml-slow is rejected naming the ml_inference_time latency budget;
- candidates/ml-tampered is rejected naming the model's digest, before any hub is touched;
- a copy of ml-good whose component never raises drift (driftEnabled: "false") fails the
  drift check, while ml-good's own drift check passes.

The 3-hub promotion (`./hilw ml`) is measured and recorded in the README, not run here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gate_e2e_runs import ROOT, GatedSession, gated_session

pytestmark = [pytest.mark.lab]

HUB = "hub-01"
POLICY = ROOT / "gate.yaml"
CHAMPION = ["--ml-champion", str(ROOT / "candidates" / "ml-good")]
KINDS = {"provenance", "quality", "agreement", "footprint", "drift", "champion"}


def _session(tmp: Path, name: str, candidate: Path | str, selection: list[str],
             extra: list[str] | None = None) -> GatedSession:
    return gated_session(tmp / name, policy=POLICY, run_id=name, hubs=[HUB], selection=selection,
                         extra=["--candidate", str(candidate), *CHAMPION, *(extra or [])])


def _ml_rows(run: GatedSession) -> list[dict[str, object]]:
    path = run.run / "ml.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_the_candidates_pin_the_detector_image_the_lab_pushed() -> None:
    """`hil lab up` pushed the detector in its reproducible form under the digest every ML
    candidate pins (compose file and docker: artifact); a changed input shows here first."""
    import yaml

    from hil_lab.topology import STATE_DIR

    pushed = json.loads((STATE_DIR / "images.json").read_text())["digests"]["ml-infer"]
    for compose in sorted(ROOT.glob("candidates/ml-*/artifacts/*/*/docker-compose.yaml")):
        image = yaml.safe_load(compose.read_text())["services"]["detector"]["image"]
        assert image == f"registry.lab:5000/hil/ml-infer@{pushed}", (
            f"{compose} pins {image}; the lab built {pushed}: re-pin with "
            f"ml/train.py --image registry.lab:5000/hil/ml-infer@{pushed}")


def test_ml_good_promotes_and_gate_json_carries_every_figure(tmp_path: Path) -> None:
    run = _session(tmp_path, "ml-good", "candidates/ml-good", ["suites/smoke", "suites/ml"])
    gate = run.gate
    assert run.proc.returncode == 0 and gate["decision"] == "promote", run.output_tail()
    assert gate["passes"]["ml"]["effect"] == "none"
    assert {row["kind"] for row in gate["ml"]} == KINDS
    assert all(row["verdict"] == "within policy" and row["device"] == HUB for row in gate["ml"]), gate["ml"]
    # every figure the suite recorded is in gate.json, value for value
    recorded = {(r["kind"], json.dumps(r["values"], sort_keys=True)) for r in _ml_rows(run)}
    in_gate = {(r["kind"], json.dumps(r["values"], sort_keys=True)) for r in gate["ml"]}
    assert recorded == in_gate
    latency = {(r["metric"], r["device"]) for r in gate["latency"]}
    assert {("ml_inference_time", HUB), ("ml_e2e_latency", HUB), ("ml_inference_time", None),
            ("ml_e2e_latency", None)} <= latency
    quality = next(r for r in gate["ml"] if r["kind"] == "quality")["values"]
    assert quality["missing"] == 0 and quality["recall"] == quality["card_recall"]
    # the confusion matrix / score distribution picture is attached to the Allure result
    results = [json.loads(p.read_text()) for p in run.allure.glob("*-result.json")]
    quality_result = next(r for r in results if r["name"].startswith("test_golden_set_quality"))
    assert any(a["type"] == "image/png" for a in quality_result.get("attachments", [])), quality_result


def test_ml_regressed_is_rejected_as_product_naming_recall(tmp_path: Path) -> None:
    run = _session(tmp_path, "ml-regressed", "candidates/ml-regressed", ["suites/ml"])
    gate = run.gate
    assert run.proc.returncode == 1 and gate["decision"] == "reject", run.output_tail()
    reasons = "\n".join(gate["reasons"])
    assert f"ml quality on {HUB}: recall 0.7458 < 0.9 (gate.yaml ml.quality.min_recall)" in reasons
    assert f"ml champion on {HUB}: recall regressed against the champion 1.0.0: 0.7458 vs 0.9625" in reasons
    champion = next(r for r in gate["ml"] if r["kind"] == "champion")["values"]
    assert champion["champion_recall"] == 0.9625 and champion["challenger_recall"] == 0.7458
    failed = {f["test"].split("::")[-1]: f["failure_class"] for f in gate["blocking_failures"]}
    assert failed[f"test_golden_set_quality[{HUB}]"] == "product"
    assert failed[f"test_challenger_does_not_regress[{HUB}]"] == "product"


def test_ml_slow_is_rejected_naming_the_inference_latency_budget(tmp_path: Path) -> None:
    run = _session(tmp_path, "ml-slow", "candidates/ml-slow", ["suites/ml/test_model.py"])
    gate = run.gate
    assert run.proc.returncode == 1 and gate["decision"] == "reject", run.output_tail()
    reasons = gate["reasons"]
    assert any(r.startswith(f"latency ml_inference_time on {HUB}: p95 ") for r in reasons), reasons
    # same quality: the model is slow, not wrong
    assert next(r for r in gate["ml"] if r["kind"] == "quality")["verdict"] == "within policy"


def test_ml_tampered_is_rejected_naming_the_digest_before_any_hub_is_touched(tmp_path: Path) -> None:
    run = _session(tmp_path, "ml-tampered", "candidates/ml-tampered", ["suites/smoke", "suites/ml"])
    gate = run.gate
    assert run.proc.returncode == 1 and gate["decision"] == "reject", run.output_tail()
    first = gate["reasons"][0]
    assert first.startswith("candidate refused before deployment: ") and "Digest" in first
    assert "model.onnx" in first
    assert run.rows() == [] and not (run.run / "deployments").exists()


def test_drift_check_fails_on_a_component_that_never_raises_drift(tmp_path: Path) -> None:
    silent = tmp_path / "ml-silent"
    shutil.copytree(ROOT / "candidates" / "ml-good", silent)
    recipe = silent / "recipes" / "com.hbs.hub.AnomalyDetector-1.0.0.yaml"
    text = recipe.read_text()
    assert 'driftEnabled: "true"' in text
    recipe.write_text(text.replace('driftEnabled: "true"', 'driftEnabled: "false"'))
    run = _session(tmp_path, "ml-silent", silent, ["suites/ml/test_model.py"], ["-k", "drift"])
    gate = run.gate
    assert run.proc.returncode == 1 and gate["decision"] == "reject", run.output_tail()
    assert any(r.startswith(f"ml drift on {HUB}: drift: the drifted set never raised the drift signal")
               for r in gate["reasons"]), gate["reasons"]
