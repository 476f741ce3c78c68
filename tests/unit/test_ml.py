"""ML model components, offline: metrics, judges, model cards, data sets, replay parsing,
footprint readings, the gate's ml pass (on figures recorded from real lab runs) and the
host's reference inference against the checked-in model cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil.deploy.candidate import load_candidate
from hil.errors import UserError
from hil.gate.decision import Decision, decide
from hil.gate.policy import load_policy
from hil.gate.readers import read_ml
from hil.gate.results import MlFigure, RunMetadata, RunResults
from hil.ml import judge
from hil.ml.card import load_card
from hil.ml.dataset import read_set
from hil.ml.footprint import FootprintSampler, cpu_ns, rss_bytes
from hil.ml.metrics import agreement, quality
from hil.ml.policy import MlPolicy
from hil.ml.replay import _parse_health, _parse_score

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "ml"
CANDIDATES = ("ml-good", "ml-regressed", "ml-slow", "ml-tampered")
POLICY = load_policy(REPO / "gate.yaml")
assert POLICY.ml is not None
ML = POLICY.ml


def test_quality_and_agreement() -> None:
    q = quality([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0])
    assert (q.tp, q.fp, q.fn, q.tn) == (2, 1, 1, 2)
    assert q.precision == pytest.approx(2 / 3) and q.recall == pytest.approx(2 / 3)
    assert q.f1 == pytest.approx(2 / 3)
    assert quality([0, 0], [0, 0]).f1 == 0.0  # no positives at all: not a division by zero
    assert agreement([1, 0, 1], [1, 1, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        agreement([], [])


def test_gate_yaml_ml_section_resolves_the_champion_next_to_it() -> None:
    assert ML.champion == (REPO / "candidates" / "ml-good").resolve()
    assert ML.required_suites == ["smoke", "ml"]
    assert POLICY.required_for({"model_card": "model-card.yaml"}) == ["smoke", "ml"]
    assert POLICY.required_for({"model_card": None}) == POLICY.required_suites


def test_an_unknown_ml_field_names_the_file_and_field(tmp_path: Path) -> None:
    p = tmp_path / "gate.yaml"
    p.write_text(yaml.safe_dump({"ml": {"quality": {"min_recal": 0.9}}}))
    with pytest.raises(UserError, match="min_recal") as exc:
        load_policy(p)
    assert exc.value.file == str(p)


@pytest.mark.parametrize("name", CANDIDATES)
def test_checked_in_model_cards_parse_and_match_their_recipes(name: str) -> None:
    import base64

    try:
        cand = load_candidate(REPO / "candidates" / name)
    except UserError as exc:
        assert name == "ml-tampered", exc  # refused by validation: its model is not the declared one
        assert "model.onnx" in str(exc) and "Digest" in str(exc)
        return
    assert cand.model_card is not None
    card = load_card(cand.model_card)
    assert card.component in cand.components
    [recipe] = [r for r in cand.recipes if r.name == card.component]
    [art] = [a for a in recipe.artifacts if a.basename == card.artifact]
    assert art.digest is not None and base64.b64decode(art.digest).hex() == card.sha256
    assert card.features == ["temperature_c", "humidity_pct", "pump_current_a"]


def test_a_bad_card_names_the_field(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "candidates/ml-good/model-card.yaml").read_text())
    doc["golden_set"]["recall"] = 1.7
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(UserError) as exc:
        load_card(tmp_path / "card.yaml")
    assert exc.value.field == "golden_set.recall"


def test_golden_and_drifted_sets() -> None:
    card = load_card(REPO / "candidates/ml-good/model-card.yaml")
    golden = read_set(REPO / "suites/ml/data/golden.csv", card.features)
    assert len(golden) == card.golden_set.rows == 3000 and golden.anomalies == 240
    assert golden.sha256 == card.golden_set.sha256
    drifted = read_set(REPO / "suites/ml/data/drifted.csv", card.features)
    mean = [sum(r[i] for r in drifted.rows) / len(drifted) for i in range(3)]
    # the drifted set is warmer and more humid than the training data by more than the drift threshold
    doc = yaml.safe_load((REPO / "candidates/ml-good/model-card.yaml").read_text())
    stats = doc["training_data"]["features"]
    z = [abs(mean[i] - stats[f]["mean"]) / stats[f]["std"] for i, f in enumerate(card.features)]
    assert max(z) > card.drift.z_threshold * 3


@pytest.mark.parametrize("name", ["ml-good", "ml-regressed", "ml-slow"])
def test_reference_inference_reproduces_the_model_card(name: str) -> None:
    """The card's golden-set metrics are what onnxruntime on this machine computes from the file."""
    from hil.ml.reference import reference_scores

    cand = load_candidate(REPO / "candidates" / name)
    assert cand.model_card is not None
    card = load_card(cand.model_card)
    golden = read_set(REPO / "suites/ml/data/golden.csv", card.features)
    model = cand.artifact_dir / card.component / cand.components[card.component] / card.artifact
    scores = reference_scores(model, golden.rows)
    q = quality(golden.labels, [int(s >= card.threshold) for s in scores])
    assert (q.tp, q.fp, q.fn, q.tn) == (card.golden_set.confusion.tp, card.golden_set.confusion.fp,  # type: ignore[union-attr]
                                        card.golden_set.confusion.fn, card.golden_set.confusion.tn)  # type: ignore[union-attr]


# -- judges ------------------------------------------------------------------------------------

def test_quality_judge_names_metric_value_and_policy_key() -> None:
    values = {"precision": 0.895, "recall": 0.7458, "f1": 0.8136, "card_precision": 0.895,
              "card_recall": 0.7458, "card_f1": 0.8136, "missing": 0}
    problems = judge.quality(values, ML)
    assert any("recall 0.7458 < 0.9 (gate.yaml ml.quality.min_recall)" in p for p in problems)
    assert any("f1 0.8136 < 0.88" in p for p in problems)
    assert not any(p.startswith("precision") for p in problems)
    # the device reproduces a good card within tolerance: nothing
    good = {**values, "precision": 0.913, "recall": 0.9625, "f1": 0.9371, "card_precision": 0.913,
            "card_recall": 0.9625, "card_f1": 0.9371}
    assert judge.quality(good, ML) == []
    # a device that differs from its card (a conversion or runtime difference)
    off = {**good, "recall": 0.93}
    assert any("differs from the model card's 0.9625" in p for p in judge.quality(off, ML))
    assert any("golden rows got no score" in p for p in judge.quality({**good, "missing": 3}, ML))


def test_other_judges() -> None:
    assert judge.agreement({"agreement": 0.98}, ML) and not judge.agreement({"agreement": 1.0}, ML)
    assert judge.footprint({"peak_rss_mib": 301, "start_to_first_score_s": 1.0}, ML) == [
        "peak_rss_mib 301 MiB > 300 MiB (gate.yaml ml.footprint.max_rss_mib)"]
    assert judge.footprint({"peak_rss_mib": None}, ML) == ["peak_rss_mib: not measured"]
    assert "never raised" in judge.drift({"drifted_first_s": None, "clean_raised": False}, ML)[0]
    assert "false alarm" in judge.drift({"drifted_first_s": 0.2, "clean_raised": True}, ML)[0]
    assert "later than 30 s" in judge.drift({"drifted_first_s": 31.0}, ML)[0]
    assert judge.drift({"drifted_first_s": 0.2, "clean_raised": False}, ML) == []
    same = {"declared_sha256": "a" * 64, "recipe_sha256": "a" * 64, "hub_sha256": "a" * 64,
            "running_sha256": "a" * 64}
    assert judge.provenance(same, ML) == []
    bad = judge.provenance({**same, "hub_sha256": "b" * 64}, ML)
    assert "the model file on the hub is " + "b" * 64 in bad[0]
    assert judge.judge("unknown-kind", {}, ML) == []


# -- the gate's ml pass, on figures recorded from real lab runs -------------------------------------

def _results(figures: list[MlFigure], candidate: dict[str, Any] | None = None) -> RunResults:
    meta = RunMetadata(run_id="r", finished=True, candidate=candidate or {"model_card": "model-card.yaml"},
                       devices={"hub-01": "virtual-pi4"})
    return RunResults(records=[], metadata=meta, ml=figures)


def test_recorded_good_figures_are_within_policy() -> None:
    figures = list(read_ml_file(DATA / "ml-good-hub-01.jsonl"))
    kinds = {"champion", "provenance", "quality", "agreement", "footprint", "drift"}
    assert {f.kind for f in figures} == kinds
    d = decide(_results(figures), POLICY)
    assert all(row["verdict"] == "within policy" for row in d.ml), d.ml
    assert d.passes["ml"].effect.value == "none"


def test_recorded_regression_against_the_champion_rejects_naming_recall() -> None:
    figures = list(read_ml_file(DATA / "ml-regressed-champion-hub-01.jsonl"))
    d = decide(_results(figures), POLICY)
    assert d.decision is Decision.REJECT
    assert any("ml champion on hub-01: recall regressed against the champion 1.0.0: 0.7458 vs 0.9625" in r
               for r in d.reasons), d.reasons
    # the same figures for a platform candidate (ml suite not required): reported, not blocking
    d2 = decide(_results(figures, {"model_card": None}), POLICY)
    assert not any(r.startswith("ml ") for r in d2.reasons) and d2.ml[0]["verdict"].startswith("recall")


def test_a_refused_candidate_is_rejected_naming_its_problem() -> None:
    cand = {"model_card": "model-card.yaml",
            "problems": ["candidates/ml-tampered/recipes/x.yaml, field Manifests[0].Artifacts[1].Digest: "
                         "does not match artifacts/.../model.onnx"]}
    d = decide(_results([], cand), POLICY)
    assert d.decision is Decision.REJECT
    assert d.reasons[0].startswith("candidate refused before deployment: ") and "Digest" in d.reasons[0]


def read_ml_file(path: Path) -> list[MlFigure]:
    folder = path.parent / "_run"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        shutil.copyfile(path, folder / "ml.jsonl")
        return list(read_ml(folder, []))
    finally:
        shutil.rmtree(folder)


# -- what the component sends is untrusted ---------------------------------------------------------

def test_scores_of_other_replays_and_junk_are_not_believed() -> None:
    ok = json.dumps({"id": "n1-7", "score": 0.9, "label": 1, "inference_us": 31,
                     "model": {"sha256": "c" * 64}}).encode()
    parsed = _parse_score(ok, "n1")
    assert parsed is not None and parsed[0] == 7 and parsed[1].label == 1 and parsed[1].inference_us == 31
    assert _parse_score(ok, "n2") is None  # an earlier replay's nonce
    for junk in (b"not json", b"[]", json.dumps({"id": "n1-x", "score": 1, "label": 1}).encode(),
                 json.dumps({"id": "n1-1", "score": float("nan"), "label": 1}).encode(),
                 json.dumps({"id": "n1-1", "score": "high", "label": 1}).encode(), b"{" * 9000):
        assert _parse_score(junk, "n1") is None
    h = _parse_health(json.dumps({"drift": {"detected": True, "enabled": True},
                                  "model": {"sha256": "d" * 64}}).encode(), 1.5)
    assert h is not None and h.drift_detected is True and h.model_sha256 == "d" * 64
    h2 = _parse_health(json.dumps({"drift": "yes", "model": 3}).encode(), 0)
    assert h2 is not None and h2.drift_detected is None and h2.model_sha256 is None
    assert _parse_health(b"[1]", 0) is None


def test_footprint_from_engine_stats() -> None:
    v1 = {"memory_stats": {"stats": {"rss": 34_000_000, "cache": 9}},
          "cpu_stats": {"cpu_usage": {"total_usage": 0}}}
    assert rss_bytes(v1) == 34_000_000 and cpu_ns(v1) == 0
    assert rss_bytes({"memory_stats": {"stats": {"anon": 5}}}) == 5  # cgroup v2
    assert rss_bytes({"memory_stats": {}}) is None and cpu_ns({"cpu_stats": "x"}) is None

    def reading(mib: int, cpu: int) -> dict[str, Any]:
        return {"memory_stats": {"stats": {"rss": mib * 2**20}},
                "cpu_stats": {"cpu_usage": {"total_usage": cpu}}}

    readings = iter([reading(10, 0), reading(30, 500_000_000), reading(20, 600_000_000)])
    clock = iter([0.0, 1.0, 2.0])
    sampler = FootprintSampler(lambda: next(readings), clock=lambda: next(clock))
    for _ in range(3):
        sampler.sample()
    fp = sampler.footprint
    assert fp.peak_rss_bytes == 30 * 2**20 and fp.cpu_percents == pytest.approx([50.0, 10.0])
    assert fp.as_dict() == {"samples": 3, "peak_rss_mib": 30.0, "peak_cpu_percent": 50.0,
                            "mean_cpu_percent": 30.0}
    broken = FootprintSampler(lambda: (_ for _ in ()).throw(OSError("engine gone")))
    broken.sample()
    assert broken.footprint.samples == 0 and broken.errors == ["engine gone"]


def test_ml_policy_defaults_hold_without_a_section() -> None:
    assert MlPolicy().required_suites == ["smoke", "ml"] and MlPolicy().champion is None


def test_a_broken_model_card_is_a_candidate_problem_naming_file_and_field(tmp_path: Path) -> None:
    cand = tmp_path / "ml-good"
    shutil.copytree(REPO / "candidates" / "ml-good", cand)
    card = cand / "model-card.yaml"
    card.write_text(card.read_text().replace("threshold: 0.5", "threshold: high"))
    with pytest.raises(UserError) as exc:
        load_candidate(cand)
    assert exc.value.file == str(card) and exc.value.field == "threshold"
